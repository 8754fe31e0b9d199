"""CPU per purchase at the edge: decoding the body and encoding the answer, before and after.

    python benchmarks/wire.py [--number N] [--repeat R] [--json out.json]

A realistic till body (3 lines, a member by phone, points to spend, decimals as strings and
numbers) and a realistic answer (two entries with their rule breakdown, the totals):

- before: `PurchaseRequest.model_validate(json.loads(body))` (what the direct route did; the
  FastAPI route did the same through its TypeAdapter) and Starlette's `JSONResponse(answer)`
  (`json.dumps`);
- after: `patron.sales.wire.decode` (msgspec into the same PurchaseRequest) and
  `patron.sales.wire.encoded` (orjson).

Each figure is the median over `--repeat` runs of `--number` calls (timeit, process time), in
µs of CPU per call. It also prints the other way measured for the decision: msgspec as the JSON
parser only, pydantic validating the objects.
No database: this is the edge alone, the part of a purchase the decision 0014 changes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.responses import JSONResponse

from patron.sales import wire
from patron.sales.schemas import PurchaseRequest

BODY: dict[str, Any] = {
    "external_id": "T07-20260302-000123",
    "member": {"phone": "010-1234-5678"},
    "amount": "25800",
    "currency": "KRW",
    "store": "mapo",
    "channel": "pos",
    "payment_method": "card",
    "points_to_spend": 1000,
    "occurred_at": "2026-03-02T12:00:00+09:00",
    "lines": [
        {"id": "1", "sku": "CROISSANT", "category": "bread", "quantity": 2, "amount": "7600"},
        {"id": "2", "sku": "LATTE", "category": "coffee", "quantity": 1, "amount": 5200},
        {"id": "3", "sku": "CAKE-ST", "category": "cake", "quantity": "1.5", "amount": "13000.00"},
    ],
}


def _entry(id_: int, kind: str, points: int, breakdown: list[dict[str, Any]] | None) -> dict:
    return {
        "id": id_,
        "kind": kind,
        "points": points,
        "occurred_at": "2026-03-02T03:00:00Z",
        "created_at": "2026-03-02T03:00:00Z",
        "reason": "purchase T07-20260302-000123",
        "store": "mapo",
        "channel": "pos",
        "external_ref": "T07-20260302-000123",
        "actor": "api_key:2",
        "reverses_entry_id": None,
        "rule_version": 3,
        "breakdown": breakdown,
        "details": {"expires_at": "2027-03-02T15:00:00+00:00", "pending_until": None},
    }


BREAKDOWN = [
    {
        "rule": "base",
        "kind": "base_rate",
        "applied": True,
        "detail": "24,800 KRW: 10 points for each full 1,000 = 240",
        "amount": "24800",
        "currency": "KRW",
        "points_per": 10,
        "per_amount": "1000",
        "mode": "per_full_unit",
        "rounding": "down",
        "result": 240,
    },
    {
        "rule": "cake-double",
        "kind": "multiplier",
        "applied": True,
        "detail": "cake lines × 2",
        "lines": ["3"],
        "factor": "2",
        "result": 130,
    },
    {
        "rule": "gold-bonus",
        "kind": "tier_bonus",
        "applied": False,
        "detail": "member is silver",
        "result": 0,
    },
]

ANSWER: dict[str, Any] = {
    "external_id": "T07-20260302-000123",
    "member_id": 1042,
    "amount": "25800",
    "points_earned": 370,
    "points_spent": 1000,
    "spend_value": "1000",
    "occurred_at": "2026-03-02T03:00:00Z",
    "entries": [_entry(88121, "redeem", -1000, None), _entry(88122, "earn", 370, BREAKDOWN)],
    "totals": {
        "balance": 4310,
        "available": 4310,
        "pending": 0,
        "debt": 0,
        "earned": 9310,
        "redeemed": 5000,
        "expired": 0,
        "adjusted": 0,
        "expiring_30_days": 120,
    },
}

RAW = json.dumps(BODY).encode()


def decode_before() -> PurchaseRequest:
    return PurchaseRequest.model_validate(json.loads(RAW))


def decode_after() -> Any:
    return wire.decode(RAW, "application/json")


def encode_before() -> Any:
    return JSONResponse(ANSWER, status_code=201)


def encode_after() -> Any:
    return wire.encoded(ANSWER, 201)


def decode_alternative() -> PurchaseRequest:
    """The other way measured: msgspec as the JSON parser only, pydantic validating."""
    return PurchaseRequest.model_validate(_PARSE(RAW), from_attributes=True)


_PARSE = msgspec.json.Decoder().decode


def per_call_us(fns: dict[str, Callable[[], Any]], number: int, repeat: int) -> dict[str, float]:
    """CPU µs per call (process time, so other processes on the machine count less), the
    median of `repeat` runs, the functions taking turns run by run."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            runs[name].append(timeit.timeit(fn, number=number, timer=time.process_time))
    return {name: statistics.median(r) / number * 1e6 for name, r in runs.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    # The two decoders must agree on this body, or the comparison means nothing.
    before, after = decode_before(), decode_after()
    assert before == after and before.model_dump() == after.model_dump(), (before, after)
    assert encode_before().body == encode_after().body

    assert decode_alternative() == before
    figures = per_call_us(
        {
            "decode_before": decode_before,
            "decode_after": decode_after,
            "decode_alternative": decode_alternative,
            "encode_before": encode_before,
            "encode_after": encode_after,
        },
        args.number,
        args.repeat,
    )
    figures["total_before"] = figures["decode_before"] + figures["encode_before"]
    figures["total_after"] = figures["decode_after"] + figures["encode_after"]
    result = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "body_bytes": len(RAW),
        "answer_bytes": len(encode_after().body),
        "number": args.number,
        "repeat": args.repeat,
        "us": {k: round(v, 2) for k, v in figures.items()},
        "ratio": {
            part: round(figures[f"{part}_after"] / figures[f"{part}_before"], 3)
            for part in ("decode", "encode", "total")
        },
    }
    print(
        f"{'per purchase':<14}{'before (pydantic, json)':>26}{'after (msgspec, orjson)':>26}  ratio"
    )
    for part in ("decode", "encode", "total"):
        print(
            f"{part:<14}{figures[f'{part}_before']:>23.2f} µs{figures[f'{part}_after']:>23.2f} µs"
            f"  {result['ratio'][part]:.3f}"
        )
    print(
        f"(msgspec parsing, pydantic validating: {figures['decode_alternative']:.2f} µs, "
        f"ratio {figures['decode_alternative'] / figures['decode_before']:.3f})"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
