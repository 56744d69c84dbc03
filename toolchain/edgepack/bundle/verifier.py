"""``edgepack verify``: is this bundle exactly what was packaged, and does it work here?

In order, each failure with its own exit code:
1. the archive is safe to open (``archive_safety``; otherwise 12, before anything is extracted);
2. with a public key, ``manifest.json.sig`` is a valid signature of the manifest by that key
   (otherwise 11: unsigned, other key, or modified) — checked before the manifest is trusted;
3. the manifest matches its JSON Schema, the archive holds exactly the files it lists, and each
   has the listed size and sha256 (otherwise 10);
4. every model loads in its runtime and its inputs and outputs (names, shapes, dtypes,
   quantization) are the ones the manifest promises (otherwise 10; 5 when a model does not
   load, 9 when no runtime for it is installed).
With ``extract_to`` the verified files are then copied out, so unpacking goes through the same
checks rather than through a tool that follows links.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleTamperedError, ModelError, OutputError, UsageError, first_line
from ..runtimes import RuntimeOptions, get_runtime, runtime_for_format
from ..runtimes.base import Runtime
from ..signature import Signature, TensorSpec
from . import signing
from .archive_safety import ArchiveLimits, extracted
from .build_folder import sha256_file
from .manifest import MANIFEST, SIGNATURE, schema_errors


@dataclass(frozen=True)
class ModelCheck:
    file: str
    runtime: str
    runtime_version: str


@dataclass(frozen=True)
class VerifyResult:
    bundle: Path
    name: str
    version: str
    target: str
    files: int
    signed_by: str | None  # the key id manifest.json.sig names; None: unsigned
    signature_verified: bool  # checked against the key the caller gave
    models: list[ModelCheck] = field(default_factory=list)
    extracted_to: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bundle"] = str(self.bundle)
        d["extracted_to"] = str(self.extracted_to) if self.extracted_to else None
        return d


def verify(bundle: str | Path, key: str | Path | None = None, *,
           extract_to: str | Path | None = None,
           limits: ArchiveLimits | None = None) -> VerifyResult:
    """Verify ``bundle``; with ``key`` (a public key file) also require a valid signature."""
    path = Path(bundle)
    if not path.is_file():
        raise UsageError("no such bundle file", path=path)
    public_key = signing.load_public_key(key) if key else None
    dest = _destination(Path(extract_to)) if extract_to else None
    with extracted(path, limits) as (root, members):
        names = {m.name for m in members if not m.is_dir}
        if MANIFEST not in names:
            raise BundleTamperedError(f"no {MANIFEST}: not an edgepack bundle", path=path)
        manifest_bytes = (root / MANIFEST).read_bytes()
        signature = (root / SIGNATURE).read_bytes() if SIGNATURE in names else None
        if public_key is not None:
            signing.check(manifest_bytes, signature, public_key, path)
        manifest = _manifest(manifest_bytes, path)
        _check_files(root, names, manifest, path)
        models = [_check_model(root, m, path) for m in manifest["models"]]
        if dest is not None:
            _copy_out(root, dest)
    b = manifest["bundle"]
    return VerifyResult(path, b["name"], b["version"], b["target"], len(manifest["files"]),
                        signing.signed_by(signature) if signature else None,
                        public_key is not None, models, dest)


def _manifest(data: bytes, bundle: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleTamperedError(f"{MANIFEST} is not valid JSON ({exc})", path=bundle,
                                  hint="the bundle was modified; get it again") from exc
    errors = schema_errors(manifest)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise BundleTamperedError(f"{MANIFEST} does not match its schema: {errors[0]}{more}",
                                  path=bundle, hint="the bundle was modified, or made by an "
                                                    "edgepack newer than this one")
    return manifest


def _check_files(root: Path, names: set[str], manifest: dict[str, Any], bundle: Path) -> None:
    """Exactly the listed files, each with its listed size and sha256."""
    listed = {f["path"]: f for f in manifest["files"]}
    if len(listed) != len(manifest["files"]):
        raise BundleTamperedError(f"{MANIFEST} lists a file twice", path=bundle)
    extra = sorted(names - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleTamperedError(f"{extra[0]} is in the bundle but not in {MANIFEST} (added "
                                  "after packaging)", path=bundle, hint="do not use this bundle")
    missing = sorted(set(listed) - names)
    if missing:
        raise BundleTamperedError(f"{missing[0]} is listed in {MANIFEST} but missing",
                                  path=bundle, hint="do not use this bundle")
    for name, entry in sorted(listed.items()):
        file = root / name
        if file.stat().st_size != entry["size"] or sha256_file(file) != entry["sha256"]:
            raise BundleTamperedError(f"{name} does not match its sha256 in {MANIFEST} "
                                      "(modified after packaging)", path=bundle,
                                      hint="do not use this bundle; get it again")
    for model in manifest["models"]:
        if model["file"] not in listed:
            raise BundleTamperedError(f"model {model['file']} is not among the files of "
                                      f"{MANIFEST}", path=bundle)


def _check_model(root: Path, model: dict[str, Any], bundle: Path) -> ModelCheck:
    """Load the model in its runtime; its signature must be the manifest's."""
    runtime = _runtime(model["runtime"], model["format"])
    try:
        session = runtime.load(str(root / model["file"]), RuntimeOptions(threads=1))
    except ModelError as exc:
        raise ModelError(f"{model['file']} does not load in {runtime.name}: "
                         f"{first_line(exc.__cause__ or exc)}", path=bundle) from exc
    expected = Signature.from_dict({"inputs": model["inputs"], "outputs": model["outputs"]})
    difference = signature_difference(expected, session.signature)
    if difference:
        raise BundleTamperedError(f"{model['file']}: {difference}", path=bundle,
                                  hint="the manifest does not describe this model")
    return ModelCheck(model["file"], runtime.name, session.runtime_version)


