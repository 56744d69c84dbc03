"""The catalog of targets and profiles: built-in YAML files plus the folders a user names.

Later folders override earlier ones by name, so a team can replace a built-in target with its
own measured version. Every file is validated against its schema when the catalog is read; a bad
file is reported with the file, the field and the reason. Lookups accept aliases and suggest the
closest names for a typo.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, UsageError
from .profiles import Profile
from .targets import Target

T = TypeVar("T", bound=BaseModel)


def builtin_dir(kind: str) -> Path:
    """Where the built-in ``targets`` or ``profiles`` folder is.

    In an installed wheel the YAML files are package data (``edgepack/_builtin``); in a source
    checkout (editable install, tests) they are the repository's top-level folders.
    """
    packaged = Path(str(resources.files("edgepack"))) / "_builtin" / kind
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / kind


@dataclass
class Entry(Generic[T]):
    item: T
    source: Path


@dataclass
class Registry(Generic[T]):
    kind: str  # "target" or "profile"
    entries: dict[str, Entry[T]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> T:
        return self.entry(name).item

    def entry(self, name: str) -> Entry[T]:
        key = self.aliases.get(name, name)
        if key in self.entries:
            return self.entries[key]
        known = list(self.entries) + list(self.aliases)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else \
            f"known {self.kind}s: {', '.join(self.names())}"
        raise UsageError(f"unknown {self.kind} '{name}'", hint=hint)


@dataclass
class Catalog:
    targets: Registry[Target]
    profiles: Registry[Profile]

    def profile_for(self, target: Target, name: str | None = None) -> Profile:
        return self.profiles.get(name or target.default_profile)


def load_catalog(targets_dirs: list[Path] | tuple[Path, ...] = (),
                 profiles_dirs: list[Path] | tuple[Path, ...] = ()) -> Catalog:
    """Built-ins, then each user folder in order; then the cross-file references are checked."""
    targets: Registry[Target] = Registry("target")
    profiles: Registry[Profile] = Registry("profile")
    for folder in [builtin_dir("profiles"), *map(Path, profiles_dirs)]:
        _load_dir(folder, Profile, profiles)
    for folder in [builtin_dir("targets"), *map(Path, targets_dirs)]:
        _load_dir(folder, Target, targets)
    for entry in targets.entries.values():
        if entry.item.default_profile not in profiles.entries:
            raise ConfigError(f"default_profile: unknown profile '{entry.item.default_profile}'",
                              path=entry.source,
                              hint=f"known profiles: {', '.join(profiles.names())}")
    for entry in profiles.entries.values():
        fb = entry.item.fallback_without_calibration
        if fb is not None and fb not in profiles.entries:
            raise ConfigError(f"fallback_without_calibration: unknown profile '{fb}'",
                              path=entry.source)
    return Catalog(targets=targets, profiles=profiles)


def _load_dir(folder: Path, schema: type[T], registry: Registry[T]) -> None:
    if not folder.is_dir():
        raise ConfigError(f"not a folder of {registry.kind} YAML files", path=folder)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    # a later folder replaces built-ins of the same name, aliases included
    for path in files:
        item = load_yaml_model(path, schema)
        name = item.name
        if name in registry.entries and registry.entries[name].source.parent == path.parent:
            raise ConfigError(f"name: '{name}' is also defined in "
                              f"{registry.entries[name].source.name}", path=path)
        registry.entries[name] = Entry(item, path)
        for alias in getattr(item, "aliases", []):
            owner = registry.aliases.get(alias)
            if owner is not None and owner != name and \
                    registry.entries[owner].source.parent == path.parent:
                raise ConfigError(f"aliases: '{alias}' already names {owner}", path=path)
            registry.aliases[alias] = name


def load_yaml_model(path: Path, schema: type[T]) -> T:
    """Parse ``path`` and validate it, with errors as ``file: field: reason``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}{problem}", path=path) from exc
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of fields at the top level", path=path)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{loc}: {first['msg']}{more}", path=path) from exc
