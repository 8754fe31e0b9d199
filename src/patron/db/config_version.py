"""Each program's configuration version: a token that changes with every change to the program.

`programs.config_version` (migration 0006) changes, to a new random value (not a counter, so a
database rebuilt under a running worker can never match an old token), in the same transaction
as every change to a program, its stores, its rule set or its tiers. Readers that keep a copy of
a program's configuration (patron.sales.program_cache) compare it and reload when it differs.

The token is written here in two ways: a `before_flush` hook on every ORM session bumps the
program of any new, changed or deleted row of a model marked `ProgramConfiguration`, and
`touch` does it for changes made with Core statements. The hook is registered when this module
is imported, which `patron.db.engine` does, so every session of every entry point has it.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import BigInteger, column, event, table, update
from sqlalchemy.orm import Session

# The ORM model does not map the column; every read and write of the token goes through this
# Core table.
programs_version = table("programs", column("id", BigInteger), column("config_version", BigInteger))


class ProgramConfiguration:
    """A model whose rows are part of one program's configuration (a mixin: no columns)."""

    def configured_program_id(self) -> int | None:
        """The program this row configures (None before a new program has its id)."""
        return getattr(self, "program_id", None)


def new_token() -> int:
    return secrets.randbits(62)


def touch(session: Session, program_id: int) -> None:
    """Mark the program's configuration changed (in the caller's transaction)."""
    session.execute(
        update(programs_version)
        .where(programs_version.c.id == program_id)
        .values(config_version=new_token())
    )


@event.listens_for(Session, "before_flush")
def _bump_on_config_change(session: Session, _context: Any, _instances: Any) -> None:
    changed: set[int] = set()
    for group in (session.new, session.dirty, session.deleted):
        for obj in group:
            if isinstance(obj, ProgramConfiguration):
                program_id = obj.configured_program_id()
                if program_id is not None:  # a new program has no id yet (and no cache entry)
                    changed.add(program_id)
    for program_id in sorted(changed):
        touch(session, program_id)
