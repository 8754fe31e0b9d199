"""(being written)"""

from __future__ import annotations

import typer

notify_app = typer.Typer(
    help="Notification jobs: expiring-points reminders, birthdays, statements."
)
