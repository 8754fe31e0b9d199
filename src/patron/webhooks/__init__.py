"""Outbound webhooks: endpoints per program, Standard Webhooks signatures, SSRF checks."""
