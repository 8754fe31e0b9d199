"""One error type, one shape: {"error": code, "detail": message}."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    error: str
    detail: str


class PatronError(Exception):
    status = 400
    code = "bad_request"
    # The codes an error of this class is raised with, when it names the case in the code
    # (`NotEligible` -> `tier_not_eligible`, ...): what `responses` declares. Default: `code`.
    codes: tuple[str, ...] = ()

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail}


class BadRequest(PatronError):
    status = 400
    code = "bad_request"


class Unauthorized(PatronError):
    status = 401
    code = "unauthorized"
    codes = ("missing_api_key", "invalid_api_key", "revoked_api_key")


class Forbidden(PatronError):
    status = 403
    code = "forbidden"


class NotFound(PatronError):
    status = 404
    code = "not_found"


class Conflict(PatronError):
    status = 409
    code = "conflict"


class StaleVersion(Conflict):
    """A write said which version it was made from (If-Match, or the admin form's base), and
    the stored version is another one: someone changed it meanwhile. Nothing was written."""

    code = "stale_version"


class StoreNotAllowed(Forbidden):
    """The key is limited to stores, and the call names another store or none."""

    code = "store_not_allowed"


class Invalid(PatronError):
    """The payload is well-formed JSON but a value is not acceptable."""

    status = 422
    code = "invalid"


class InsufficientPoints(Conflict):
    code = "insufficient_points"


class MemberBlocked(Conflict):
    code = "member_blocked"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class OutOfStock(Conflict):
    code = "out_of_stock"


class NotEligible(Conflict):
    """The member may not redeem this reward now: reward_not_available, tier_not_eligible,
    segment_not_eligible, store_not_eligible, channel_not_eligible, limit_reached."""

    code = "not_eligible"
    codes = (
        "reward_not_available",
        "tier_not_eligible",
        "segment_not_eligible",
        "store_not_eligible",
        "channel_not_eligible",
        "limit_reached",
    )


class CouponRefused(Conflict):
    """The coupon cannot be used (or cancelled) here: coupon_used, coupon_expired,
    coupon_cancelled, coupon_foreign, coupon_other_member, coupon_wrong_store,
    coupon_not_applicable, coupon_not_combinable."""

    code = "coupon_refused"
    codes = (
        "coupon_used",
        "coupon_expired",
        "coupon_cancelled",
        "coupon_foreign",
        "coupon_other_member",
        "coupon_wrong_store",
        "coupon_not_applicable",
        "coupon_not_combinable",
    )


def responses(*errors: type[PatronError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an endpoint, so its errors show in the schema: per status, the
    error codes it may carry, as `code, code, ...` (the errors every operation shares, such as
    `invalid_json` or `idempotency_conflict`, are added by `patron.openapi`)."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(err.status, {"model": ErrorBody, "description": ""})
        codes = [c for c in entry["description"].split(", ") if c]
        for code in err.codes or (err.code,):
            if code not in codes:
                codes.append(code)
        entry["description"] = ", ".join(codes)
    return out
