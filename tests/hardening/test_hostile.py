"""Hostile files: each one, made here and kept tiny, makes the tool that reads it run its
payload (write or overwrite a file), as it did on edgepack 787dc7f. Here each is refused or
read as data, and its payload never runs; with ``--trust-model-code`` the payload does run,
which proves the file is what it claims. Counted in the terminal summary ("hostile/...").

* TorchScript whose ``__setstate__`` overwrites bytes of a file and creates another
  (``torch.from_file(..., shared=True)``): inspect, bench, build, convert, and a project
  build whose cell a trusted build left in the cache;
* SavedModels that write a file when they run (``tf.io.write_file``, ``tf.print`` to a file)
  or when they load (a resource initialiser): bench, build, convert; inspect reads them;
* ``.pt2`` archives that run code in torch.export.load or in the loaded module: a pickled
  constant, a pickled weight, pickled sample inputs, guard code, a shape expression; plus an
  AOTInductor entry and an entry smuggled in front of the zip: inspect reads them, bench and
  build refuse them;
* cache entries that name files outside themselves, hold links, or were re-sealed without the
  key; a cache key file others can read;
* device names that are paths, and a device ``python`` that is shell code.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from fuzzlib import TARGETS_DIR, tally
from hostile_files import evil_torchscript, smuggled

BUILD = ["-t", "x86-host", "--runs", "2", "--warmup", "0"]
T = ["--targets-dir", str(TARGETS_DIR)]
BENCH = ["--runs", "1", "--warmup", "0"]


def attempt(group: str, what: str, argv: list[str], exits: set[int],
            side_effects: Callable[[], list[str]], says: tuple[str, ...] = ()) -> str:
    """Run ``argv``; the case fails when the exit code is not in ``exits``, the payload left a
    trace (``side_effects``), the output lacks ``says`` or holds a traceback."""
    t = tally(group)
    t.cases += 1
    done = CliRunner().invoke(cli, argv)
    t.exits[done.exit_code] = t.exits.get(done.exit_code, 0) + 1
    problems = []
    if done.exit_code not in exits:
        problems.append(f"exit {done.exit_code}: {done.output.strip()[-300:]}")
    problems += [f"payload ran: {e}" for e in side_effects()]
    problems += [f"does not say {s!r}" for s in says if s not in done.output]
    if "Traceback" in done.output:
        problems.append("traceback on the output")
    if problems:
        t.failures.append(f"{what} ({argv[0]}): {'; '.join(problems)}")
    return done.output


def assert_clean(group: str) -> None:
    failures = tally(group).failures
    assert not failures, "\n".join(failures)


def exists(*paths: Path) -> Callable[[], list[str]]:
    return lambda: [str(p) for p in paths if p.exists()]


# ----------------------------------------------------------------------------- TorchScript

def test_torchscript_setstate_never_runs_untrusted(tmp_path: Path) -> None:
    victim, planted = tmp_path / "victim.txt", tmp_path / "planted.pth"
    victim.write_bytes(b"hello world")
    evil = evil_torchscript(tmp_path, victim, planted)

    def harmed() -> list[str]:
        return [str(planted)] * planted.exists() + \
            [str(victim)] * (victim.read_bytes() != b"hello world")

    for argv in (["inspect", str(evil)], ["bench", str(evil), *BENCH],
                 ["build", str(evil), *BUILD, "--input-shape", "x:1x4", "-o",
                  str(tmp_path / "b")],
                 ["convert", str(evil), "--to", "onnx", "-o", str(tmp_path / "m.onnx")]):
        attempt("hostile/torchscript", "__setstate__ writes files", argv, {5}, harmed,
                says=("TorchScript", "--trust-model-code"))
    assert_clean("hostile/torchscript")
    assert not (tmp_path / "b").exists() and not (tmp_path / "m.onnx").exists()
    # the file is what it claims: trusted, its code runs
    CliRunner().invoke(cli, ["--trust-model-code", "inspect", str(evil)])
    assert planted.exists() and victim.read_bytes() == b"XXXXo world"


def test_cached_matrix_cell_is_not_served_untrusted(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A project cell built once with --trust-model-code is in the build cache; the same build
    without trust is refused (exit 5) instead of handed the cached folder."""
    victim, planted = tmp_path / "victim.txt", tmp_path / "planted.pth"
    victim.write_bytes(b"hello world")
    evil = evil_torchscript(tmp_path, victim, planted)
    (tmp_path / "edgepack.yaml").write_text(
        f"models:\n  - name: evil\n    model: {evil.name}\n    input_shape: {{x: [1, 4]}}\n"
        "    targets: [fuzz-onnx]\n")
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = [*T, "build", "--model", "evil", "--runs", "2", "--warmup", "0", "--json"]
    trusted = CliRunner().invoke(cli, ["--trust-model-code", *argv])
    assert trusted.exit_code == 0, trusted.output
    shutil.rmtree(tmp_path / "build")
    planted.unlink()
    victim.write_bytes(b"hello world")
    attempt("hostile/torchscript", "a cached cell served without trust", argv, {5},
            exists(planted, tmp_path / "build"), says=("TorchScript", "--trust-model-code"))
    assert_clean("hostile/torchscript")


