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
    # --- operations (docs/operations.md) ---
    # Log lines as "text" (readable, the default) or "json" (one object a line, for collectors);
    # both carry the request id (X-Request-ID).
    log_format: str = "text"
    # Prometheus metrics at /metrics and the middleware counting requests (decision 0029).
    metrics: bool = True
    # /ready answers 503 when the oldest undispatched outbox event is older than this many
    # seconds; 0 reports the lag without failing on it (docs/operations.md says why).
    ready_max_outbox_lag_seconds: float = 0.0
    # Till sales arriving while a worker writes the previous ones go to the database together:
    # one sale-pipeline batch and one commit for the group (patron.sales.till_route, decisions
    # 0009 and 0017). Unset: on for both engines (less CPU per sale and a lower p99 measured on
    # each); false gives every sale its own transaction.
    group_commit: bool | None = None
    # Before writing its next group, a busy worker waits up to this many milliseconds for the
    # sales its last group answered to come back (as PostgreSQL's commit_delay waits only when
    # other transactions are active): never for a lone sale, never when idle (decision 0017's
    # second addendum); 0 writes whatever is waiting at once.
    group_commit_wait_ms: float = 4.0
    # Publishing rules that move total points by more than this share (the preview's what-if)
    # asks the staff member to confirm the change explicitly (admin rule editor).
    rules_confirm_percent: int = 10

    # --- notifications and webhooks (docs/notifications.md, docs/webhooks.md) ---
    # `patron serve` delivers the outbox in-process; turn off when `patron worker`s run.
    delivery_in_process: bool = True
    # Seconds between delivery rounds when there is nothing to do.
    delivery_poll_seconds: float = 1.0
    # Tries before a delivery is dead-lettered; the backoff doubles from delivery_backoff_seconds
    # (with jitter) up to delivery_backoff_max_seconds.
    delivery_max_attempts: int = 8
    delivery_backoff_seconds: float = 10.0
    delivery_backoff_max_seconds: float = 6 * 3600.0
    # A claimed delivery is given back after this long if its runner died (at-least-once).
    delivery_lease_seconds: float = 60.0
    # The base URL members reach this server on (unsubscribe links in e-mails).
    public_url: str = "http://127.0.0.1:8000"
    # E-mail: "smtp" sends through smtp_host; "log" writes what would be sent to message_log.
    email_channel: str = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"  # none | starttls | tls
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = "Patron <noreply@localhost>"
    smtp_timeout_seconds: float = 10.0
    # SMS: "log" | "twilio" (Twilio's Messages API) | "http" (a generic JSON POST to sms_url).
    sms_channel: str = "log"
    sms_url: str = ""  # http: where to POST; twilio: the API base (default Twilio's)
    sms_account: str = ""  # twilio: the Account SID
    sms_token: str = ""  # twilio: the auth token; http: sent as a Bearer token when set
    sms_from: str = ""
    sms_timeout_seconds: float = 10.0
    # The development channel's file: every message the log channels "send", one JSON a line.
    message_log: str = "messages.log"
    # Webhook targets on loopback or private networks are refused (SSRF) unless this is on.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0

    # Where the member page counts its rate limits (codes per contact and per IP address):
    # memory:// counts in each server process; redis://host:6379 shares one count among all
    # workers (pip install "patron[redis]"). Any storage URI of the `limits` library works.
    rate_limit_storage: str = "memory://"

    # --- Apple Wallet passes (docs/wallet.md); the pass download is off until all are set ---
    wallet_pass_type_id: str = ""  # e.g. pass.com.example.loyalty
    wallet_team_id: str = ""  # the Apple Developer team identifier
    # PEM file with the Pass Type ID certificate, and its private key unless wallet_key_file is set.
    wallet_cert_file: str = ""
    wallet_key_file: str = ""
    wallet_key_password: str = ""  # when the private key is encrypted
    wallet_wwdr_file: str = ""  # Apple's WWDR intermediate certificate, PEM or DER

    @property
    def wallet_enabled(self) -> bool:
        return all(
            (
                self.wallet_pass_type_id,
                self.wallet_team_id,
                self.wallet_cert_file,
                self.wallet_wwdr_file,
            )
        )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or default_database_url()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
