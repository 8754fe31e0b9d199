"""Patron: an API-first customer loyalty engine."""

__version__ = "0.1.0"