# ----------------------------------------------------------------------------- SavedModel

@pytest.fixture(scope="module")
def evil_savedmodels(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    """SavedModels (input x[N,4] -> y = 2x) that write ``mark`` when their serving function
    runs (write_file, print to a file) or when they load (a resource initialiser)."""
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    folder = tmp_path_factory.mktemp("evil-sm")
    mark = folder / "MARK"
    spec = [tf.TensorSpec([None, 4], tf.float32)]

    class WritesAtLoad(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):  # noqa: ANN202 (TensorFlow's signature)
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="r")

        def _initialize(self):  # noqa: ANN202
            tf.io.write_file(str(mark), "written at load")

    def write(x):  # noqa: ANN001, ANN202
        tf.io.write_file(str(mark), "written when run")
        return {"y": x * 2}

    def print_to_file(x):  # noqa: ANN001, ANN202
        tf.print(x, output_stream=f"file://{mark}")
        return {"y": x * 2}

    made = {}
    for name, fn, holder in (("write_file", write, tf.Module()),
                             ("print_to_file", print_to_file, tf.Module()),
                             ("writes_at_load", lambda x: {"y": x * 2}, tf.Module())):
        if name == "writes_at_load":
            holder.resource = WritesAtLoad()
        holder.f = tf.function(fn, input_signature=spec)
        with captured():
            tf.saved_model.save(holder, str(folder / name),
                                signatures={"serving_default": holder.f})
        made[name] = folder / name
    return made, mark


def test_savedmodel_that_touches_files_is_refused_and_inspected_as_data(
        evil_savedmodels: tuple[dict[str, Path], Path], tmp_path: Path) -> None:
    made, mark = evil_savedmodels
    for name, sm in made.items():
        for argv in (["bench", str(sm), *BENCH],
                     ["build", str(sm), *BUILD, "-o", str(tmp_path / "b")],
                     ["convert", str(sm), "--to", "onnx", "-o", str(tmp_path / "m.onnx")]):
            attempt("hostile/savedmodel", name, argv, {5}, exists(mark),
                    says=("SavedModel", "--trust-model-code"))
        out = attempt("hostile/savedmodel", name, ["inspect", str(sm), "--json"], {0},
                      exists(mark))
        assert "needs --trust-model-code" in json.loads(out)["details"]["code_check"]
    assert_clean("hostile/savedmodel")
    # the files are what they claim: trusted, the payload runs
    done = CliRunner().invoke(cli, ["--trust-model-code", "bench", str(made["write_file"]),
                                    *BENCH])
    assert done.exit_code == 0, done.output
    assert mark.read_text() == "written when run"


def test_a_cached_load_does_not_skip_the_check(
        evil_savedmodels: tuple[dict[str, Path], Path], tmp_path: Path) -> None:
    """A trusted build caches what the source is; an untrusted build of the same file is
    still refused, not served from the cache."""
    made, mark = evil_savedmodels
    argv = [*T, "build", str(made["write_file"]), "-t", "fuzz-onnx", "--runs", "2",
            "--warmup", "0", "-o"]
    CliRunner().invoke(cli, ["--trust-model-code", *argv, str(tmp_path / "trusted")])
    mark.unlink(missing_ok=True)
    attempt("hostile/savedmodel", "write_file, load cached", [*argv, str(tmp_path / "b")],
            {5}, exists(mark), says=("--trust-model-code",))
    assert_clean("hostile/savedmodel")


