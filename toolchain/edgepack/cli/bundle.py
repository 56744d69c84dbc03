"""``edgepack package``, ``verify`` and ``keygen``: release bundles, checking them, signing keys."""

from __future__ import annotations

from pathlib import Path

import click

from .app import State
from .options import force_option, json_option, output_option, print_json


@click.command("package")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--version", "version", required=True,
              help="Release version, X.Y.Z (semantic versioning).")
@click.option("--format", "archive_format", type=click.Choice(["zip", "tar.gz"]), default="zip",
              show_default=True, help="Archive format.")
@click.option("--layout", type=click.Choice(["plain", "android"]), default="plain",
              show_default=True,
              help="plain: one flat folder; android: models and labels under assets/MODEL/.")
@click.option("--sign", "key", type=click.Path(path_type=Path),
              help="Sign the manifest with this ed25519 private key (see `edgepack keygen`).")
@click.option("--include-reference", is_flag=True, help="Also ship the fp32 reference artifact.")
@output_option("Folder for the bundles.", default=Path("dist"))
@force_option("Replace bundles that exist.")
@json_option()
def package_command(build_dir: Path, version: str, archive_format: str, layout: str,
                    key: Path | None, include_reference: bool, output: Path, force: bool,
                    as_json: bool) -> None:
    """Package a build folder as a release bundle, one per target.

    BUILD_DIR is a folder `edgepack build` wrote, or a folder of them. The bundle holds the
    artifacts, labels.txt, MODEL_CARD.md, the report and manifest.json (every file's sha256).
    Packaging the same build twice gives identical bytes: timestamps come from
    SOURCE_DATE_EPOCH, else from the build time.
    """
    from ..bundle import package
    from ..report.formatting import fmt_bytes

    bundles = package(build_dir, version, format=archive_format, layout=layout, sign=key,
                      output=output, include_reference=include_reference, force=force)
    if as_json:
        print_json([b.to_dict() for b in bundles])
        return
    for b in bundles:
        signed = f"signed with key {b.key_id}" if b.key_id else "unsigned"
        click.echo(f"{b.path}  {fmt_bytes(b.size_bytes)}  {signed}  sha256 {b.sha256}")


@click.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", type=click.Path(path_type=Path),
              help="Require a valid signature by this ed25519 public key (the .pub file).")
@click.option("--trusted-keys", type=click.Path(path_type=Path),
              help="Require a valid signature by one of the .pub keys in this folder (or "
                   "EDGEPACK_TRUSTED_KEYS, or verify: trusted_keys in edgepack.yaml).")
@click.option("--require-signature", is_flag=True,
              help="Fail unless the bundle is signed by a trusted key (or "
                   "EDGEPACK_REQUIRE_SIGNATURE=1, or verify: require_signature in "
                   "edgepack.yaml).")
@click.option("--expect-name", help="Fail unless the bundle is of this model.")
@click.option("--expect-version", help="Fail unless the bundle is this release version.")
@click.option("--expect-target", help="Fail unless the bundle is for this target.")
@click.option("--extract", "extract_to", type=click.Path(path_type=Path),
              help="Once verified, extract the bundle into this new folder.")
@json_option()
@click.pass_obj
def verify_command(state: State, bundle: Path, key: Path | None, trusted_keys: Path | None,
                   require_signature: bool, expect_name: str | None, expect_version: str | None,
                   expect_target: str | None, extract_to: Path | None, as_json: bool) -> None:
    """Verify a release bundle before using it.

    \b
    Checks, in order: the archive is safe to open (its local entries match its central
    directory; no links, absolute or '..' paths, device files, duplicate names or zip
    bombs); the signature, when trusted keys are given, reading nothing but the manifest and
    its signature first; the manifest's schema, the expected name, version and target, the
    file list and sizes; only then extracts, checking every file's sha256; and loads each
    model (ONNX, TFLite and OpenVINO IR only) with the inputs and outputs the manifest
    promises. Without trusted keys the bundle is only checked against its own manifest,
    which anyone could have rewritten: it is reported as not authenticated.
    Exit codes: 0 valid, 2 a signature is required but no key was given, 10 tampered,
    corrupt or not the expected bundle, 11 unsigned or not signed by a trusted key,
    12 unsafe archive.
    """
    from ..bundle import verify
    from ..bundle.verifier import Expectations

    settings = _project_verify(state)
    result = verify(bundle, key, trusted_keys=trusted_keys or settings[1],
                    require_signature=require_signature or settings[0],
                    expect=Expectations(expect_name, expect_version, expect_target),
                    extract_to=extract_to)
    if as_json:
        print_json(result.to_dict())
        return
    what = f"{result.name} {result.version} for {result.target}"
    if result.signature_verified:
        click.echo(f"{bundle}: valid: {what}, {result.files} files match the signed manifest")
        click.echo(f"  signature: verified, trusted key {result.signed_by}")
    else:
        click.echo(f"{bundle}: consistent but NOT AUTHENTICATED: {what}, {result.files} files "
                   "match its manifest, which anyone could have rewritten with them")
        click.echo(f"  signature: {_unchecked(result.signed_by)}")
    for m in result.models:
        click.echo(f"  {m.file}: loads in {m.runtime} ({m.runtime_version}); inputs and "
                   "outputs match the manifest")
    if result.extracted_to:
        click.echo(f"  extracted to {result.extracted_to}")


def _unchecked(signed_by: str | None) -> str:
    if signed_by:
        return (f"not checked: manifest.json.sig names key {signed_by}, which proves nothing "
                "until it verifies (pass --key or --trusted-keys; --require-signature to "
                "insist)")
    return "none: the bundle is unsigned (--require-signature refuses such bundles)"


def _project_verify(state: State) -> tuple[bool, Path | None]:
    """(require_signature, trusted_keys folder) from the project's ``verify:`` settings."""
    project = state.loaded_project()
    if project is None:
        return False, None
    settings = project.spec.verify
    return settings.require_signature, project.resolve(settings.trusted_keys)


@click.command("keygen")
@click.argument("path", type=click.Path(path_type=Path))
@force_option("Replace an existing key pair.")
def keygen_command(path: Path, force: bool) -> None:
    """Make an ed25519 key pair for signing bundles: PATH (private) and PATH.pub (public)."""
    from ..bundle.signing import key_id, keygen, load_public_key

    private, public = keygen(path, force=force)
    click.echo(f"private key: {private} (owner-only; keep it secret, it signs releases)")
    click.echo(f"public key:  {public} (key {key_id(load_public_key(public))}; give it to "
               "whoever runs edgepack verify)")
