"""Messages to members: templates, channels (e-mail, SMS, log), consent and scheduled jobs."""
