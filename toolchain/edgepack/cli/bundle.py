"""``edgepack package``, ``verify`` and ``keygen``: release bundles, checking them, signing keys."""

from __future__ import annotations

from pathlib import Path

import click

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
@click.option("--extract", "extract_to", type=click.Path(path_type=Path),
              help="Once verified, extract the bundle into this new folder.")
@json_option()
def verify_command(bundle: Path, key: Path | None, extract_to: Path | None,
                   as_json: bool) -> None:
    """Verify a release bundle before using it.

    \b
    Checks, in order: the archive is safe to open (no links, absolute or '..' paths, device
    files, duplicate names or zip bombs; nothing is extracted before), the signature when
    --key is given, the manifest's schema, every file's sha256, and that each model loads in
    its runtime with the inputs and outputs the manifest promises.
    Exit codes: 0 valid, 10 tampered or corrupt, 11 signature required but missing or
    invalid, 12 unsafe archive.
    """
    from ..bundle import verify

    result = verify(bundle, key, extract_to=extract_to)
    if as_json:
        print_json(result.to_dict())
        return
    click.echo(f"{bundle}: valid: {result.name} {result.version} for {result.target}, "
               f"{result.files} files match the manifest")
    if result.signature_verified:
        click.echo(f"  signature: verified, key {result.signed_by}")
    elif result.signed_by:
        click.echo(f"  signature: signed with key {result.signed_by}, not checked (pass --key)")
    else:
        click.echo("  signature: unsigned")
    for m in result.models:
        click.echo(f"  {m.file}: loads in {m.runtime} ({m.runtime_version}); inputs and "
                   "outputs match the manifest")
    if result.extracted_to:
        click.echo(f"  extracted to {result.extracted_to}")


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
