"""The container recipe and compose file (Docker is not on the CI machine): every `patron`
command they run is a real command with real options, every PATRON_ variable a real setting,
the health checks hit /health on the port served, the image runs as an unprivileged user."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from patron.cli import app as cli_app
from patron.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def check_patron_command(argv: list[str]) -> Any:
    """The (click) command `argv` names; fails on an unknown command or option."""
    assert argv[0] == "patron", argv
    command: Any = typer.main.get_command(cli_app)
    args = argv[1:]
    while getattr(command, "commands", None) is not None and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command `patron … {name}`"
        command = command.commands[name]
    options = {opt for p in command.params for opt in getattr(p, "opts", [])}
    options |= {opt for p in command.params for opt in getattr(p, "secondary_opts", [])}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"{arg} is not an option of {argv[:3]}"
    return command


def option_value(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_image_runs_patron_serve_as_an_unprivileged_user():
    steps = dockerfile()
    froms = [args for word, args in steps if word == "FROM"]
    assert froms and all(re.match(r"python:3\.1[1-9]-slim\b", f) for f in froms)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    (cmd,) = [json.loads(args) for word, args in steps if word == "CMD"]
    check_patron_command(cmd)
    assert cmd[1] == "serve" and option_value(cmd, "--host") == "0.0.0.0"
    port = option_value(cmd, "--port")
    assert f"EXPOSE {port}" in {f"{w} {a}" for w, a in steps}
    (health,) = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/health" in health
    env = " ".join(args for word, args in steps if word == "ENV")
    for name in re.findall(r"(PATRON_[A-Z_]+)=", env):
        assert name.removeprefix("PATRON_").lower() in Settings.model_fields, name
    assert f"PATRON_PORT={port}" in env  # the health check reads the same port


def test_the_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "*.db"} <= set(ignored)


def test_compose_runs_migrations_then_api_workers_and_the_outbox_worker():
    services = compose()["services"]
    assert services["db"]["image"].startswith("postgres:")
    for name in ("migrate", "api", "worker"):
        service = services[name]
        command = [str(c) for c in service["command"]]
        check_patron_command(command)
        for variable in service["environment"]:
            if variable.startswith("PATRON_"):
                assert variable.removeprefix("PATRON_").lower() in Settings.model_fields, variable
        url = service["environment"]["PATRON_DATABASE_URL"]
        assert url.startswith("postgresql://") and "@db:5432/" in url
    assert services["migrate"]["command"][1:] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
    api = services["api"]["command"]
    assert api[1] == "serve" and option_value(api, "--host") == "0.0.0.0"
    assert option_value(api, "--workers").startswith("${PATRON_WORKERS")
    port = option_value(api, "--port")
    assert any(str(p).endswith(f":{port}") for p in services["api"]["ports"])
    health = " ".join(services["api"]["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health" in health
    assert services["worker"]["command"][1] == "worker"
    # The API processes leave the outbox to the worker service.
    assert services["api"]["environment"]["PATRON_DELIVERY_IN_PROCESS"] == "false"


def test_the_command_check_catches_a_wrong_option():
    with pytest.raises(AssertionError, match="--no-such-flag"):
        check_patron_command(["patron", "serve", "--no-such-flag"])
    with pytest.raises(AssertionError, match="no command"):
        check_patron_command(["patron", "nothing"])
