"""``edgepack verify``: is this bundle exactly what was packaged, and does it work here?

In order, each failure with its own exit code:
1. the archive is safe to open (``archive_safety``: local entries matching the central
   directory, safe names, no links or bombs; otherwise 12, before anything is extracted);
2. with trusted keys (``key``, every ``*.pub`` of ``trusted_keys``, or ``$EDGEPACK_TRUSTED_KEYS``)
   ``manifest.json.sig`` must be a valid signature of the manifest by one of them (otherwise
   11: unsigned, another key, or modified). ``require_signature`` (or
   ``EDGEPACK_REQUIRE_SIGNATURE=1``) refuses to verify without such keys. Only the manifest and
   its signature have been read at this point, into memory: nothing is written to disk before
   the signature checks out;
3. the manifest matches its JSON Schema and the caller's expectations (name, version, target:
   a different or older signed bundle is not a substitute), names only models verify may load
   (ONNX, TFLite, OpenVINO IR: formats that carry no code), and the archive holds exactly the
   files it lists with the listed sizes (otherwise 10);
4. only then are the files extracted, each hashed as it is written and compared with the
   manifest (otherwise 10);
5. every model loads in its runtime and its inputs and outputs (names, shapes, dtypes,
   quantization) are the ones the manifest promises (otherwise 10; 5 when a model does not
   load, 9 when no runtime for it is installed).
With ``extract_to`` the verified files are then copied out, so unpacking goes through the same
checks rather than through a tool that follows links. Without trusted keys a bundle is checked
against its own manifest only, which anyone can rewrite: the result says it is not
authenticated.
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
from .archive_safety import Archive, ArchiveLimits, Extracted, Member, opened
from .manifest import MANIFEST, SIGNATURE, schema_errors

#: the only model formats verify loads: their files are data, not programs (see trust.py)
LOADABLE_FORMATS = ("tflite", "onnx", "openvino")
TRUSTED_KEYS_ENV = "EDGEPACK_TRUSTED_KEYS"
REQUIRE_SIGNATURE_ENV = "EDGEPACK_REQUIRE_SIGNATURE"
#: a manifest or signature larger than this is not read
MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class Expectations:
    """What the caller expects the bundle to be; None: anything. A validly signed bundle of
    another model, an older version or another target is refused, not taken in its place."""

    name: str | None = None
    version: str | None = None
    target: str | None = None


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
    signed_by: str | None  # verified: the trusted key's id; else the id the .sig names
    signature_verified: bool  # checked against a key the caller trusts
    models: list[ModelCheck] = field(default_factory=list)
    extracted_to: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bundle"] = str(self.bundle)
        d["extracted_to"] = str(self.extracted_to) if self.extracted_to else None
        return d


def verify(bundle: str | Path, key: str | Path | None = None, *,
           trusted_keys: str | Path | None = None, require_signature: bool = False,
           expect: Expectations | None = None, extract_to: str | Path | None = None,
           limits: ArchiveLimits | None = None) -> VerifyResult:
    """Verify ``bundle``. With ``key`` (a public key file) or ``trusted_keys`` (a folder of
    them) a valid signature by one of those keys is required; ``require_signature`` refuses
    to go on without such keys; ``expect`` names what the bundle must be."""
    path = Path(bundle)
    if not path.is_file():
        raise UsageError("no such bundle file", path=path)
    trusted = _trusted(key, trusted_keys, require_signature)
    dest = _destination(Path(extract_to)) if extract_to else None
    with opened(path, limits, keep=frozenset({MANIFEST, SIGNATURE}),
                keep_max_bytes=MAX_MANIFEST_BYTES) as archive:
        if MANIFEST not in archive.kept:
            raise BundleTamperedError(f"no {MANIFEST}: not an edgepack bundle", path=path)
        signature = archive.kept.get(SIGNATURE)
        signer = signing.check(archive.kept[MANIFEST], signature, trusted, path) \
            if trusted else (signing.signed_by(signature) if signature else None)
        manifest = _manifest(archive.kept[MANIFEST], path)
        _check_expectations(manifest, expect or Expectations(), path)
        _check_listing(archive, manifest)
        files = archive.extract()
        _check_digests(files, manifest, path)
        models = [_check_model(files[m["file"]].path, m, path) for m in manifest["models"]]
        if dest is not None:
            _copy_out(archive.root, dest)
    b = manifest["bundle"]
    return VerifyResult(path, b["name"], b["version"], b["target"], len(manifest["files"]),
                        signer, bool(trusted), models, dest)


def _trusted(key: str | Path | None, folder: str | Path | None,
             require: bool) -> dict[str, Any]:
    """The keys a signature must verify with (key id -> key); empty: none asked for."""
    folder = folder or os.environ.get(TRUSTED_KEYS_ENV) or None
    trusted = dict(signing.load_trusted_keys(folder)) if folder else {}
    if key:
        public_key = signing.load_public_key(key)
        trusted[signing.key_id(public_key)] = public_key
    require = require or os.environ.get(REQUIRE_SIGNATURE_ENV, "").strip().lower() in (
        "1", "true", "yes")
    if require and not trusted:
        raise UsageError("a signature is required but no key to check it with was given",
                         hint=f"pass --key PUBLIC_KEY or --trusted-keys DIR (or set "
                              f"{TRUSTED_KEYS_ENV})")
    return trusted


def _check_expectations(manifest: dict[str, Any], expect: Expectations, bundle: Path) -> None:
    """The bundle is the one the caller asked for, and holds only models verify may load."""
    b = manifest["bundle"]
    for field_name in ("name", "version", "target"):
        wanted = getattr(expect, field_name)
        if wanted is not None and b[field_name] != wanted:
            raise BundleTamperedError(
                f"this bundle is {b['name']} {b['version']} for {b['target']}, not the expected "
                f"{field_name} {wanted!r} (another or an older bundle in its place?)",
                path=bundle, hint="get the bundle you meant; do not use this one")
    for model in manifest["models"]:
        if model["format"] not in LOADABLE_FORMATS:
            raise BundleTamperedError(
                f"model {model['file']} is a {model['format']!r} model; verify loads only "
                f"{', '.join(LOADABLE_FORMATS)} models, which carry no code", path=bundle,
                hint="edgepack packages only those formats: the manifest was not made by it")


def _check_listing(archive: Archive, manifest: dict[str, Any]) -> None:
    """Exactly the listed files, each of its listed size: checked on the archive's headers,
    before anything is extracted."""
    bundle = archive.path
    listed = {f["path"]: f for f in manifest["files"]}
    if len(listed) != len(manifest["files"]):
        raise BundleTamperedError(f"{MANIFEST} lists a file twice", path=bundle)
    members: dict[str, Member] = {m.name: m for m in archive.members if not m.is_dir}
    extra = sorted(set(members) - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleTamperedError(f"{extra[0]} is in the bundle but not in {MANIFEST} (added "
                                  "after packaging)", path=bundle, hint="do not use this bundle")
    missing = sorted(set(listed) - set(members))
    if missing:
        raise BundleTamperedError(f"{missing[0]} is listed in {MANIFEST} but missing",
                                  path=bundle, hint="do not use this bundle")
    for name, entry in sorted(listed.items()):
        if members[name].size != entry["size"]:
            raise _modified(name, bundle)
    for model in manifest["models"]:
        if model["file"] not in listed:
            raise BundleTamperedError(f"model {model['file']} is not among the files of "
                                      f"{MANIFEST}", path=bundle)
        for sidecar in model.get("sidecars", []):
            if sidecar not in listed:
                raise BundleTamperedError(f"{sidecar}, a file of model {model['file']}, is not "
                                          f"among the files of {MANIFEST}", path=bundle)


def _check_digests(files: dict[str, Extracted], manifest: dict[str, Any], bundle: Path) -> None:
    """Each extracted file has the sha256 the manifest lists (hashed as it was written)."""
    for entry in manifest["files"]:
        if files[entry["path"]].sha256 != entry["sha256"]:
            raise _modified(entry["path"], bundle)


def _modified(name: str, bundle: Path) -> BundleTamperedError:
    return BundleTamperedError(f"{name} does not match its sha256 in {MANIFEST} (modified after "
                               "packaging)", path=bundle, hint="do not use this bundle; get it "
                                                               "again")


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


def _check_model(file: Path, model: dict[str, Any], bundle: Path) -> ModelCheck:
    """Load the model in its runtime; its signature must be the manifest's."""
    runtime = _runtime(model["runtime"], model["format"])
    try:
        session = runtime.load(str(file), RuntimeOptions(threads=1))
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
