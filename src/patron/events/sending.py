"""What a channel answers when it has tried to send one delivery."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SendResult:
    ok: bool
    # HTTP status of a webhook or SMS provider; SMTP reply code for e-mail; None if no answer.
    status_code: int | None = None
    # The start of what the target answered (kept in the delivery log, at most 1,000 chars).
    response: str | None = None
    error: str | None = None
    # False when trying again cannot help (a 4xx other than 408/429, an address the SMTP
    # server refused for good): the delivery is dead-lettered at once.
    retryable: bool = True
    duration_ms: int = 0
