"""Fraud controls: velocity limits, duplicate detection, holds for review and "verified contact
before redemption", configured per program (docs/fraud.md). Below the sale path, which runs them;
the review queue that decides what they held is patron.review's, above it."""
