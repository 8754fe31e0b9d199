"""Carrying the outbox out: events become deliveries (dispatch), deliveries are sent with
retries, backoff and dead letters (runner), by `patron worker` or inside `patron serve`."""
