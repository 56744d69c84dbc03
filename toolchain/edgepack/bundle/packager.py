"""``edgepack package``: a build folder -> a release bundle an app team can ship and verify.

One bundle per target: the deliverable artifacts (the fp32 reference only when asked for),
``labels.txt`` when the model has labels, ``MODEL_CARD.md``, the build report, ``manifest.json``
(every file's sha256, every model's tensors, runtime requirements and measured numbers) and,
with a key, ``manifest.json.sig``. Packaging the same build twice gives the same bytes: the
archive's timestamps come from SOURCE_DATE_EPOCH or else from the build time, never the clock.
Every bundle is planned (and its destination checked) before the first one is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, UsageError
from ..formats import get_format, inspect
from . import android_readme, model_card, signing
from .archive_writer import FORMATS, write_archive
from .build_folder import BuildFolder, find_build_folders, sha256_file
from .layouts import LAYOUTS, member_path
from .manifest import (
    MANIFEST,
    SIGNATURE,
    BundleFile,
    describe,
    document,
    document_format,
    encode,
    model_entry,
    schema_errors,
    with_files,
)
from .runtime_requirements import min_runtime_versions, validated_with

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

LABELS = "labels.txt"
MODEL_CARD = "MODEL_CARD.md"
README = "README.md"
#: semantic versioning, as the manifest schema requires it
VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?"
                        r"(\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class PackagedBundle:
    """A bundle written by ``package``."""

    path: Path
    target: str
    size_bytes: int
    sha256: str
    key_id: str | None  # the signing key, None when unsigned

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def package(build: str | Path, version: str, *, format: str = "zip", layout: str = "plain",
            sign: str | Path | None = None, output: str | Path = "dist",
            include_reference: bool = False, force: bool = False) -> list[PackagedBundle]:
    """Package the build folder ``build`` (or every build folder inside it) as release bundles
    named ``NAME-VERSION-TARGET[-android].FORMAT`` in ``output``, signed with the ed25519
    private key file ``sign`` when given."""
    if not VERSION_RE.match(version):
        raise UsageError(f"version {version!r} is not X.Y.Z (semantic versioning)",
                         hint="e.g. --version 1.0.0 or 1.0.0-rc.1")
    if format not in FORMATS:
        raise UsageError(f"unknown archive format {format!r}",
                         hint=f"one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}", hint=f"one of {', '.join(LAYOUTS)}")
    folders = find_build_folders(Path(build))
    key = signing.load_private_key(sign) if sign else None
    out = Path(output)
    plans = [(f, out / bundle_name(f, version, layout, format)) for f in folders]
    _check_destinations([dest for _, dest in plans], force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder: {exc.strerror}", path=out) from exc
    epoch = _source_date_epoch()
    bundles = []
    for folder, dest in plans:
        files = bundle_files(folder, version, layout, include_reference, key)
        write_archive(dest, files, format, epoch if epoch is not None else _build_time(folder))
        bundles.append(PackagedBundle(dest, folder.target, dest.stat().st_size,
                                      sha256_file(dest),
                                      signing.key_id(key.public_key()) if key else None))
    return bundles


def bundle_name(folder: BuildFolder, version: str, layout: str, archive_format: str) -> str:
    stem = "-".join([folder.name, version, folder.target] + (["android"] if layout == "android"
                                                             else []))
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", stem) + f".{archive_format}"


def bundle_files(folder: BuildFolder, version: str, layout: str, include_reference: bool,
                 key: Ed25519PrivateKey | None = None) -> list[BundleFile]:
    """Every file of the bundle, ending with manifest.json (and its signature with a key)."""
    place = partial(member_path, layout, model_name=folder.name)
    files: list[BundleFile] = []
    models = []
    for artifact in folder.artifacts(include_reference):
        main, *sidecars = folder.artifact_files(artifact)
        role = "model" if artifact["role"] == "deliverable" else "reference-model"
        fmt, precision = artifact["format"], artifact["precision"]
        files.append(BundleFile(place(role, main.name), role, fmt, precision, source=main))
        files += [BundleFile(place("model-sidecar", s.name), "model-sidecar",
                             document_format(s.name, default=fmt), precision, source=s)
                  for s in sidecars]
        runtime = str(get_format(fmt).runtime)
        models.append(model_entry(
            folder.report, artifact, file=place(role, main.name), runtime=runtime,
            min_runtime_version=min_runtime_versions(main, fmt),
            validated_with=validated_with(runtime, folder.report["tools"]),
            operator_versions=inspect(main).details.get("operator_versions"),
            sidecars=[place("model-sidecar", s.name) for s in sidecars]))
    labels_path = None
    if folder.labels:
        if any("\n" in label or "\r" in label for label in folder.labels):
            raise UsageError("a label contains a line break; labels.txt holds one per line",
                             path=folder.path)
        labels_path = place("labels", LABELS)
        files.append(document(labels_path, "labels", "".join(
            f"{label}\n" for label in folder.labels).encode("utf-8")))
    desc = describe(folder.report, version, layout, models, labels_path)
    files.append(document(place("model-card", MODEL_CARD), "model-card",
                          model_card.render(desc).encode("utf-8")))
    if layout == "android":
        files.append(document(place("readme", README), "readme",
                              android_readme.render(desc).encode("utf-8")))
    files += [document(place("report", p.name), "report", p.read_bytes())
              for p in folder.report_files()]
    manifest = with_files(desc, files)
    errors = schema_errors(manifest)
    if errors:
        raise UsageError(f"cannot package: the manifest would break its schema: {errors[0]}",
                         path=folder.path, hint="file and model names may use letters, digits "
                                                "and . _ + - only")
    data = encode(manifest)
    files.append(BundleFile(MANIFEST, "manifest", "json", data=data))
    if key is not None:
        files.append(BundleFile(SIGNATURE, "signature", "json", data=signing.sign(data, key)))
    return files


def _check_destinations(dests: list[Path], force: bool) -> None:
    if len(set(dests)) != len(dests):
        raise UsageError("two build folders would make the same bundle name",
                         hint="package them separately with different -o folders")
    for dest in dests:
        if dest.exists() and not force:
            raise OutputError("bundle exists", path=dest, hint="pass --force to replace it")


def _source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org), the timestamp of every archive entry."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds since 1970")
    return int(value)


def _build_time(folder: BuildFolder) -> int:
    try:
        return int(datetime.fromisoformat(folder.report["created"]).timestamp())
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError("report.json has no valid 'created' time", path=folder.path,
                         hint="set SOURCE_DATE_EPOCH") from exc

