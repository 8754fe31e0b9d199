"""patron-client: the Python client of the Patron loyalty engine's /api/v1.

from patron_client import Patron
with Patron("http://127.0.0.1:8000", api_key) as patron:
    sale = patron.purchase("bakery", {"external_id": "T1-0001", "member": {"card": "BKR100000"},
                                      "amount": "12000"})
"""

from . import models
from ._generated import OPENAPI_SHA256, OPERATION_COUNT
from ._generated.operations import OPERATIONS
from ._version import __version__
from .client import AsyncPatron, Patron
from .errors import (
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    PatronError,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "OPENAPI_SHA256",
    "OPERATIONS",
    "OPERATION_COUNT",
    "AsyncPatron",
    "BadRequest",
    "ClientError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Patron",
    "PatronError",
    "RateLimited",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "ValidationFailed",
    "__version__",
    "models",
]
