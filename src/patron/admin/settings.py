"""Admin UI settings, read from PATRON_ADMIN_* variables.

Kept beside the admin package (not in patron.config) so the UI's knobs live with the UI; they
follow config.py's rule all the same: nothing else in the admin package reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class AdminSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_ADMIN_", extra="ignore")

    # auto: Secure when the request came over https (behind a proxy, run uvicorn with
    # --proxy-headers so X-Forwarded-Proto counts); always / never force it.
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    # A session ends this many hours after sign-in (a shift at the counter), or at sign-out.
    session_hours: int = 12
    # Sign-in lock-out: this many failures in a row lock the account for lockout_minutes.
    lockout_failures: int = 5
    lockout_minutes: int = 15


@lru_cache(maxsize=1)
def get_admin_settings() -> AdminSettings:
    return AdminSettings()
