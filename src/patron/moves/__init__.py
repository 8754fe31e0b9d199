"""Moves between members: merging a duplicate into a survivor, and transferring points."""
