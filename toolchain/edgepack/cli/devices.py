"""``edgepack devices``: the boards reachable over SSH (add, list, remove, check)."""

from __future__ import annotations

from pathlib import Path

import click

from .app import State
from .options import force_option, json_option, print_json, trust_new_host_option


@click.group("devices", invoke_without_command=True)
@json_option()
@click.pass_context
def devices_group(ctx: click.Context, as_json: bool) -> None:
    """Boards reachable over SSH (`devices list` is the default).

    \b
    edgepack devices add pi4 ssh://pi@192.168.1.20 --target raspberrypi4
    edgepack devices check pi4 --trust-new-host      first contact: accept its host key once
    edgepack bench model.int8.tflite --device pi4    on-device latency and fidelity
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(devices_list, as_json=as_json)


@devices_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--target", "-t", help="The device's target (see `edgepack targets`).")
@click.option("--key", type=click.Path(path_type=Path),
              help="Private key to log in with (default: the ssh agent and ~/.ssh/id_*).")
@click.option("--known-hosts", type=click.Path(path_type=Path),
              help="known_hosts file its host key is checked against (default ~/.ssh/known_hosts).")
@click.option("--python", default="python3", show_default=True,
              help="The board's python command.")
@click.option("--runtime", "runtimes", multiple=True, metavar="PACKAGE==VERSION",
              help="A runtime the fleet runs, checked besides the board's own (repeatable), "
                   "e.g. tflite-runtime==2.14.")
@click.option("--emulated", is_flag=True, default=None,
              help="Mark it emulated (detected for qemu-user boards anyway).")
@force_option("Replace a device of that name.")
@click.pass_obj
def devices_add(state: State, name: str, url: str, target: str | None, key: Path | None,
                known_hosts: Path | None, python: str, runtimes: tuple[str, ...],
                emulated: bool | None, force: bool) -> None:
    """Add device NAME at URL (ssh://user@host[:port]) to your inventory."""
    from pydantic import ValidationError

    from ..devices.inventory import DeviceSpec, add_device
    from ..errors import UsageError

    if target is not None:
        target = state.catalog().targets.entry(target).item.name  # UsageError if unknown
    declared = {}
    for item in runtimes:
        package, sep, version = item.partition("==")
        if not sep:
            raise UsageError(f"--runtime {item}: expected PACKAGE==VERSION",
                             hint="e.g. --runtime tflite-runtime==2.14")
        declared[package.strip()] = version.strip()
    try:
        spec = DeviceSpec(url=url, target=target, key=str(key.expanduser().resolve())
                          if key else None, known_hosts=str(known_hosts.expanduser().resolve())
                          if known_hosts else None, python=python, emulated=emulated,
                          runtimes=declared)
    except ValidationError as exc:
        raise UsageError(f"device {name}: {exc.errors()[0]['msg']}") from None
    device = add_device(name, spec, replace=force)
    click.echo(f"added {name}: {device.user}@{device.host}:{device.port} to {device.source}; "
               f"next: `edgepack devices check {name}`")


@devices_group.command("list")
@json_option()
@click.pass_obj
def devices_list(state: State, as_json: bool) -> None:
    """List the devices of your inventory and of the project's edgepack.yaml."""
    inventory = state.inventory()
    rows = [{"name": n, **inventory.devices[n].spec.model_dump(exclude_defaults=True),
             "source": str(inventory.devices[n].source)} for n in inventory.names()]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no devices (inventory: {inventory.user_file}); add one with "
                   "`edgepack devices add NAME ssh://user@host --target TARGET`")
    for row in rows:
        extra = "".join(f" {k}={row[k]}" for k in ("target", "runtimes", "emulated") if k in row)
        click.echo(f"{row['name']:16} {row['url']}{extra}")


@devices_group.command("remove")
@click.argument("name")
def devices_remove(name: str) -> None:
    """Remove device NAME from your inventory."""
    from ..devices.inventory import remove_device

    remove_device(name)
    click.echo(f"removed {name}")


@devices_group.command("check")
@click.argument("name")
@trust_new_host_option("Accept the host key of a device never seen before, once, and record it.")
@click.option("--timeout", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds to wait for the board.")
@json_option()
@click.pass_obj
def devices_check(state: State, name: str, trust_new_host: bool, timeout: int,
                  as_json: bool) -> None:
    """Reach device NAME and report what it has: arch, OS, Python, runtimes, CPU, memory."""
    from ..devices.remote import check_device

    device = state.inventory().get(name)
    facts = check_device(device, trust_new_host=trust_new_host, timeout=timeout)
    if as_json:
        print_json({"device": name, "reachable": True, **facts.to_dict()})
        return
    runtimes = ", ".join(f"{k} {v}" for k, v in facts.packages.items()) or "none"
    lines = [
        ("reachable", f"yes ({device.user}@{device.host}:{device.port})"),
        ("arch", facts.arch), ("os", facts.os), ("python", facts.python),
        ("packages", runtimes), ("cpu", facts.cpu), ("cores", facts.cores),
        ("memory", f"{facts.memory_available_mb} MB available of {facts.memory_total_mb} MB"),
        ("disk", f"{facts.disk_free_mb} MB free in {facts.tmp_dir}"),
        ("throttled", facts.throttled or "not readable"),
        ("temperature", f"{facts.temperature_c} C" if facts.temperature_c is not None
         else "not readable"),
        ("emulated", f"{'YES: timings are not performance' if facts.emulated else 'no'} "
                     f"({facts.emulation})"),
    ]
    for key, value in lines:
        click.echo(f"{key:12} {value}")
