"""Campaigns with A/B tests: a segment, arms (variants and a holdout control), actions, results."""
