"""`edgepack verify`: tampered, unsigned and unsafe bundles are refused, each with its own exit
code and a one-line message naming what is wrong; a valid bundle's models all load and run.

Crafted archives (path traversal, absolute paths, links, device files, duplicates, zip and gzip
bombs, entries only a streaming unzipper sees) are made here with zipfile/tarfile; each must be
refused before anything is extracted, with nothing written outside verify's own temporary
folder, which must be gone afterwards. Forged bundles (rewritten manifest, old signature; an
older or another signed bundle; a manifest naming TorchScript) fail once a signature or an
expectation is asked for, and nothing is written to disk before the signature checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import tarfile
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from edgepack.bundle import ArchiveLimits, verify
from edgepack.bundle import archive_safety as safety
from edgepack.cli import cli
from edgepack.errors import UnsafeArchiveError

from tests.hostile_files import evil_torchscript, smuggled

TAMPERED, SIGNATURE_REQUIRED, UNSAFE = 10, 11, 12


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(result: Result) -> str:
    err = result.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def temp_leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("edgepack-verify-*")}


# ------------------------------------------------------------------------ crafted archives

def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        for name, data in entries:
            zf.writestr(name, data)
    return path


def make_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def zip_link(name: str) -> zipfile.ZipInfo:
    """A zip member whose mode bits say symbolic link (its data is the link's target)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


class Zeros(io.RawIOBase):
    """``size`` zero bytes without holding them in memory (for the gzip bomb)."""

    def __init__(self, size: int):
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """Where a successful attack would write, checked empty afterwards; cwd is inside tmp_path
    so a relative escape would land here too."""
    tag = f"evil-{uuid.uuid4().hex[:8]}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    spots = {"tag": Path(tag), "tmp": Path(tempfile.gettempdir()) / tag,
             "beside": tmp_path / tag, "dir": tmp_path / "outside"}
    spots["dir"].mkdir()
    before = temp_leftovers()
    yield spots
    assert not spots["tmp"].exists() and not spots["beside"].exists()
    assert not (cwd / tag).exists() and list(spots["dir"].iterdir()) == []
    assert temp_leftovers() == before  # verify's own temporary folder is gone


def _cases(o: dict[str, Path], tmp: Path) -> dict[str, tuple[Path, str]]:
    tag, outdir = str(o["tag"]), str(o["dir"])
    bomb = zipfile.ZipInfo("model.tflite")
    bomb.compress_type = zipfile.ZIP_DEFLATED
    big = tarfile.TarInfo("model.tflite")
    big.size = 64 << 20
    gz_bomb = tmp / "gzbomb.tar.gz"
    with tarfile.open(gz_bomb, "w:gz") as tf:
        tf.addfile(big, Zeros(big.size))
    return {
        "zip traversal": (make_zip(tmp / "a.zip", [("ok.txt", b"x"), (f"../{tag}", b"pwn")]),
                          "'..' component"),
        "zip absolute": (make_zip(tmp / "b.zip", [(str(o["tmp"]), b"pwn")]), "absolute path"),
        "zip symlink": (make_zip(tmp / "c.zip", [(zip_link("link"), outdir.encode()),
                                                 ("link/payload", b"pwn")]), "symbolic link"),
        "zip duplicate": (make_zip(tmp / "d.zip", [("model.tflite", b"good"),
                                                   ("model.tflite", b"evil")]), "appears twice"),
        "zip case duplicate": (make_zip(tmp / "e.zip", [("Model.tflite", b"a"),
                                                        ("model.tflite", b"b")]),
                               "ignoring case"),
        "zip bomb": (make_zip(tmp / "f.zip", [(bomb, bytes(64 << 20))]), "zip bomb"),
        "zip backslash": (make_zip(tmp / "g.zip", [(f"..\\{tag}", b"pwn")]), "backslash"),
        "tar traversal": (make_tar(tmp / "h.tar.gz", [(tar_member(f"a/../../{tag}"), b"pwn")]),
                          "'..' component"),
        "tar absolute": (make_tar(tmp / "i.tar.gz", [(tar_member(str(o["tmp"])), b"pwn")]),
                         "absolute path"),
        "tar symlink": (make_tar(tmp / "j.tar.gz", [
            (tar_member("link", tarfile.SYMTYPE, outdir), b""),
            (tar_member("link/payload"), b"pwn")]), "symbolic link"),
        "tar hardlink": (make_tar(tmp / "k.tar.gz", [
            (tar_member("h", tarfile.LNKTYPE, "/etc/passwd"), b"")]), "hard link"),
        "tar device": (make_tar(tmp / "l.tar.gz", [(tar_member("dev", tarfile.CHRTYPE), b"")]),
                       "device or special file"),
        "tar fifo": (make_tar(tmp / "m.tar.gz", [(tar_member("p", tarfile.FIFOTYPE), b"")]),
                     "device or special file"),
        "tar duplicate": (make_tar(tmp / "n.tar.gz", [(tar_member("m.tflite"), b"good"),
                                                      (tar_member("m.tflite"), b"evil")]),
                          "appears twice"),
        "tar file and folder": (make_tar(tmp / "o.tar.gz", [(tar_member("a"), b"file"),
                                                            (tar_member("a/b"), b"x")]),
                                "both a file and a folder"),
        "gzip bomb": (gz_bomb, "gzip bomb"),
    }


