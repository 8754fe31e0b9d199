"""Dynamic segments: a definition of conditions (patron.segments.definition) compiled to one
set-based SQL query of member ids (patron.segments.compiler), saved per program, counted,
sampled, read as of any date and materialised as snapshots for campaigns (docs/engagement.md)."""
