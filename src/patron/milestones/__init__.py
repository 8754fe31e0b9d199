"""Milestones and achievements: goals members reach, badges, rewards (docs/engagement.md)."""
