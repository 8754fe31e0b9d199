"""Log lines as text or JSON, each carrying the id of the request it was written for.

The request id lives in a context variable set by `patron.ops.middleware.OpsMiddleware`;
`RequestIdFilter` copies it onto every record (`-` outside a request). Threads the request hands
work to (Starlette's thread pool) run in a copy of its context, so their lines carry it too.
`log_config` is the `logging.config.dictConfig` given to uvicorn, so its access log uses the
same format and the same filter (uvicorn writes the access line from inside the request).
"""

from __future__ import annotations

import contextvars
import copy
import logging
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("patron_request_id", default="-")

FORMATS = ("text", "json")

_JSON = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"
_JSON_ACCESS = _JSON + " %(client_addr)s %(method)s %(path)s %(status_code)s"
_JSON_RENAME = {"asctime": "time", "levelname": "level", "name": "logger"}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on the record (never filters anything out): as
    `request_id`, and as `request_tag` (" [id]", empty outside a request) for text lines. An
    access line also gets its fields by name, for JSON."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid != "-" else ""
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            record.client_addr, record.method = client, method
            record.path, record.status_code = path, status
        return True


def log_config(log_format: str = "text", level: str = "info") -> dict[str, Any]:
    """A dictConfig for uvicorn and the `patron` loggers. Text keeps uvicorn's look (what
    `make demo` shows) with the request id on access lines; JSON is one object a line with
    `time`, `level`, `logger`, `request_id`, `message` (and the access log's fields)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    from pythonjsonlogger.core import RESERVED_ATTRS
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    level = level.upper()
    config["filters"] = {"request_id": {"()": RequestIdFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id"]
    if log_format == "json":
        json_formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON,
            "rename_fields": _JSON_RENAME,
            "timestamp": False,
            # Not as fields of their own: uvicorn's coloured copy of the message, the text tag.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message", "request_tag"],
        }
        config["formatters"] = {
            "default": json_formatter,
            "access": {**json_formatter, "fmt": _JSON_ACCESS},
        }
    else:
        config["formatters"]["default"]["fmt"] = "%(levelprefix)s %(message)s%(request_tag)s"
        config["formatters"]["access"]["fmt"] = (
            '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s%(request_tag)s'
        )
    config["loggers"]["uvicorn"]["level"] = level
    config["loggers"]["uvicorn.error"]["level"] = level
    config["loggers"]["uvicorn.access"]["level"] = level
    # Patron's own lines (patron, patron.delivery, …) go through the same handler and format.
    config["loggers"]["patron"] = {"handlers": ["default"], "level": level, "propagate": False}
    return config


def configure(log_format: str = "text", level: str = "info") -> None:
    """Apply `log_config` to this process (uvicorn applies it itself in each worker)."""
    import logging.config

    logging.config.dictConfig(log_config(log_format, level))
