"""A server process freezes what it loaded at start out of the garbage collector's reach.

Under a till load, full collections that scanned every object of the framework, the models and
the routes paused the worker for 150–175 ms every few seconds (SQLite's p99 90–105 ms; 22–26 ms
after). `serve_app` is what `patron serve` runs in each worker."""

from __future__ import annotations

import gc
import shutil

from patron.app import serve_app
from patron.config import get_settings


def test_serve_app_freezes_the_loaded_objects(tmp_path, sqlite_template, monkeypatch):
    path = tmp_path / "served.db"
    shutil.copy(sqlite_template, path)
    monkeypatch.setenv("PATRON_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("PATRON_DELIVERY_IN_PROCESS", "false")
    get_settings.cache_clear()
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        app = serve_app()
        frozen = gc.get_freeze_count()
        app.state.db.dispose()
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        get_settings.cache_clear()
    # Every route, model and module loaded by then: far more than a few stray objects.
    assert frozen > 50_000, frozen