def test_a_plain_savedmodel_builds_untrusted_and_says_it_was_checked(
        tiny_savedmodel: Path, tmp_path: Path) -> None:
    out = attempt("hostile/savedmodel", "plain model", ["inspect", str(tiny_savedmodel),
                                                        "--json"], {0}, list)
    assert json.loads(out)["details"]["code_check"].startswith("only computation")
    attempt("hostile/savedmodel", "plain model", ["bench", str(tiny_savedmodel), *BENCH], {0},
            list)
    for run in ("built", "cached"):
        attempt("hostile/savedmodel", f"plain model, {run}",
                [*T, "build", str(tiny_savedmodel), "-t", "fuzz-tflite", "--runs", "2",
                 "--warmup", "0", "-o", str(tmp_path / run)], {0}, list)
        notes = json.loads((tmp_path / run / "report.json").read_text())["notes"]
        assert any("SavedModel checked without running it" in n for n in notes), notes
    assert_clean("hostile/savedmodel")


# ----------------------------------------------------------------------------- .pt2

@pytest.fixture(scope="module")
def plain_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    path = tmp_path_factory.mktemp("pt2") / "plain.pt2"
    program = torch.export.export(net, (torch.randn(2, 4),),
                                  dynamic_shapes=({0: torch.export.Dim("b")},))
    torch.export.save(program, str(path))
    return path