def _runtime(name: str, format_name: str) -> Runtime:
    """The runtime that validated the model in the build, else any installed one for it."""
    try:
        runtime = get_runtime(name)
        if runtime.available() and format_name in runtime.formats:
            return runtime
    except KeyError:
        pass
    try:
        return runtime_for_format(format_name)
    except KeyError:
        raise BundleTamperedError(f"no edgepack runtime runs {format_name!r} models",
                                  hint="the manifest names an unknown format") from None


def signature_difference(expected: Signature, actual: Signature) -> str | None:
    """The first way ``actual`` (the loaded model) differs from ``expected`` (the manifest) in
    what a caller depends on: names, shapes, dtypes and quantization; None if it does not."""
    for kind, exp, act in (("input", expected.inputs, actual.inputs),
                           ("output", expected.outputs, actual.outputs)):
        if len(exp) != len(act):
            return f"the model has {len(act)} {kind}s, the manifest says {len(exp)}"
        for e, a in zip(exp, act, strict=True):
            for attr in ("name", "shape", "dtype", "quantization"):
                if getattr(e, attr) != getattr(a, attr):
                    return (f"{kind} {e.name!r}: {attr} is {_show(a, attr)} in the model, "
                            f"{_show(e, attr)} in the manifest")
    return None


def _show(spec: TensorSpec, attr: str) -> str:
    if attr == "shape":
        return spec.shape_str()
    value = getattr(spec, attr)
    return repr(value.to_dict() if hasattr(value, "to_dict") else value)


def _destination(dest: Path) -> Path:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OutputError("exists and is not an empty folder", path=dest,
                          hint="choose a new folder to extract into")
    return dest


def _copy_out(root: Path, dest: Path) -> None:
    """Copy the verified files to ``dest`` via a hidden sibling, renamed when complete; files
    and folders get the usual permissions, not the private ones of the temporary folder."""
    staging = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    umask = os.umask(0)
    os.umask(umask)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root, staging, copy_function=shutil.copyfile)
        for folder, _, _ in os.walk(staging):
            os.chmod(folder, 0o777 & ~umask)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot extract: {exc.strerror}", path=dest) from exc
