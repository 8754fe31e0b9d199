"""The request and response models (generated; see patron_client._generated.models)."""

from ._generated.models import *  # noqa: F403
from ._generated.models import __all__ as __all__