class _Touch:
    """Pickled, it touches ``path`` when unpickled: what a crafted pickle does."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


def _rewrite(src: Path, dst: Path, change: Callable[[str, dict[str, bytes]], None]) -> Path:
    """A copy of the archive ``src`` with its entries changed by ``change(root, files)``."""
    with zipfile.ZipFile(src) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist()}
    change(next(iter(files)).split("/")[0], files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    dst.write_bytes(buf.getvalue())
    return dst


def _program(change: Callable[[dict], None]) -> Callable[[str, dict[str, bytes]], None]:
    def edit(root: str, files: dict[str, bytes]) -> None:
        name = f"{root}/models/model.json"
        program = json.loads(files[name])
        change(program)
        files[name] = json.dumps(program).encode()
    return edit


def _pt2_variants(plain: Path, folder: Path, mark: Path) -> dict[str, Path]:
    touch = pickle.dumps(_Touch(mark))
    name = _input_name(plain)

    def opaque_constant(root: str, files: dict[str, bytes]) -> None:
        name = f"{root}/data/constants/model_constants_config.json"
        config = json.loads(files[name])
        config["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False,
                                    "use_pickle": True, "tensor_meta": None}
        files[name] = json.dumps(config).encode()
        files[f"{root}/data/constants/opaque_obj_0"] = touch

    def pickled_weight(root: str, files: dict[str, bytes]) -> None:
        name = f"{root}/data/weights/model_weights_config.json"
        config = json.loads(files[name])
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        files[f"{root}/data/weights/{first['path_name']}"] = touch
        files[name] = json.dumps(config).encode()

    def sample_inputs(root: str, files: dict[str, bytes]) -> None:
        files[f"{root}/data/sample_inputs/model.pt"] = touch

    def guard(program: dict) -> None:
        program["guards_code"] = [f"L['{name}'].size()[0] >= 0 and "
                                  f"__import__('pathlib').Path({str(mark)!r}).touch() is None"]

    def expression(program: dict) -> None:
        values = program["graph_module"]["graph"]["tensor_values"]
        dim = next(d for v in values.values() for d in v["sizes"] if "as_expr" in d)
        symbol = dim["as_expr"]["expr_str"].split("'")[1]
        dim["as_expr"]["expr_str"] = (f"Symbol('{symbol}', positive=True, integer=True) if "
                                      f"__import__('pathlib').Path({str(mark)!r}).touch() is "
                                      "None else 0")

    def aoti(root: str, files: dict[str, bytes]) -> None:
        files[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF not really"

    changes: dict[str, Callable[[str, dict[str, bytes]], None]] = {
        "pickled constant": opaque_constant, "pickled weight": pickled_weight,
        "pickled sample inputs": sample_inputs, "guard code": _program(guard),
        "shape expression": _program(expression), "AOTInductor library": aoti}
    made = {name: _rewrite(plain, folder / f"{name.replace(' ', '_')}.pt2", change)
            for name, change in changes.items()}
    with zipfile.ZipFile(plain) as zf:
        root = zf.namelist()[0].split("/")[0]
    made["entry smuggled in front"] = folder / "smuggled.pt2"
    made["entry smuggled in front"].write_bytes(smuggled(
        plain.read_bytes(), "in front", f"{root}/models/model.json", b"{}"))
    return made


def _input_name(plain: Path) -> str:
    with zipfile.ZipFile(plain) as zf:
        name = next(n for n in zf.namelist() if n.endswith("models/model.json"))
        program = json.loads(zf.read(name))
    return next(s["user_input"]["arg"]["as_tensor"]["name"]
                for s in program["graph_module"]["signature"]["input_specs"] if "user_input" in s)


def test_pt2_that_would_run_code_is_read_as_data_and_never_loaded(plain_pt2: Path,
                                                                  tmp_path: Path) -> None:
    mark = tmp_path / "MARK"
    made = _pt2_variants(plain_pt2, tmp_path, mark)
    for what, evil in made.items():
        inspect_exits = {5} if what == "entry smuggled in front" else {0}
        attempt("hostile/pt2", what, ["inspect", str(evil)], inspect_exits, exists(mark))
        for argv in (["bench", str(evil), *BENCH],
                     ["build", str(evil), *BUILD, "-o", str(tmp_path / "b")]):
            attempt("hostile/pt2", what, argv, {5}, exists(mark), says=(".pt2",))
    assert_clean("hostile/pt2")
    # the files are what they claim: trusted, torch runs the payload
    for what in ("pickled constant", "shape expression", "guard code"):
        CliRunner().invoke(cli, ["--trust-model-code", "inspect", str(made[what])])
        CliRunner().invoke(cli, ["--trust-model-code", "bench", str(made[what]), *BENCH])
        assert mark.exists(), what
        mark.unlink()


def test_a_plain_pt2_loads_untrusted_through_the_check(plain_pt2: Path) -> None:
    attempt("hostile/pt2", "plain model", ["bench", str(plain_pt2), *BENCH], {0}, list)
    from edgepack.pipeline.source import open_source

    assert ".pt2 checked without running it" in open_source(plain_pt2, None).notes[0]
    assert_clean("hostile/pt2")


# ----------------------------------------------------------------------------- cache

def _entry(store, key: str, files: dict[str, str], record: object = None) -> Path:
    """Write an entry by hand, sealed with the cache's real key (as a process with that key
    would), so each test isolates one check."""
    from edgepack.cache.store import ENTRY, _mac, mac_key_of

    data = {"key": key, "files": files, "record": record}
    folder = store.folder / key
    folder.mkdir(parents=True)
    (folder / ENTRY).write_text(json.dumps({**data, "mac": _mac(mac_key_of(store.root),
                                                                store.kind, data)}))
    return folder


def test_cache_entries_cannot_be_smuggled_into(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepack.cache.keys import json_digest
    from edgepack.cache.store import ENTRY, KEY_FILE, CacheWarning, StepCache

    monkeypatch.delenv("EDGEPACK_CACHE_KEY", raising=False)
    store = StepCache(tmp_path / "cache")
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    secret = Path("/etc/hostname") if Path("/etc/hostname").is_file() else Path(__file__)
    data = b"model bytes"
    digest = hashlib.sha256(data).hexdigest()

    traversal = _entry(store, "traversal", {"../../outside/evil.tflite": digest})
    (traversal / "evil.tflite").write_bytes(data)
    link = _entry(store, "link", {"model.tflite": hashlib.sha256(secret.read_bytes())
                                  .hexdigest()})
    (link / "model.tflite").symlink_to(secret)
    resealed = _entry(store, "resealed", {}, {"p50_ms": 1.0})
    fields = json.loads((resealed / ENTRY).read_text())
    fields.pop("mac")
    fields["record"] = {"p50_ms": 99.0}  # main's seal: a sha256 anyone can recompute
    (resealed / ENTRY).write_text(json.dumps({**fields, "sha256": json_digest(fields)}))

    t = tally("hostile/cache")
    for key, harm in (("traversal", lambda: list(outside.iterdir())),
                      ("link", lambda: [p for p in out.rglob("*") if p.is_file()]),
                      ("resealed", list)):
        t.cases += 1
        with pytest.warns(CacheWarning, match="discarded and rebuilt"):
            hit = store.fetch(key, out)
        if hit is not None or harm() or (store.folder / key).exists():
            t.failures.append(f"{key}: used ({hit}), wrote {harm()}, or kept")
    assert_clean("hostile/cache")
    key_file = tmp_path / "cache" / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_a_cache_key_others_can_read_is_not_used(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepack.cache.store import KEY_FILE, CacheWarning, StepCache, _key_file

    monkeypatch.delenv("EDGEPACK_CACHE_KEY", raising=False)
    root = tmp_path / "shared"
    root.mkdir()
    (root / KEY_FILE).write_text("ab" * 32)
    (root / KEY_FILE).chmod(0o644)
    _key_file.cache_clear()
    t = tally("hostile/cache")
    t.cases += 1
    with pytest.warns(CacheWarning, match="cannot be used"):
        StepCache(root).store("k", {}, {"n": 1})
    if (root / "steps").exists():
        t.failures.append("an entry was sealed with a key others can read")
    # a shared cache uses a shared secret instead; another secret cannot read its entries
    monkeypatch.setenv("EDGEPACK_CACHE_KEY", "a long shared secret for the team")
    StepCache(root).store("k", {}, {"n": 1})
    assert StepCache(root).fetch("k").record == {"n": 1}
    monkeypatch.setenv("EDGEPACK_CACHE_KEY", "another long secret, another team")
    t.cases += 1
    with pytest.warns(CacheWarning, match="MAC does not check"):
        if StepCache(root).fetch("k") is not None:
            t.failures.append("an entry sealed with another key was used")
    assert_clean("hostile/cache")


# ----------------------------------------------------------------------------- devices

def test_device_names_that_are_paths_are_refused_everywhere(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    from edgepack.devices.lock import device_lock
    from edgepack.errors import UsageError

    monkeypatch.setenv("EDGEPACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("EDGEPACK_DEVICES", str(tmp_path / "devices.yaml"))
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "x.lock"
    victim.write_text("keep me")
    t = tally("hostile/devices")
    for name in ("../../x", "a/b", "..", ".hidden", "x\nmore"):
        (tmp_path / "edgepack.yaml").write_text(json.dumps(
            {"model": "m.onnx", "devices": {name: {"url": "ssh://pi@127.0.0.1"}}}))
        attempt("hostile/devices", f"device {name!r}", ["devices", "list"], {2}, lambda: [],
                says=("bad device name",))
        t.cases += 1
        try:
            with device_lock(name, wait_s=0):
                t.failures.append(f"{name!r}: locked")
        except UsageError:
            pass
    assert victim.read_text() == "keep me"
    assert_clean("hostile/devices")


def test_the_device_python_is_a_program_not_shell_code(tmp_path: Path) -> None:
    """The probe's command line quotes every word of ``python``: a ';' stays an argument."""
    from edgepack.devices.facts import probe_device
    from edgepack.devices.inventory import Device, DeviceSpec
    from edgepack.devices.ssh import Completed

    sent: list[str] = []

    class Recording:  # the part of ssh.Connection that probe_device uses
        device = Device("pi", DeviceSpec(url="ssh://pi@127.0.0.1",
                                         python=f"python3; touch {tmp_path}/PWNED"), tmp_path)

        def run(self, command: str, stdin: bytes | None = None,
                timeout: float = 60) -> Completed:
            sent.append(command)
            return Completed(0, json.dumps(FACTS).encode() + b"\n", b"")

    t = tally("hostile/devices")
    t.cases += 1
    probe_device(Recording())  # type: ignore[arg-type]
    if sent != [f"'python3;' touch {tmp_path}/PWNED -"]:
        t.failures.append(f"python sent as {sent}")
    assert_clean("hostile/devices")


FACTS = {"arch": "aarch64", "os": "Linux", "kernel": "6.1", "hostname": "pi",
         "python": "3.11", "python_executable": "/usr/bin/python3", "cpu": "cortex-a72",
         "cores": 4, "memory_total_mb": 4096, "memory_available_mb": 3000, "tmp_dir": "/tmp",
         "disk_free_mb": 1000}
