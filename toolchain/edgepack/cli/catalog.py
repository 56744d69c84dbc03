"""``edgepack targets`` and ``edgepack profiles``: list a catalog registry, or show one entry."""

from __future__ import annotations

import click

from .app import State
from .options import json_option, print_json


def _catalog_commands(kind: str, list_help: str, show_help: str) -> click.Group:
    """`edgepack KIND [--json]` lists a catalog registry; `edgepack KIND show NAME` shows one.

    ``kind`` is "targets" or "profiles": the Catalog attribute and the key of the renderings
    in ``render.CATALOG_TABLES`` and ``render.CATALOG_DETAILS``.
    """

    @click.group(name=kind, invoke_without_command=True, help=list_help)
    @json_option()
    @click.pass_context
    def listing(ctx: click.Context, as_json: bool) -> None:
        if ctx.invoked_subcommand is not None:
            return
        from .render import CATALOG_TABLES

        registry = getattr(ctx.obj.catalog(), kind)
        entries = [registry.entries[n] for n in registry.names()]
        if as_json:
            print_json([{**e.item.model_dump(), "source": str(e.source)} for e in entries])
        else:
            CATALOG_TABLES[kind](entries)

    @listing.command("show", help=show_help)
    @click.argument("name")
    @json_option()
    @click.pass_obj
    def show(state: State, name: str, as_json: bool) -> None:
        from .render import CATALOG_DETAILS

        catalog = state.catalog()
        entry = getattr(catalog, kind).entry(name)
        if as_json:
            print_json({**entry.item.model_dump(), "source": str(entry.source)})
        else:
            CATALOG_DETAILS[kind](entry, catalog)

    return listing


targets = _catalog_commands(
    "targets", "List the devices edgepack can build for (`targets show NAME` for one).",
    "Show one target: device, arch, runtimes and versions, formats, default profile.")
profiles = _catalog_commands(
    "profiles", "List the compression profiles (`profiles show NAME` for one).",
    "Show one profile: precision, quantization, calibration and accuracy budget.")
