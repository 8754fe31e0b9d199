"""The refusals of the fraud controls."""

from __future__ import annotations

from patron.errors import Forbidden, PatronError


class VelocityExceeded(PatronError):
    """A redemption over a per-day limit: refused, nothing written. The code names the limit
    (`velocity_member_redemptions_per_day`, …)."""

    status = 429
    code = "velocity_exceeded"
    codes = tuple(f"velocity_{d}_redemptions_per_day" for d in ("member", "card", "store", "key"))


class ContactNotVerified(Forbidden):
    code = "contact_not_verified"

    def __init__(self, member_id: int) -> None:
        super().__init__(
            f"member {member_id} has no verified phone or e-mail: this program requires one "
            "before points or rewards are redeemed (the member verifies it on her member page)"
        )
