"""Short surveys sent after a purchase, answered through a public link (docs/surveys.md)."""
