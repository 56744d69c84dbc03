"""``edgepack doctor``: which converter edges and runtimes this machine has, and what to
install for the rest."""

from __future__ import annotations

import click

from .options import json_option, print_json


@click.command("doctor")
@json_option()
@click.option("--install", is_flag=True,
              help="Install now the tools edgepack would install on first use (onnx2tf), e.g. "
                   "before going offline.")
def doctor(as_json: bool, install: bool) -> None:
    """List the converter edges and runtimes available here, with versions, and what to
    install for the missing ones."""
    from ..converters.availability import edge_statuses, runtime_statuses

    if install:
        from ..converters.provision import ONNX2TF

        done = ONNX2TF.ensure()
        if not as_json:
            click.echo(f"installed: {', '.join(done)}" if done else
                       f"{ONNX2TF.name}: already installed")
    edges, runtimes = edge_statuses(), runtime_statuses()
    if as_json:
        print_json({"edges": [e.to_dict() for e in edges],
                    "runtimes": [r.to_dict() for r in runtimes]})
        return
    _tables(edges, runtimes)


def _tables(edges: list, runtimes: list) -> None:
    """Two tables: converter edges, then runtimes; each row says what to install if missing."""
    from rich.console import Console
    from rich.table import Table

    out = Console(soft_wrap=False)
    table = Table(title="converter edges", title_justify="left")
    for col in ("from", "to", "tool", "state", "version", "to install"):
        table.add_column(col)
    for e in edges:  # the first module is the tool itself (--json lists them all)
        table.add_row(e.src, e.dst, e.tool, _state(e.state), e.versions[0] if e.versions
                      else "-", e.install or "")
    out.print(table)
    table = Table(title="runtimes", title_justify="left")
    for col in ("runtime", "formats", "state", "version", "to install"):
        table.add_column(col)
    for r in runtimes:
        table.add_row(r.name, ", ".join(r.formats), _state(r.state), r.version or "-",
                      r.install or "")
    out.print(table)


def _state(state: str) -> str:
    colour = {"ready": "green", "missing": "red"}.get(state, "yellow")
    return f"[{colour}]{state}[/]"
