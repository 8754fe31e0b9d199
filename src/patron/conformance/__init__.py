"""`patron conformance`: black-box checks, over HTTP only, that a running Patron deployment keeps
its ledger promises — concurrent double spends, idempotent replays, partial refunds, pending and
expiring points, the invariant check, bad input. See docs/conformance.md.

The checks live in `patron.conformance.suite` (`run_suite`), the report in
`patron.conformance.report`; this package imports neither, so `patron --help` stays quick."""
