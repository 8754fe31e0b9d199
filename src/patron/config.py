"""Settings: the only module that reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'patron.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_", extra="ignore")

    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # Connections per worker process; SQLite ignores it.
    pool_size: int = 10
    # Rows per statement batch in set-based jobs (expiry, pending release).
    job_batch_size: int = 5000
    # How long an idempotency key keeps its answer, in hours.
    idempotency_ttl_hours: int = 24 * 7
    log_level: str = "info"
    # Till sales arriving while a worker writes the previous ones go to the database together,
    # one commit for the group (patron.ledger.till_route, decision 0009). Unset: on for SQLite
    # (one fsync per group), off for PostgreSQL (measured no better there).
    group_commit: bool | None = None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or default_database_url()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
