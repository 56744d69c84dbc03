"""Options that several commands share, declared once: the same flag, name, type and default
everywhere; only the help line says what it means for that command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_PATH = click.Path(path_type=Path)


def json_option(help: str = "Machine-readable output.") -> Decorator:
    """``--json`` (parameter ``as_json``): print the result as JSON instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def print_json(data: Any) -> None:
    """What ``--json`` prints: indented, anything not JSON-native as its string."""
    click.echo(json.dumps(data, indent=2, default=str))


def output_option(help: str, default: Path | None = None) -> Decorator:
    """``-o/--output``: where the command writes (a file or a folder, says ``help``)."""
    return click.option("-o", "--output", type=_PATH, help=help, **_default(default))


def force_option(help: str) -> Decorator:
    """``--force``: replace what is already there."""
    return click.option("--force", is_flag=True, help=help)


def threads_option(help: str) -> Decorator:
    """``--threads``: threads for the timed runs."""
    return click.option("--threads", type=click.IntRange(min=1), help=help)


def runs_option(help: str, default: int | None = None) -> Decorator:
    """``--runs``: timed runs (without ``default`` the callee chooses)."""
    return click.option("--runs", type=click.IntRange(min=1), help=help, **_default(default))


def _default(value: Any) -> dict[str, Any]:
    """A default shown in --help, or none at all (click tells "no default" from None)."""
    return {} if value is None else {"default": value, "show_default": True}


warmup_option: Decorator = click.option("--warmup", type=click.IntRange(min=0), default=10,
                                        show_default=True, help="Warm-up runs before timing.")


def eval_option(help: str) -> Decorator:
    """``--eval`` (parameter ``eval_data``): evaluation samples."""
    return click.option("--eval", "eval_data", type=_PATH, help=help)


def input_shape_option(help: str) -> Decorator:
    """``--input-shape NAME:1x3x224x224`` (repeatable): fix an input's shape."""
    return click.option("--input-shape", "input_shape", multiple=True,
                        metavar="NAME:1x3x224x224", help=help)


def device_option(help: str) -> Decorator:
    """``--device NAME`` (repeatable, parameter ``devices``): boards of the inventory."""
    return click.option("--device", "devices", multiple=True, metavar="NAME", help=help)


def trust_new_host_option(help: str) -> Decorator:
    """``--trust-new-host``: accept a device's unknown SSH host key once."""
    return click.option("--trust-new-host", is_flag=True, help=help)
