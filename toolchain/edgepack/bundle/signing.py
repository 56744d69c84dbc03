"""ed25519 signatures over a bundle's manifest.

The signature covers the exact bytes of ``manifest.json``, which lists the sha256 of every other
file, so one signature vouches for the whole bundle. ed25519 signing is deterministic (RFC
8032), so signing the same manifest twice gives the same signature and a signed bundle stays
byte-for-byte reproducible.

Keys are PEM files: PKCS#8 for the private key (written owner-only, unencrypted: keep it in a
secret store) and SubjectPublicKeyInfo for the public one, readable by OpenSSL and every
mainstream crypto library. ``manifest.json.sig`` is a small JSON document naming the algorithm
and the key (sha256 of the raw public key), so a mismatch can say *which* key signed. That
name is only a label: anyone can copy a signature file into a forged bundle, so a signature
counts only once it verifies against a key the caller trusts (``--key``, or every ``*.pub`` in
``--trusted-keys DIR``), and the label is never used to choose whether to check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError, SignatureRequiredError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

ALGORITHM = "ed25519"
PUBLIC_SUFFIX = ".pub"


def keygen(path: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write a new key pair: the private key at ``path``, the public key at ``path.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + PUBLIC_SUFFIX)
    for p in (private_path, public_path):
        if p.exists() and not force:
            raise OutputError("exists", path=p, hint="pass --force to replace the key pair")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_atomic(private_path, private_pem, 0o600)
    _write_atomic(public_path, public_pem, 0o644)
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The ed25519 private key in a PEM file, or a UsageError saying what the file is instead."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        hint = "pass the private key (not the .pub)" if b"PUBLIC KEY" in data else \
            "make one with edgepack keygen (passphrase-protected keys are not supported)"
        raise UsageError("not an unencrypted PEM private key", path=path, hint=hint) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"a {type(key).__name__} key, not ed25519", path=path,
                         hint="make one with edgepack keygen")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The ed25519 public key in a PEM file; a private key is refused, not silently used."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise UsageError("is a private key; verify needs the public key", path=path,
                         hint=f"pass the {PUBLIC_SUFFIX} file that edgepack keygen wrote")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise UsageError("not a PEM public key", path=path,
                         hint="pass the .pub file that edgepack keygen wrote") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"a {type(key).__name__} key, not ed25519", path=path)
    return key


def load_trusted_keys(folder: str | Path) -> dict[str, Ed25519PublicKey]:
    """Every ``*.pub`` in ``folder`` by key id; a UsageError for a missing or empty folder or
    a file that is not an ed25519 public key (a trust list that silently skips a key is
    worse than one that refuses to load)."""
    path = Path(folder)
    if not path.is_dir():
        raise UsageError("no such folder of trusted keys", path=path,
                         hint=f"a folder of ed25519 public keys ({PUBLIC_SUFFIX} files from "
                              "edgepack keygen)")
    keys = {key_id(k): k for k in map(load_public_key, sorted(path.glob(f"*{PUBLIC_SUFFIX}")))}
    if not keys:
        raise UsageError(f"no {PUBLIC_SUFFIX} files in the folder of trusted keys", path=path,
                         hint=f"copy the publisher's {PUBLIC_SUFFIX} file there")
    return keys


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of sha256(raw key)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(manifest: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The contents of ``manifest.json.sig`` for ``manifest`` (canonical JSON)."""
    doc = {"algorithm": ALGORITHM, "key_id": key_id(private_key.public_key()),
           "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii")}
    return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")


def signed_by(signature_doc: bytes) -> str | None:
    """The key id a signature document names (None if it names none): shown without a key."""
    try:
        value = json.loads(signature_doc).get("key_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def check(manifest: bytes, signature_doc: bytes | None,
          trusted: dict[str, Ed25519PublicKey], bundle: str | Path) -> str:
    """Raise SignatureRequiredError unless ``signature_doc`` is a valid ed25519 signature of
    ``manifest`` by one of the ``trusted`` keys (key id -> key); return that key's id. Every
    trusted key is tried: the key id the document names is not evidence of anything."""
    from cryptography.exceptions import InvalidSignature

    ids = ", ".join(sorted(trusted))
    if signature_doc is None:
        raise SignatureRequiredError(f"the bundle is unsigned but a signature is required "
                                     f"(trusted {_keys(trusted)} {ids})", path=bundle,
                                     hint="package it with --sign PRIVATE_KEY")
    try:
        doc = json.loads(signature_doc)
        if doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm {doc.get('algorithm')!r}")
        signature = base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SignatureRequiredError(f"manifest.json.sig is not an {ALGORITHM} signature "
                                     f"document ({exc})", path=bundle,
                                     hint="the bundle was modified; get it again") from exc
    for kid, public_key in sorted(trusted.items()):
        try:
            public_key.verify(signature, manifest)
            return kid
        except InvalidSignature:
            continue
    signer = doc.get("key_id")
    if signer in trusted:
        why = "manifest.json or its signature was modified after signing"
    elif len(trusted) == 1:
        why = f"it was signed by key {signer}, not {ids}"
    else:
        why = f"it was signed by key {signer}, which is not among the trusted keys {ids}"
    raise SignatureRequiredError(f"invalid signature: {why}", path=bundle,
                                 hint="do not ship it; get the bundle again from its publisher")


def _keys(trusted: dict[str, object]) -> str:
    return "key" if len(trusted) == 1 else "keys"


def _read_key_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the key file: {exc.strerror}", path=path) from exc


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` from the first byte (a private key is never world-readable,
    not even briefly), then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write: {exc.strerror}", path=path) from exc
