"""``edgepack cache``: where the build and step cache is, how big, and clearing it."""

from __future__ import annotations

import click

from .options import json_option, print_json


@click.group("cache")
def cache_group() -> None:
    """The content-addressed cache of builds and build steps ($EDGEPACK_CACHE, else
    ~/.cache/edgepack): matrix cells, conversion hops and validations."""


@cache_group.command("info")
@json_option()
def cache_info(as_json: bool) -> None:
    """Where the cache is, how many builds and steps it holds, how big they are."""
    from dataclasses import asdict

    from ..cache.store import cache_info as info_of
    from ..report.formatting import fmt_bytes

    info = info_of()
    if as_json:
        print_json(asdict(info))
    else:
        click.echo(f"{info.root}: {info.builds.entries} builds ({fmt_bytes(info.builds.bytes)}), "
                   f"{info.steps.entries} steps ({fmt_bytes(info.steps.bytes)})")


@cache_group.command("clear")
def cache_clear() -> None:
    """Remove every cached build and step."""
    from ..cache.store import clear_cache
    from ..report.formatting import fmt_bytes

    gone = clear_cache()
    click.echo(f"removed {gone.builds.entries} cached builds and {gone.steps.entries} cached "
               f"steps ({fmt_bytes(gone.builds.bytes + gone.steps.bytes)})")
