"""The member's own pages, mounted at /m/{program}: sign-in by one-time code, balance, history,
card, rewards and profile."""
