"""The SMTP catcher and the loopback HTTP receiver for every notification test."""

from tests.support.http_receiver import http_receiver  # noqa: F401
from tests.support.mail import (  # noqa: F401
    make_smtp_server_fixture,
    smtp_server_fixture,
    smtp_tls_fixture,
)
