"""`edgepack package` and `keygen`: deterministic, self-describing, signed release bundles made
from real builds (the tiny Keras model and the bundled digits example)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import stat
import tarfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from edgepack.bundle.manifest import schema_errors
from edgepack.cli import cli

from tests.conftest import EXAMPLE, REPO


def invoke(*args: object, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def package(build: Path, out: Path, *extra: object,
            env: dict[str, str | None] | None = None) -> Path:
    result = invoke("package", build, "--version", "1.2.3", "-o", out, *extra, env=env)
    assert result.exit_code == 0, result.output
    bundles = sorted(out.iterdir())
    assert len(bundles) == 1, bundles
    return bundles[0]


def members(bundle: Path) -> dict[str, bytes]:
    if bundle.suffix == ".zip":
        with zipfile.ZipFile(bundle) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist()}
    with tarfile.open(bundle, "r:gz") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    result = invoke("keygen", folder / "release")
    assert result.exit_code == 0, result.output
    return folder / "release", folder / "release.pub"


@pytest.fixture(scope="module")
def example_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example") / "digits-rpi"
    result = invoke("build", EXAMPLE, "--target", "raspberrypi", "-o", out, "--runs", "5")
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------- determinism

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_same_build_twice_gives_identical_bytes(tiny_build: Path, keypair: tuple[Path, Path],
                                                tmp_path: Path, fmt: str) -> None:
    args = ("--format", fmt, "--sign", keypair[0], "--include-reference")
    first = package(tiny_build, tmp_path / "a", *args)
    time.sleep(1.1)  # a clock-derived timestamp would now differ
    second = package(tiny_build, tmp_path / "b", *args)
    assert first.name == second.name == f"tiny-1.2.3-raspberrypi4.{fmt}"
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.slow
def test_entries_sorted_with_normalised_metadata(tiny_build: Path, tmp_path: Path) -> None:
    created = json.loads((tiny_build / "report.json").read_text())["created"]
    build_time = int(datetime.fromisoformat(created).timestamp())
    unset: dict[str, str | None] = {"SOURCE_DATE_EPOCH": None}
    bundle = package(tiny_build, tmp_path / "z", env=unset)
    with zipfile.ZipFile(bundle) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and not any(n.endswith("/") for n in names)
    for info in infos:
        assert info.external_attr >> 16 == stat.S_IFREG | 0o644
        # the build's time, not now (zip stores seconds in steps of 2)
        assert info.date_time == time.gmtime(build_time - build_time % 2)[:6]
    tgz = package(tiny_build, tmp_path / "t", "--format", "tar.gz", env=unset)
    with tarfile.open(tgz, "r:gz") as tf:
        for m in tf.getmembers():
            assert (m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime) == \
                (0o644, 0, 0, "", "", build_time)
            assert m.isreg()


@pytest.mark.slow
def test_source_date_epoch_is_honoured(tiny_build: Path, tmp_path: Path) -> None:
    epoch = 1_700_000_000
    env: dict[str, str | None] = {"SOURCE_DATE_EPOCH": str(epoch)}
    bundle = package(tiny_build, tmp_path / "z", env=env)
    with zipfile.ZipFile(bundle) as zf:
        assert {i.date_time for i in zf.infolist()} == {time.gmtime(epoch)[:6]}
    tgz = package(tiny_build, tmp_path / "t", "--format", "tar.gz", env=env)
    raw = tgz.read_bytes()
    assert int.from_bytes(raw[4:8], "little") == epoch  # the gzip header's own mtime
    with tarfile.open(tgz, "r:gz") as tf:
        assert {m.mtime for m in tf.getmembers()} == {epoch}
    bad = invoke("package", tiny_build, "--version", "1.0.0", "-o", tmp_path / "x",
                 env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert bad.exit_code == 2 and "SOURCE_DATE_EPOCH" in bad.stderr


# ------------------------------------------------------------------------------- contents

@pytest.mark.slow
def test_manifest_describes_every_file_and_model(tiny_build: Path, tiny_keras: Path,
                                                 tmp_path: Path) -> None:
    files = members(package(tiny_build, tmp_path / "z"))
    manifest = json.loads(files["manifest.json"])
    assert schema_errors(manifest) == []
    assert manifest["manifest_version"] == 1
    assert manifest["bundle"] == {"name": "tiny", "version": "1.2.3", "target": "raspberrypi4",
                                  "layout": "plain", "built": manifest["bundle"]["built"]}
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(files) - set(listed) == {"manifest.json"}  # unsigned: no manifest.json.sig
    for path, entry in listed.items():
        assert entry["size"] == len(files[path])
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
    report = json.loads(files["report.json"])
    deliverable = report["artifacts"][0]
    assert deliverable["file"] == "tiny.int8.tflite"
    assert listed[deliverable["file"]]["role"] == "model"
    assert listed[deliverable["file"]]["precision"] == "int8"
    assert "tiny.fp32.tflite" not in listed  # the reference ships only when asked for
    assert {"MODEL_CARD.md", "report.json", "report.md"} <= set(listed)
    assert manifest["labels"] is None and "labels.txt" not in files  # the tiny model has none

    assert {m["file"] for m in manifest["models"]} == {"tiny.int8.tflite", "tiny.int8.onnx"}
    (model,) = [m for m in manifest["models"] if m["file"] == deliverable["file"]]
    assert model["inputs"] == deliverable["signature"]["inputs"]
    assert model["outputs"] == deliverable["signature"]["outputs"]
    assert model["inputs"][0]["shape"][1:] == [8, 8, 1]
    # the honest minimum: what the converter wrote into the flatbuffer's metadata
    assert re.fullmatch(r"\d+\.\d+\.\d+", model["min_runtime_version"]["tensorflow-lite"]
                        ["version"])
    assert model["validated_with"]["litert"].startswith("ai-edge-litert")
    assert model["operator_versions"]["CONV_2D"]
    assert model["measured"]["accuracy"]["top1"] == deliverable["accuracy"]["top1"]
    assert model["measured"]["latency"][0]["device"].startswith("build host")
    assert model["measured"]["budget"]["passed"] is True
    assert manifest["source_model"]["sha256"] == hashlib.sha256(
        tiny_keras.read_bytes()).hexdigest()
    assert manifest["tools"]["edgepack"] == report["edgepack_version"]
    assert manifest["tools"]["tf.lite.TFLiteConverter"].startswith("tensorflow ")
    assert [c["tool"] for c in model["converters"]] == \
        [h["tool"] for h in deliverable["path"]]

    card = files["MODEL_CARD.md"].decode()
    top1 = f"{100 * deliverable['accuracy']['top1']:.2f}%"
    for text in ("## Inputs and preprocessing", "## Measured", "## Limitations", top1,
                 "tensorflow-lite >= ", "build host"):
        assert text in card


@pytest.mark.slow
def test_include_reference_ships_the_fp32_file(tiny_build: Path, tmp_path: Path) -> None:
    manifest = json.loads(members(package(tiny_build, tmp_path / "z",
                                          "--include-reference"))["manifest.json"])
    roles = {m["file"]: m["role"] for m in manifest["models"]}
    assert roles == {"tiny.int8.tflite": "deliverable", "tiny.fp32.tflite": "reference",
                     "tiny.int8.onnx": "deliverable", "tiny.fp32.onnx": "reference"}
    assert {f["path"]: f["role"] for f in manifest["files"]}["tiny.fp32.tflite"] == \
        "reference-model"


@pytest.mark.slow
def test_android_layout_of_the_example(example_build: Path, keypair: tuple[Path, Path],
                                       tmp_path: Path) -> None:
    bundle = package(example_build, tmp_path / "z", "--layout", "android", "--sign", keypair[0])
    assert bundle.name == "digits-1.2.3-raspberrypi4-android.zip"
    files = members(bundle)
    assert "assets/digits/digits.int8.tflite" in files
    labels = files["assets/digits/labels.txt"].decode()
    assert labels.splitlines() == (EXAMPLE / "labels.txt").read_text().split()
    assert {"manifest.json", "manifest.json.sig", "MODEL_CARD.md", "README.md",
            "report/report.json", "report/report.md"} <= set(files)
    manifest = json.loads(files["manifest.json"])
    assert manifest["labels"] == {"file": "assets/digits/labels.txt", "count": 10}
    assert manifest["models"][0]["inputs"][0]["normalization"]["scale"] == 0.0625
    readme = files["README.md"].decode()
    for text in ("app/src/main/assets/", "digits/digits.int8.tflite", "noCompress",
                 "multiply by 0.0625", "digits/labels.txt"):
        assert text in readme
    assert "```" not in readme  # prose and numbers, no Kotlin/Java code


# ------------------------------------------------------------------------------- several targets

@pytest.mark.slow
def test_a_folder_of_builds_gives_one_bundle_per_target(tiny_build: Path, tmp_path: Path) -> None:
    builds = tmp_path / "builds"
    shutil.copytree(tiny_build, builds / "tiny-rpi")
    other = shutil.copytree(tiny_build, builds / "tiny-other")
    report = json.loads((other / "report.json").read_text())
    report["target"]["name"] = "other-board"
    (other / "report.json").write_text(json.dumps(report))
    result = invoke("package", builds, "--version", "2.0.0", "-o", tmp_path / "dist", "--json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert sorted(Path(b["path"]).name for b in made) == \
        ["tiny-2.0.0-other-board.zip", "tiny-2.0.0-raspberrypi4.zip"]
    for b in made:
        assert hashlib.sha256(Path(b["path"]).read_bytes()).hexdigest() == b["sha256"]


# ------------------------------------------------------------------------------- refusals

@pytest.mark.slow
def test_refusals_have_their_exit_codes(tiny_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    package(tiny_build, out)
    again = invoke("package", tiny_build, "--version", "1.2.3", "-o", out)
    assert again.exit_code == 7 and "--force" in again.stderr
    assert invoke("package", tiny_build, "--version", "1.2.3", "-o", out, "--force"
                  ).exit_code == 0
    assert invoke("package", tiny_build, "--version", "1.2", "-o", out).exit_code == 2
    assert invoke("package", tmp_path, "--version", "1.2.3").exit_code == 2  # no report.json

    changed = shutil.copytree(tiny_build, tmp_path / "changed")
    with (changed / "tiny.int8.tflite").open("r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    result = invoke("package", changed, "--version", "1.2.3", "-o", tmp_path / "c")
    assert result.exit_code == 5 and "tiny.int8.tflite" in result.stderr
    assert "sha256" in result.stderr and not (tmp_path / "c").exists()

    failed = shutil.copytree(tiny_build, tmp_path / "failed")
    report = json.loads((failed / "report.json").read_text())
    report["status"] = "failed"
    (failed / "report.json").write_text(json.dumps(report))
    result = invoke("package", failed, "--version", "1.2.3", "-o", tmp_path / "f")
    assert result.exit_code == 3 and "budget" in result.stderr
    for r in (again, result):
        assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_failed_write_leaves_no_partial_bundle(tiny_build: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepack.bundle import archive_writer

    def explode(fh: io.BufferedIOBase, *_: object) -> None:
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(archive_writer, "_write_zip", explode)
    out = tmp_path / "dist"
    result = invoke("package", tiny_build, "--version", "1.2.3", "-o", out)
    assert result.exit_code == 7 and "No space left" in result.stderr
    assert list(out.iterdir()) == []  # neither the bundle nor its temporary file


@pytest.mark.slow
def test_signing_with_a_public_key_is_refused(tiny_build: Path, keypair: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    result = invoke("package", tiny_build, "--version", "1.2.3", "-o", tmp_path, "--sign",
                    keypair[1])
    assert result.exit_code == 2 and "private key" in result.stderr


# ------------------------------------------------------------------------------- keygen

def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    result = invoke("keygen", tmp_path / "k")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    again = invoke("keygen", tmp_path / "k")
    assert again.exit_code == 7 and "--force" in again.stderr
    assert invoke("keygen", tmp_path / "k", "--force").exit_code == 0


def test_schema_ships_inside_the_package() -> None:
    from edgepack.bundle.manifest import schema

    shipped = REPO / "toolchain" / "edgepack" / "schemas" / "manifest-v1.json"
    assert schema() == json.loads(shipped.read_text())
    assert schema()["$id"] == "urn:edgepack:manifest:v1"


# ------------------------------------------------------------------------------- sidecars

@pytest.mark.slow
def test_sidecar_files_are_hashed_and_checked(tmp_path: Path) -> None:
    """OpenVINO's weights live in the .bin beside the .xml: report.json records its sha256, the
    manifest lists it as the model's sidecar, and a .bin changed after the build is refused."""
    from tests import model_files

    model = model_files.onnx_cnn(tmp_path / "cnn.onnx")
    build = tmp_path / "build"
    done = invoke("--targets-dir", REPO / "tests" / "hardening" / "targets", "build", model,
                  "-t", "fuzz-openvino", "-o", build, "--runs", "2", "--warmup", "0")
    assert done.exit_code == 0, done.output
    report = json.loads((build / "report.json").read_text())
    (artifact,) = [a for a in report["artifacts"] if a["format"] == "openvino"]
    weights = build / next(f for f in artifact["extra_files"] if f.endswith(".bin"))
    assert artifact["extra_sha256"][weights.name] == hashlib.sha256(
        weights.read_bytes()).hexdigest()
    manifest = json.loads(members(package(build, tmp_path / "z"))["manifest.json"])
    (entry,) = [m for m in manifest["models"] if m["format"] == "openvino"]
    assert weights.name in entry["sidecars"]
    assert weights.name in {f["path"] for f in manifest["files"]}

    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one weight changed after the build
    weights.write_bytes(bytes(data))
    result = invoke("package", build, "--version", "1.2.3", "-o", tmp_path / "x")
    assert result.exit_code == 5, result.output
    assert weights.name in result.stderr and "sha256" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_per_output_budgets_fit_the_manifest(tiny_build: Path, tmp_path: Path) -> None:
    """A profile's per-output limits (by name or role, with gating) travel into the manifest."""
    build = shutil.copytree(tiny_build, tmp_path / "build")
    report = json.loads((build / "report.json").read_text())
    report["profile"]["budget"]["outputs"] = {"probs": {"min_cosine": 0.99, "gating": False},
                                              "classifier": {"min_top1_agreement": 0.9}}
    (build / "report.json").write_text(json.dumps(report))
    manifest = json.loads(members(package(build, tmp_path / "z"))["manifest.json"])
    assert manifest["profile"]["budget"]["outputs"]["probs"] == {"min_cosine": 0.99,
                                                                 "gating": False}
