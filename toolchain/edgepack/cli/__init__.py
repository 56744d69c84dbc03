"""The command line: parse, call the Python API, render (``edgepack = edgepack.cli:main``).

``app`` is the root group and its global options; each command group is a module of its own,
added to the root here, so no command module imports another.
"""

from . import build, bundle, cache, catalog, convert, devices, doctor, inspect, measure
from .app import cli, main

for _command in (catalog.targets, catalog.profiles, inspect.inspect, build.build,
                 convert.convert_command, measure.bench, measure.compare, bundle.package_command,
                 bundle.verify_command, bundle.keygen_command, devices.devices_group,
                 cache.cache_group, doctor.doctor):
    cli.add_command(_command)

__all__ = ["cli", "main"]
