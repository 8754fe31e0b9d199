"""The outbox: every domain event written in the transaction of the change that caused it,
and the deliveries (webhooks, e-mail, SMS) that carry it out."""