CASES = ["zip traversal", "zip absolute", "zip symlink", "zip duplicate", "zip case duplicate",
         "zip bomb", "zip backslash", "tar traversal", "tar absolute", "tar symlink",
         "tar hardlink", "tar device", "tar fifo", "tar duplicate", "tar file and folder",
         "gzip bomb"]


@pytest.mark.parametrize("case", CASES)
def test_crafted_archive_is_refused_before_extraction(
        case: str, outside: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    archive, why = _cases(outside, tmp_path)[case]
    written: list[str] = []
    real_write = safety._write
    monkeypatch.setattr(safety, "_write", lambda b, r, m, s: (written.append(m.name),
                                                              real_write(b, r, m, s)))
    result = invoke("verify", archive)
    assert result.exit_code == UNSAFE, result.output
    err = one_line(result)
    assert str(archive) in err and "unsafe archive" in err and why in err
    # a header problem stops everything before the first file; a bomb is caught while the
    # stream is read, before any member reaches the disk
    assert written == []


def test_a_member_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", [("model.tflite", bytes(2000))])
    with pytest.raises(UnsafeArchiveError, match="declares 2,000 bytes"):
        verify(archive, limits=ArchiveLimits(max_member_bytes=1000))
    with pytest.raises(UnsafeArchiveError, match="limit of 1 members"):
        verify(make_zip(tmp_path / "two.zip", [("a", b"1"), ("b", b"2")]),
               limits=ArchiveLimits(max_members=1))


def test_extraction_copies_no_more_than_a_member_declares(tmp_path: Path) -> None:
    """The cap behind the header checks: a reader that yields more than the declared size."""
    member = safety.Member("model.tflite", 10, is_dir=False)
    with pytest.raises(UnsafeArchiveError, match="holds more than the 10 bytes"):
        safety._write(tmp_path / "b.zip", tmp_path, member, io.BytesIO(bytes(4 << 20)))


def test_not_an_archive_or_corrupt_is_tampered(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    result = invoke("verify", junk)
    assert result.exit_code == TAMPERED and "not a zip or tar.gz" in one_line(result)
    cut = make_zip(tmp_path / "cut.zip", [("a.txt", bytes(range(256)) * 100)])
    cut.write_bytes(cut.read_bytes()[:-30])  # the end-of-central-directory record is gone
    assert invoke("verify", cut).exit_code == TAMPERED
    no_manifest = make_zip(tmp_path / "plain.zip", [("a.txt", b"hello")])
    result = invoke("verify", no_manifest)
    assert result.exit_code == TAMPERED and "no manifest.json" in one_line(result)


# ------------------------------------------------------------------------ real bundles

def package(build: Path, out: Path, *extra: object) -> Path:
    result = invoke("package", build, "--version", "1.0.0", "-o", out, *extra)
    assert result.exit_code == 0, result.output
    (bundle,) = out.iterdir()
    return bundle


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("release", "other"):
        assert invoke("keygen", folder / name).exit_code == 0
    return {"private": folder / "release", "public": folder / "release.pub",
            "other": folder / "other.pub"}


@pytest.fixture(scope="module")
def signed(tiny_build: Path, keys: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package(tiny_build, tmp_path_factory.mktemp("signed"), "--sign", keys["private"],
                   "--include-reference")


def rewrite(bundle: Path, dest: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of a zip bundle with its members changed by ``change`` (names kept in order)."""
    with zipfile.ZipFile(bundle) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist()}
    change(files)
    return make_zip(dest, list(files.items()))


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.slow
def test_verified_bundle_loads_and_runs_every_model(signed: Path, keys: dict[str, Path],
                                                    tiny_data: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """int8 is judged against fp32 by agreement (int8 cannot promise 1e-5): >= 95% top-1."""
    from edgepack.runtimes import get_runtime

    out = tmp_path / "unpacked"
    result = invoke("verify", signed, "--key", keys["public"], "--extract", out)
    assert result.exit_code == 0, result.output
    assert "signature: verified" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert {m["file"] for m in manifest["models"]} == {"tiny.int8.tflite", "tiny.fp32.tflite",
                                                       "tiny.int8.onnx", "tiny.fp32.onnx"}
    x = np.load(tiny_data["eval"])["image"]
    outputs = {}
    for model in manifest["models"]:
        assert model["file"] in result.stdout
        session = get_runtime(model["runtime"]).load(str(out / model["file"]))
        (probs,) = session.run({"image": x}).values()
        assert probs.shape == (len(x), 10) and np.isfinite(probs).all()
        outputs[model["file"]] = probs.argmax(axis=1)
    for fmt in ("tflite", "onnx"):
        assert (outputs[f"tiny.int8.{fmt}"] == outputs[f"tiny.fp32.{fmt}"]).mean() >= 0.95


@pytest.mark.slow
def test_api_result_and_tar_gz(tiny_build: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    bundle = package(tiny_build, tmp_path / "t", "--format", "tar.gz", "--sign", keys["private"])
    result = verify(bundle, keys["public"])
    assert result.signature_verified and result.signed_by and result.files >= 4
    assert [(m.file, m.runtime) for m in result.models] == [("tiny.int8.tflite", "litert"),
                                                            ("tiny.int8.onnx", "onnxruntime")]
    unchecked = verify(bundle)
    assert unchecked.signed_by == result.signed_by and not unchecked.signature_verified


@pytest.mark.slow
def test_a_flipped_model_byte_is_tampering(signed: Path, keys: dict[str, Path],
                                           tmp_path: Path) -> None:
    def change(files: dict[str, bytes]) -> None:
        files["tiny.int8.tflite"] = flip(files["tiny.int8.tflite"],
                                         len(files["tiny.int8.tflite"]) // 2)

    bad = rewrite(signed, tmp_path / "bad.zip", change)
    for args in ((), ("--key", keys["public"])):  # the signature is fine: the model is not
        result = invoke("verify", bad, *args)
        assert result.exit_code == TAMPERED, result.output
        err = one_line(result)
        assert "tiny.int8.tflite" in err and "sha256" in err


@pytest.mark.slow
def test_a_flipped_manifest_byte(signed: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    def in_a_checksum(files: dict[str, bytes]) -> None:
        manifest = files["manifest.json"]
        at = manifest.index(b'"sha256": "') + len(b'"sha256": "')
        files["manifest.json"] = manifest[:at] + (b"0" if manifest[at:at + 1] != b"0" else
                                                  b"1") + manifest[at + 1:]

    bad = rewrite(signed, tmp_path / "bad.zip", in_a_checksum)
    with_key = invoke("verify", bad, "--key", keys["public"])
    assert with_key.exit_code == SIGNATURE_REQUIRED
    assert "invalid signature" in one_line(with_key) and "modified" in with_key.stderr
    without = invoke("verify", bad)  # no key: the checksums catch it
    assert without.exit_code == TAMPERED and "does not match its sha256" in one_line(without)

    broken = rewrite(signed, tmp_path / "broken.zip",
                     lambda f: f.update({"manifest.json": flip(f["manifest.json"], 0)}))
    result = invoke("verify", broken)
    assert result.exit_code == TAMPERED and "manifest.json is not valid JSON" in one_line(result)

    def off_schema(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        manifest["files"][0]["size"] = "large"
        files["manifest.json"] = json.dumps(manifest).encode()

    result = invoke("verify", rewrite(signed, tmp_path / "schema.zip", off_schema))
    assert result.exit_code == TAMPERED
    assert "does not match its schema: files[0].size" in one_line(result)


@pytest.mark.slow
def test_signatures(tiny_build: Path, signed: Path, keys: dict[str, Path],
                    tmp_path: Path) -> None:
    unsigned = package(tiny_build, tmp_path / "u")
    assert invoke("verify", unsigned).exit_code == 0  # no key given: a signature is optional
    result = invoke("verify", unsigned, "--key", keys["public"])
    assert result.exit_code == SIGNATURE_REQUIRED and "unsigned" in one_line(result)
    result = invoke("verify", signed, "--key", keys["other"])
    assert result.exit_code == SIGNATURE_REQUIRED and "signed by key" in one_line(result)
    result = invoke("verify", signed, "--key", keys["private"])
    assert result.exit_code == 2 and "public key" in one_line(result)
    dropped = rewrite(signed, tmp_path / "dropped.zip", lambda f: f.pop("manifest.json.sig"))
    result = invoke("verify", dropped, "--key", keys["public"])
    assert result.exit_code == SIGNATURE_REQUIRED and "unsigned" in one_line(result)


@pytest.mark.slow
def test_files_added_or_removed_after_packaging(signed: Path, tmp_path: Path) -> None:
    added = rewrite(signed, tmp_path / "added.zip",
                    lambda f: f.update({"extra.tflite": b"TFL3"}))
    result = invoke("verify", added)
    assert result.exit_code == TAMPERED and "extra.tflite is in the bundle but not in" in \
        one_line(result)
    removed = rewrite(signed, tmp_path / "removed.zip", lambda f: f.pop("MODEL_CARD.md"))
    result = invoke("verify", removed)
    assert result.exit_code == TAMPERED and "listed in manifest.json but missing" in \
        one_line(result)


@pytest.mark.slow
def test_a_model_that_does_not_match_its_manifest(signed: Path, tmp_path: Path) -> None:
    def reshape(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        manifest["models"][0]["inputs"][0]["shape"][1] = 9
        files["manifest.json"] = json.dumps(manifest).encode()

    result = invoke("verify", rewrite(signed, tmp_path / "shape.zip", reshape))
    assert result.exit_code == TAMPERED
    err = one_line(result)
    assert "input 'image': shape is batchx8x8x1 in the model, batchx9x8x1 in the manifest" \
        in err


# ------------------------------------------------------------------------ smuggling, forgery

def recorded_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names verify writes to disk from now on."""
    written: list[str] = []
    real_write = safety._write
    monkeypatch.setattr(safety, "_write", lambda b, r, m, s: (written.append(m.name),
                                                              real_write(b, r, m, s))[1])
    return written


@pytest.mark.slow
@pytest.mark.parametrize("how", ["in front", "between", "hidden", "gap"])
def test_an_entry_only_a_streaming_unzipper_sees_is_refused(
        signed: Path, keys: dict[str, Path], tmp_path: Path, how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed bundle plus one local entry with the model's name and no central record: the
    signature and every sha256 still check (they are read through the central directory), but
    an app's ZipInputStream would install the smuggled model."""
    bad = tmp_path / "smuggled.zip"
    bad.write_bytes(smuggled(signed.read_bytes(), how, "tiny.int8.tflite", b"TFL3 evil model"))
    with zipfile.ZipFile(bad) as zf:  # what a random-access reader sees: the genuine bundle
        assert zf.testzip() is None and "manifest.json.sig" in zf.namelist()
    written = recorded_writes(monkeypatch)
    result = invoke("verify", bad, "--key", keys["public"])
    assert result.exit_code == UNSAFE, result.output
    assert "local entries do not match its central directory" in one_line(result)
    assert written == []


def forged(signed: Path, dest: Path) -> Path:
    """The signed bundle with MODEL_CARD.md changed and its sha256 recomputed in the manifest;
    the old signature kept."""
    def change(files: dict[str, bytes]) -> None:
        files["MODEL_CARD.md"] += b"\nTrust me.\n"
        manifest = json.loads(files["manifest.json"])
        entry = next(f for f in manifest["files"] if f["path"] == "MODEL_CARD.md")
        entry["size"] = len(files["MODEL_CARD.md"])
        entry["sha256"] = hashlib.sha256(files["MODEL_CARD.md"]).hexdigest()
        files["manifest.json"] = json.dumps(manifest).encode()

    return rewrite(signed, dest, change)


@pytest.fixture(scope="module")
def trusted_dir(keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trusted")
    shutil.copyfile(keys["public"], folder / "release.pub")
    shutil.copyfile(keys["other"], folder / "other.pub")
    return folder


@pytest.mark.slow
def test_a_forged_bundle_is_not_authenticated_and_fails_when_a_signature_is_required(
        signed: Path, keys: dict[str, Path], trusted_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bad = forged(signed, tmp_path / "forged.zip")
    plain = invoke("verify", bad)
    assert plain.exit_code == 0, plain.output  # consistent with its own (rewritten) manifest
    assert "NOT AUTHENTICATED" in plain.stdout and "not checked" in plain.stdout
    assert invoke("verify", bad, "--require-signature").exit_code == 2  # no key to check with
    written = recorded_writes(monkeypatch)
    for args, env in ((["--trusted-keys", trusted_dir], {}),
                      (["--require-signature", "--trusted-keys", trusted_dir], {}),
                      ([], {"EDGEPACK_TRUSTED_KEYS": str(trusted_dir)})):
        result = CliRunner().invoke(cli, ["verify", str(bad), *map(str, args)], env=env)
        assert result.exit_code == SIGNATURE_REQUIRED, result.output
        assert "modified after signing" in one_line(result)
    assert written == []  # nothing reached the disk before the signature was refused
    project = tmp_path / "project"
    project.mkdir()
    (project / "edgepack.yaml").write_text(
        f"model: m.onnx\nverify:\n  require_signature: true\n  trusted_keys: {trusted_dir}\n")
    monkeypatch.chdir(project)
    assert invoke("verify", bad).exit_code == SIGNATURE_REQUIRED
    genuine = invoke("verify", signed, "--trusted-keys", trusted_dir)
    assert genuine.exit_code == 0, genuine.output
    assert "signature: verified, trusted key" in genuine.stdout
    assert written  # a genuine bundle is extracted once its signature checks


@pytest.mark.slow
def test_an_unsigned_bundle_fails_when_a_signature_is_required(
        tiny_build: Path, trusted_dir: Path, tmp_path: Path) -> None:
    unsigned = package(tiny_build, tmp_path / "u")
    result = invoke("verify", unsigned, "--require-signature", "--trusted-keys", trusted_dir)
    assert result.exit_code == SIGNATURE_REQUIRED and "unsigned" in one_line(result)
    assert "none: the bundle is unsigned" in invoke("verify", unsigned).stdout


@pytest.mark.slow
def test_another_signed_bundle_is_not_a_substitute(signed: Path, keys: dict[str, Path]) -> None:
    """A valid bundle of another version, model or target, signed by the same key, is refused
    when the caller says what it expects."""
    ok = invoke("verify", signed, "--key", keys["public"], "--expect-name", "tiny",
                "--expect-version", "1.0.0", "--expect-target", "raspberrypi4")
    assert ok.exit_code == 0, ok.output
    for flag, value in (("--expect-version", "1.0.1"), ("--expect-name", "other"),
                        ("--expect-target", "jetson")):
        result = invoke("verify", signed, "--key", keys["public"], flag, value)
        assert result.exit_code == TAMPERED, result.output
        assert f"not the expected {flag.split('-')[-1]} {value!r}" in one_line(result)


@pytest.mark.slow
def test_verify_never_loads_a_model_that_can_carry_code(signed: Path, tmp_path: Path) -> None:
    """A manifest (no key asked for) that names a TorchScript file: verify refuses it instead
    of loading it, so its __setstate__ never runs."""
    victim, planted = tmp_path / "victim.txt", tmp_path / "planted.pth"
    victim.write_bytes(b"hello world")
    evil = evil_torchscript(tmp_path, victim, planted).read_bytes()

    def add_torchscript(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        model = dict(manifest["models"][0], file="evil.pt", format="torchscript",
                     runtime="torch", sidecars=[])
        manifest["models"].insert(0, model)
        manifest["files"].append({"path": "evil.pt", "role": "model", "format": "torchscript",
                                  "precision": "fp32", "size": len(evil),
                                  "sha256": hashlib.sha256(evil).hexdigest()})
        files["evil.pt"] = evil
        files["manifest.json"] = json.dumps(manifest).encode()
        files.pop("manifest.json.sig")

    result = invoke("verify", rewrite(signed, tmp_path / "ts.zip", add_torchscript))
    assert result.exit_code == TAMPERED, result.output
    assert "verify loads only tflite, onnx, openvino models" in one_line(result)
    assert victim.read_bytes() == b"hello world" and not planted.exists()
