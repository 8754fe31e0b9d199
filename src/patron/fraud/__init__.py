"""Fraud controls: velocity limits, duplicate detection, holds for review, the review queue and
"verified contact before redemption", configured per program (docs/fraud.md)."""
