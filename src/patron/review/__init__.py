"""The suspicious-activity queue: what the fraud controls held, confirmed or reversed by staff."""
