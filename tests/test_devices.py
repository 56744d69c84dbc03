"""On-device validation: inventory, host keys, the runner, checks, and real boards over SSH.

The boards (``scripts/device/boards.sh up``, which .ci/run calls) are an emulated Raspberry Pi 4
(Debian arm64 + onnxruntime + ai-edge-litert under qemu-aarch64, QEMU_CPU=cortex-a72, its own
sshd on 127.0.0.1:2223) and a loopback x86 sshd whose python3 has numpy but no runtime. The
``boards`` fixture finds them through ``$EDGEPACK_BOARDS`` (default /tmp/edgepack-boards), or
brings them up itself; it skips only when they cannot come up here (not root, no binfmt_misc).

Models are tiny (about 0.13 M MACs): emulation is 170-700x slower than native.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from edgepack.cli import cli
from edgepack.devices import opversions
from edgepack.devices.agreement import AS_WRITTEN, KERNELS
from edgepack.devices.inventory import (
    Device,
    DeviceSpec,
    add_device,
    load_inventory,
    parse_url,
    remove_device,
)
from edgepack.devices.lock import device_lock
from edgepack.devices.runner import build_runner
from edgepack.errors import ConfigError, DeviceBusyError, UsageError
from edgepack.runtimes.integer_semantics import kernels_saturate

from tests.test_tflite_sources import hard_swish_source, input_types

REPO = Path(__file__).resolve().parents[1]
BOARDS = Path(os.environ.get("EDGEPACK_BOARDS", "/tmp/edgepack-boards"))
#: modules the runner must never import: the board has python3, numpy and a runtime only
HEAVY = ("pydantic", "yaml", "click", "rich", "paramiko", "tensorflow", "keras", "onnx", "torch",
         "openvino", "ai_edge_litert.schema_py_generated")


# --------------------------------------------------------------------------------- models

@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """int8 (full integer), dynamic-range int8 and fp32 TFLite files from TF 2.21, and an ONNX.

    The Dense kernel is scaled up so the softmax is peaked: a kernel fault then moves outputs
    by many quantization steps instead of hiding in a near-uniform distribution.
    """
    from edgepack.quiet import captured, import_tensorflow

    tf = import_tensorflow()
    import keras

    folder = tmp_path_factory.mktemp("device-models")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inp, x)
    dense = model.get_layer("probs")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 8, bias])
    model.export(str(folder / "sm"), verbose=False)
    rng = np.random.default_rng(0)
    paths = {}
    for mode in ("int8", "dynamic", "fp32"):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(folder / "sm"))
        if mode != "fp32":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "int8":
            conv.representative_dataset = lambda: (
                [rng.random((1, 16, 16, 3), dtype=np.float32)] for _ in range(20))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        with captured():
            data = conv.convert()
        paths[mode] = folder / f"tiny.{mode}.tflite"
        paths[mode].write_bytes(data)
    paths["onnx"] = _tiny_onnx(folder / "tiny.onnx")
    return paths


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
                                       * 0.3, "W"),
               numpy_helper.from_array(np.zeros(16, np.float32), "B"),
               numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "G")]
    nodes = [helper.make_node("Conv", ["image", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "G"], ["m"]),
             helper.make_node("Softmax", ["m"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                      ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


# ----------------------------------------------------------------------- no board needed

@pytest.fixture
def inventory_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private inventory, lock folder and working directory for one test."""
    path = tmp_path / "devices.yaml"
    monkeypatch.setenv("EDGEPACK_DEVICES", str(path))
    monkeypatch.setenv("EDGEPACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return path


def test_parse_url() -> None:
    assert parse_url("ssh://pi@10.0.0.2") == ("pi", "10.0.0.2", 22)
    assert parse_url("ssh://pi@[::1]:2200") == ("pi", "::1", 2200)
    # a user or host that is not a name (they go into known_hosts lines and messages)
    for bad in ("http://pi@h", "ssh://pi:secret@h", "ssh://pi@h/path", "pi@h",
                "ssh://p;i@h", "ssh://pi@h%0Aevil ssh-ed25519", "ssh://pi@a b"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_devices_add_list_remove(inventory_env: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(cli, ["devices", "add", "pi4", "ssh://pi@10.0.0.2:2200", "--target",
                                "raspberrypi", "--runtime", "tflite-runtime==2.14"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["devices", "list", "--json"])
    rows = json.loads(listed.output)
    assert rows == [{"name": "pi4", "url": "ssh://pi@10.0.0.2:2200", "target": "raspberrypi4",
                     "runtimes": {"tflite-runtime": "2.14"}, "source": str(inventory_env)}]
    again = runner.invoke(cli, ["devices", "add", "pi4", "ssh://pi@10.0.0.3"])
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(cli, ["devices", "add", "x", "ssh://pi:pw@h"])
    assert bad.exit_code == 2 and "passwords are never stored" in bad.output
    assert runner.invoke(cli, ["devices", "remove", "pi4"]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["devices", "list", "--json"]).output) == []
    gone = runner.invoke(cli, ["devices", "check", "pi4"])
    assert gone.exit_code == 2 and "unknown device 'pi4'" in gone.output


def test_project_devices_win_and_are_validated(inventory_env: Path) -> None:
    add_device("pi", DeviceSpec(url="ssh://pi@user-file"))
    project = inventory_env.parent / "edgepack.yaml"
    project.write_text("model: m.keras\ndevices:\n  pi: {url: 'ssh://pi@project-file', "
                       "key: keys/id_ed25519}\n")
    device = load_inventory(project_file=project).get("pi")
    assert device.host == "project-file"
    assert device.key == inventory_env.parent / "keys" / "id_ed25519"  # relative to the project
    project.write_text("model: m.keras\ndevices:\n  pi: {url: 'ssh://pi@h', colour: red}\n")
    with pytest.raises(ConfigError, match="devices.pi.colour"):
        load_inventory(project_file=project)
    remove_device("pi")
    with pytest.raises(UsageError, match="no device 'pi'"):
        remove_device("pi")


def test_op_versions_against_runtime_versions() -> None:
    fc12 = {"FULLY_CONNECTED": [12], "CONV_2D": [1]}
    problems = opversions.op_problems(fc12, "tflite-runtime", "2.14")
    assert problems == ["FULLY_CONNECTED v12 needs tflite-runtime >= 2.17.0; it runs "
                        "FULLY_CONNECTED up to v10"]
    assert opversions.op_problems(fc12, "tflite-runtime", "2.17") == []
    assert opversions.op_problems({"FULLY_CONNECTED": [14]}, "ai-edge-litert", "1.4.0")
    assert opversions.op_problems({"FULLY_CONNECTED": [14]}, "ai-edge-litert", "2.3.0") == []
    assert opversions.op_problems({"MY_CUSTOM_OP": [1]}, "ai-edge-litert", "2.3.0") == []
    assert opversions.metadata_problem("2.17.0", "tflite-runtime", "2.14")
    assert opversions.metadata_problem("2.17.0", "ai-edge-litert", "2.3.0") is None


def test_op_versions_read_from_the_flatbuffer(models: dict[str, Path]) -> None:
    ops, min_version = opversions.read_tflite(models["dynamic"])
    assert ops["FULLY_CONNECTED"] == [12] and min_version == "2.17.0"  # TF 2.21 writes these


def test_compat_refuses_what_the_board_cannot_run(models: dict[str, Path]) -> None:
    from edgepack.devices.compat import check_artifact
    from edgepack.devices.facts import DeviceFacts
    from edgepack.errors import DeviceCompatibilityError

    facts = DeviceFacts(arch="aarch64", os="Debian", kernel="6", hostname="pi", python="3.11.2",
                        python_executable="/usr/bin/python3", cpu="A72", cores=4,
                        memory_total_mb=1024, memory_available_mb=512, tmp_dir="/tmp",
                        disk_free_mb=1000, packages={"numpy": "1.26.4",
                                                     "tflite-runtime": "2.14.0"})
    device = Device("pi", DeviceSpec(url="ssh://pi@h"), Path("test"))
    ok = check_artifact(device, facts, models["int8"], upload_bytes=200_000)
    assert (ok.runtime, ok.package, ok.version) == ("litert", "tflite-runtime", "2.14.0")
    cases = [({"memory_available_mb": 40}, "needs about 65 MB of memory, the board has 40 MB"),
             ({"disk_free_mb": 3}, "/tmp has 3 MB free"),
             ({"python": "3.9.2"}, "Python 3.9.2 is too old for the runner"),
             ({"packages": {"tflite-runtime": "2.14.0"}}, "numpy is not installed"),
             ({"packages": {"numpy": "2.4.6"}}, "no litert runtime on the board")]
    for change, message in cases:
        with pytest.raises(DeviceCompatibilityError, match=message):
            check_artifact(device, DeviceFacts(**{**facts.to_dict(), **change}),
                           models["int8"], upload_bytes=200_000)
    with pytest.raises(DeviceCompatibilityError, match="FULLY_CONNECTED v12 needs"):
        check_artifact(device, facts, models["dynamic"], upload_bytes=200_000)


def test_device_lock_refuses_a_second_holder(inventory_env: Path) -> None:
    with device_lock("pi4"):
        start = time.monotonic()
        with pytest.raises(DeviceBusyError, match=f"pi4: busy .*pid {os.getpid()}"):
            with device_lock("pi4", wait_s=0.3):
                pass
        assert time.monotonic() - start < 2
    with device_lock("pi4", wait_s=0):  # released: free again at once
        pass


def test_runner_imports_only_numpy_and_a_runtime(models: dict[str, Path],
                                                 tmp_path: Path) -> None:
    """The zipapp runs with every heavy host package made unimportable, as on a bare board."""
    runner = build_runner(tmp_path / "runner.pyz")
    assert runner.read_bytes() == build_runner(tmp_path / "again.pyz").read_bytes()
    feed = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    np.savez(tmp_path / "inputs.npz", in0=feed)
    (tmp_path / "spec.json").write_text(json.dumps({
        "runtime": "onnxruntime", "model": str(models["onnx"]), "inputs": "inputs.npz",
        "input_names": ["image"], "threads": 1, "runs": 3, "warmup": 1}))
    blocker = ("import runpy, sys\n"
               f"for m in {HEAVY!r}: sys.modules[m] = None\n"
               "sys.argv = ['runner.pyz', 'spec.json']\n"
               "runpy.run_path('runner.pyz', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocker], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    assert result["latency"]["runs"] == 3 and result["outputs"] == 1


def test_probe_on_this_host_is_native() -> None:
    probe = REPO / "toolchain" / "edgepack" / "devices" / "probe.py"
    facts = json.loads(subprocess.run([sys.executable, str(probe)], capture_output=True,
                                      text=True, timeout=60, check=True).stdout)
    assert facts["emulated"] is False and facts["arch"] == os.uname().machine
    assert facts["packages"]["numpy"] == np.__version__
    assert facts["cpu_flags"], "the CPU's feature flags say how its int8 kernels add"


def test_a_board_is_compared_with_the_host_computed_as_it_adds() -> None:
    """An x86 host without VNNI saturates int8 sums that an ARM board adds exactly: the ARM
    board is compared with the file computed as written, under a tolerance for the rounding
    of fixed-point against float requantization; a board that saturates too, with the host's
    own kernels, one step apart."""
    from edgepack.devices.agreement import AS_WRITTEN_STEPS, INT_STEPS, HostReference, agree
    from edgepack.devices.facts import DeviceFacts
    from edgepack.signature import TensorSpec

    def facts(arch: str, flags: list[str]) -> DeviceFacts:
        return DeviceFacts(arch=arch, os="", kernel="", hostname="", python="",
                           python_executable="", cpu="", cores=4, memory_total_mb=None,
                           memory_available_mb=None, tmp_dir="/tmp", disk_free_mb=None,
                           cpu_flags=flags)

    pi, epyc = facts("aarch64", ["fp", "asimd", "asimddp"]), facts("x86_64", ["sse2", "avx2"])
    assert not pi.int8_saturates and epyc.int8_saturates
    assert not facts("x86_64", ["avx2", "avx_vnni"]).int8_saturates
    kernels, written = [np.zeros((2, 3))], [np.ones((2, 3))]
    saturating_host = HostReference(kernels, written)
    assert saturating_host.for_board(pi.int8_saturates) == (written, True)
    assert saturating_host.for_board(epyc.int8_saturates) == (kernels, False)
    assert HostReference(kernels).for_board(False) == (kernels, False)

    step, spec = 0.01, TensorSpec("y", (2, 3), "float32")
    ref, off = np.zeros((2, 3)), np.full((2, 3), 2.5 * step)  # 2.5 steps from the reference
    assert agree([ref], [off], [spec], steps=[step]).failures
    assert not agree([ref], [off], [spec], steps=[step], as_written=True).failures
    assert INT_STEPS < 2.5 < AS_WRITTEN_STEPS


def test_a_compressed_file_may_drift_on_the_board_as_long_as_it_follows_the_source() -> None:
    """Integer rounding carried through a deep int8 network moves a board's outputs many
    steps from the host's here and there: a compressed file passes when the board's outputs
    follow the source model as closely as the host's, and fails when they do not."""
    from edgepack.devices.agreement import FAITHFUL_MARGIN, agree
    from edgepack.signature import TensorSpec

    rng = np.random.default_rng(0)
    spec = TensorSpec("mask", (64, 64), "float32")
    source = rng.random((64, 64))
    host = source + rng.normal(0, 0.05, source.shape)  # the int8 file's own error
    drift = host.copy()  # a few elements rounded the other way, no further from the source
    flipped = rng.choice(host.size, 20, replace=False)
    drift.flat[flipped] = source.flat[flipped]
    assert agree([host], [drift], [spec]).failures  # beyond any float tolerance
    passed = agree([host], [drift], [spec], sources=[source])
    assert not passed.failures and "as close to the source model" in passed.notes[0]
    fault = host + 0.1  # every element moved: further from the source than the margin allows
    assert np.abs(fault - source).mean() > (1 + FAITHFUL_MARGIN) * np.abs(host - source).mean()
    assert agree([host], [fault], [spec], sources=[source]).failures
    far = host.copy()
    far[0, 0] = source[0, 0] + 1.5  # one element beyond the host's worst
    assert agree([host], [far], [spec], sources=[source]).failures
    assert agree([host], [drift], [spec], sources=[None]).failures  # fp32: no allowance
    assert agree([host], [drift], [spec], sources=[source[:32]]).failures  # not comparable


def test_source_outputs_in_the_order_and_layouts_a_file_gives_them() -> None:
    """What a board returns is in the file's terms (onnx2tf's NHWC, its own output order);
    the source's outputs are brought into them for the comparison, by name when they match."""
    from edgepack.signature import Signature, TensorSpec
    from edgepack.validate.outputs import outputs_in_file_order, outputs_in_source_order

    source = Signature([], [TensorSpec("map", (1, 3, 4, 5), "float32", layout="NCHW"),
                            TensorSpec("score", (1, 2), "float32")])
    made = Signature([], [TensorSpec("score", (1, 2), "float32"),
                          TensorSpec("map", (1, 4, 5, 3), "float32", layout="NHWC")])
    session = SimpleNamespace(signature=made)
    outs = [np.arange(60.0).reshape(1, 3, 4, 5), np.array([[0.25, 0.75]])]
    layouts = ["NHWC", ""]  # per source output
    in_file = outputs_in_file_order(session, outs, source, layouts)
    assert np.array_equal(in_file[0], outs[1]) and in_file[1].shape == (1, 4, 5, 3)
    back = outputs_in_source_order(session, dict(zip(made.output_names, in_file,
                                                     strict=True)), source, layouts)
    assert all(np.array_equal(a, b) for a, b in zip(back, outs, strict=True))
    # no layouts recorded: as they are; an output the source lacks: nothing to compare with
    extra = Signature([], [*made.outputs, TensorSpec("aux", (1,), "float32")])
    as_is = outputs_in_file_order(SimpleNamespace(signature=extra), outs, source, [])
    assert np.array_equal(as_is[0], outs[0]) and as_is[2] is None


# ------------------------------------------------------------------------------ the boards

def _boards_up() -> dict[str, dict]:
    found = {name: json.loads((BOARDS / f"{name}.json").read_text())
             for name in ("emulated-pi", "loopback") if (BOARDS / f"{name}.json").is_file()}
    return found if len(found) == 2 and all(_alive(b) for b in found.values()) else {}


def _alive(board: dict) -> bool:
    try:
        pid = int(Path(board["sshd_pid_file"]).read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def boards() -> Iterator[dict[str, dict]]:
    """The running boards, held for this pytest session alone (another session on the same
    machine waits: the leftover checks and the sshd kill look at the whole board), brought up
    here if .ci/run has not (and then torn down afterwards)."""
    BOARDS.mkdir(parents=True, exist_ok=True)
    with open(BOARDS / "tests.lock", "a+") as lock:
        deadline = time.monotonic() + 1200
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held {BOARDS / 'tests.lock'} for 20 min")
                time.sleep(0.5)
        yield from _boards()


def _boards() -> Iterator[dict[str, dict]]:
    found = _boards_up()
    if found:
        yield found
        return
    if os.geteuid() != 0:
        pytest.skip("the emulated Raspberry Pi needs root (apt, mount, chroot): run "
                    "`sudo scripts/device/boards.sh up`, then the tests")
    script = REPO / "scripts" / "device" / "boards.sh"
    env = {**os.environ, "EDGEPACK_BOARDS": str(BOARDS), "PYTHON": sys.executable}
    done = subprocess.run([str(script), "up"], capture_output=True, text=True, env=env,
                          timeout=900)
    if done.returncode == 4:
        pytest.skip("no binfmt_misc here: cannot run aarch64 binaries under qemu "
                    f"({done.stderr.strip().splitlines()[-1:]})")
    if done.returncode != 0:
        pytest.fail(f"scripts/device/boards.sh up failed ({done.returncode}): "
                    f"{done.stderr[-2000:]}")
    try:
        yield _boards_up()
    finally:
        subprocess.run([str(script), "down"], capture_output=True, env=env, timeout=120)


def _device(board: dict, name: str = "pi", **changes: object) -> Device:
    fields = {"url": board["url"], "key": board["key"], "known_hosts": board["known_hosts"],
              **changes}
    return Device(name, DeviceSpec(**fields), Path("test"))


def _add(runner: CliRunner, name: str, board: dict, *extra: str) -> None:
    done = runner.invoke(cli, ["devices", "add", name, board["url"], "--key", board["key"],
                               "--known-hosts", board["known_hosts"], *extra])
    assert done.exit_code == 0, done.output


def _leftovers(board: dict, before: frozenset[str] = frozenset()) -> list[str]:
    """Runner folders and processes on the emulated board, except those in ``before`` (a run
    an earlier, killed test session left to end by its own timeout)."""
    rootfs = Path(board["rootfs"])
    folders = [str(p) for p in (rootfs / "tmp").glob("edgepack.*")]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root") == str(rootfs) and \
                    b"runner.pyz" in Path(f"/proc/{pid}/cmdline").read_bytes():
                procs.append(pid)
        except OSError:
            continue
    return [item for item in folders + procs if item not in before]


@pytest.mark.device
def test_devices_check_reports_the_emulated_pi(boards: dict, inventory_env: Path) -> None:
    runner = CliRunner()
    _add(runner, "pi", boards["emulated-pi"], "--target", "raspberrypi4")
    done = runner.invoke(cli, ["devices", "check", "pi", "--json"])
    assert done.exit_code == 0, done.output
    facts = json.loads(done.output)
    assert facts["arch"] == "aarch64" and facts["os"].startswith("Debian GNU/Linux 12")
    assert facts["python"].startswith("3.11.")
    assert {"numpy", "ai-edge-litert", "onnxruntime"} <= set(facts["packages"])
    assert facts["cpu"] == "Raspberry Pi 4 Model B Rev 1.5 (4x Cortex-A72)"
    assert facts["cores"] == 4 and facts["memory_available_mb"] > 0
    assert facts["emulated"] is True and "qemu" in facts["emulation"]
    text = runner.invoke(cli, ["devices", "check", "pi"]).output
    assert "YES: timings are not performance" in text


@pytest.mark.device
def test_bench_int8_tflite_and_onnx_on_the_board(boards: dict, inventory_env: Path,
                                                models: dict[str, Path]) -> None:
    runner = CliRunner()
    before = frozenset(_leftovers(boards["emulated-pi"]))
    _add(runner, "pi", boards["emulated-pi"], "--target", "raspberrypi4")
    done = runner.invoke(cli, ["bench", str(models["int8"]), str(models["onnx"]),
                               "--device", "pi", "--runs", "5", "--warmup", "1", "--json"])
    assert done.exit_code == 0, done.output
    results = json.loads(done.output)
    assert [Path(r["artifact"]).name for r in results] == ["tiny.int8.tflite", "tiny.onnx"]
    for r in results:
        assert r["passed"] and r["emulated"] and not r["timings_are_performance"]
        assert r["facts"]["arch"] == "aarch64" and r["latency"]["runs"] == 5
        assert r["latency"]["p50_ms"] > 0 and r["latency"]["threads"] == 4
        # same artifact, same inputs: int8 is bit-exact between XNNPACK's ARM and x86 kernels
        # here, fp32 differs by float rounding only (tolerances in devices/agreement.py)
        assert r["fidelity"][0]["samples"] == 8
        assert r["fidelity"][0]["max_abs_error"] <= r["tolerances"][0]
    assert results[0]["runtime_version"] == "ai-edge-litert 2.3.0"
    assert results[1]["runtime_version"] == "onnxruntime 1.32.0"
    assert _leftovers(boards["emulated-pi"], before) == []


@pytest.mark.device
def test_a_kernel_fault_on_the_board_fails_validation_and_says_where(
        boards: dict, inventory_env: Path, models: dict[str, Path]) -> None:
    """qemu's "max" CPU sends ai-edge-litert's int8 path down SME kernels that compute
    wrong results silently: only the on-device comparison with the host catches it."""
    runner = CliRunner()
    _add(runner, "pi-max", boards["emulated-pi"], "--python", "env QEMU_CPU=max python3")
    done = runner.invoke(cli, ["bench", str(models["int8"]), "--device", "pi-max", "--runs",
                               "2", "--warmup", "0"])
    assert done.exit_code == 3, done.output
    assert "pi-max: tiny.int8.tflite computes differently on the device" in done.output
    assert "MISMATCH output 'output_0': max abs error" in done.output
    assert "at sample" in done.output and "(host " in done.output


@pytest.mark.device
def test_unknown_host_is_refused_until_trusted_once(boards: dict, inventory_env: Path,
                                                    tmp_path: Path) -> None:
    runner = CliRunner()
    board = {**boards["emulated-pi"], "known_hosts": str(tmp_path / "known_hosts")}
    _add(runner, "pi", board)
    refused = runner.invoke(cli, ["devices", "check", "pi"])
    assert refused.exit_code == 4
    assert "pi: the host key of [127.0.0.1]:2223 is not in" in refused.output
    assert "ssh-ed25519 SHA256:" in refused.output and "--trust-new-host" in refused.output
    assert not (tmp_path / "known_hosts").exists()
    trusted = runner.invoke(cli, ["devices", "check", "pi", "--trust-new-host"])
    assert trusted.exit_code == 0, trusted.output
    expected = Path(boards["emulated-pi"]["known_hosts"]).read_text().split()[:3]
    assert (tmp_path / "known_hosts").read_text().split() == expected
    assert runner.invoke(cli, ["devices", "check", "pi"]).exit_code == 0  # known now


@pytest.mark.device
def test_changed_host_key_is_refused(boards: dict, inventory_env: Path,
                                     tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    other = Path(boards["loopback"]["known_hosts"]).read_text().split()[1:3]  # another key
    known.write_text(f"[127.0.0.1]:2223 {' '.join(other)}\n")
    runner = CliRunner()
    _add(runner, "pi", {**boards["emulated-pi"], "known_hosts": str(known)})
    for trust in ([], ["--trust-new-host"]):  # trusting new hosts never overrides a change
        done = runner.invoke(cli, ["devices", "check", "pi", *trust])
        assert done.exit_code == 4
        assert "pi: the host key of [127.0.0.1]:2223 has CHANGED" in done.output
        assert "ssh-keygen -R '[127.0.0.1]:2223'" in done.output
    assert known.read_text().split()[1:3] == other


@pytest.mark.device
def test_board_without_the_runtime_is_refused(boards: dict, inventory_env: Path,
                                              models: dict[str, Path]) -> None:
    runner = CliRunner()
    _add(runner, "bare", boards["loopback"])
    checked = json.loads(runner.invoke(cli, ["devices", "check", "bare", "--json"]).output)
    assert checked["emulated"] is False and "numpy" in checked["packages"]
    done = runner.invoke(cli, ["bench", str(models["int8"]), "--device", "bare"])
    assert done.exit_code == 4
    assert ("bare: no litert runtime on the board to run tiny.int8.tflite (looked for "
            "ai-edge-litert, tflite-runtime) (pip install ai-edge-litert (or tflite-runtime) "
            "there)") in done.output


@pytest.mark.device
def test_op_version_mismatch_is_refused_before_upload(boards: dict, inventory_env: Path,
                                                      models: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edgepack.devices import ssh

    uploads: list[str] = []
    monkeypatch.setattr(ssh.Connection, "put", lambda self, local, remote: uploads.append(remote))
    runner = CliRunner()
    _add(runner, "pi", boards["emulated-pi"], "--runtime", "tflite-runtime==2.14")
    done = runner.invoke(cli, ["bench", str(models["dynamic"]), "--device", "pi"])
    assert done.exit_code == 4
    assert ("pi: tiny.dynamic.tflite cannot run on tflite-runtime 2.14 (declared for this "
            "device): FULLY_CONNECTED v12 needs tflite-runtime >= 2.17.0") in done.output
    assert uploads == []


@pytest.mark.device
def test_two_devices_run_concurrently(boards: dict, inventory_env: Path,
                                      models: dict[str, Path]) -> None:
    from edgepack.devices.remote import bench_on_devices

    feed = {"image": np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)}
    board = boards["emulated-pi"]
    devices = [_device(board, "pi-a"), _device(board, "pi-b"), _device(boards["loopback"], "x")]
    start = time.monotonic()
    out = bench_on_devices(devices, models["fp32"], feed, runs=3, warmup=0)
    assert [type(o).__name__ for o in out] == ["DeviceResult", "DeviceResult",
                                               "DeviceCompatibilityError"]
    assert all(o.passed for o in out[:2])
    serial = sum(o.seconds["total"] for o in out[:2])
    assert time.monotonic() - start < serial  # overlapped, not one after the other


@pytest.mark.device
def test_dropped_connection_says_so_and_leaves_nothing(boards: dict, inventory_env: Path,
                                                       models: dict[str, Path]) -> None:
    from edgepack.devices.remote import bench_on_device
    from edgepack.devices.ssh import DroppedError

    board = boards["emulated-pi"]
    feed = {"image": np.random.default_rng(0).random((1, 16, 16, 3), dtype=np.float32)}
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:  # long enough to be killed mid-run: ~1 ms per run under emulation
            bench_on_device(_device(board), models["int8"], feed, runs=200_000, warmup=0,
                            timeout=300)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    before = frozenset(_leftovers(board))
    worker = threading.Thread(target=run)
    worker.start()
    killed: list[int] = []
    for _ in range(3):  # a process seen with the runner may end before its ancestry is read
        killed = _kill_session_sshd(board, _wait_for_runner(board, worker, before))
        if killed or not worker.is_alive():
            break
    worker.join(60)
    assert killed and not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, DroppedError), error
    assert "pi: the connection to 127.0.0.1:2223 dropped during" in str(error)
    assert "the run was stopped and its folder removed from the board" in str(error)
    for _ in range(50):  # the TERM reaches qemu's processes within moments
        if not _leftovers(board, before):
            break
        time.sleep(0.1)
    assert _leftovers(board, before) == []


def _wait_for_runner(board: dict, worker: threading.Thread, before: frozenset[str]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.is_alive():
        procs = sorted((p for p in _leftovers(board, before) if p.isdigit()), key=int)
        if procs:
            time.sleep(1.0)  # let it get into its timing loop
            return int(procs[0])
        time.sleep(0.1)
    raise AssertionError("the runner never started on the board")


def _kill_session_sshd(board: dict, pid: int) -> list[int]:
    """SIGKILL the sshd processes serving the runner's connection (not the listener): to the
    host this is a connection that dropped, as when a cable is pulled."""
    listener = int(Path(board["sshd_pid_file"]).read_text().split()[0])
    killed = []
    while pid not in (0, 1, listener):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:  # it ended: the caller looks for the runner again
            return killed
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if b"sshd" in cmdline:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        pid = parent
    return killed


@pytest.mark.device
def test_timeout_on_the_board_says_so_and_leaves_nothing(boards: dict, inventory_env: Path,
                                                         models: dict[str, Path]) -> None:
    # 10 s: the probe (python3 started under qemu) must fit in it, and took over 4 s on a
    # 2-core AMD EPYC host; 200,000 emulated runs do not
    runner = CliRunner()
    before = frozenset(_leftovers(boards["emulated-pi"]))
    _add(runner, "pi", boards["emulated-pi"])
    start = time.monotonic()
    done = runner.invoke(cli, ["bench", str(models["int8"]), "--device", "pi", "--runs",
                               "200000", "--timeout", "10"])
    assert done.exit_code == 4
    assert "pi: the run of tiny.int8.tflite did not finish within 10 s on the board" \
        in done.output
    assert time.monotonic() - start < 45
    assert _leftovers(boards["emulated-pi"], before) == []


def test_host_only_options_are_refused_with_device(inventory_env: Path,
                                                   models: dict[str, Path]) -> None:
    done = CliRunner().invoke(cli, ["bench", str(models["onnx"]), "--device", "pi",
                                    "--duration", "2"])
    assert done.exit_code == 2 and "--duration cannot be used with --device" in done.output


@pytest.mark.device
@pytest.mark.slow
def test_build_with_device_validates_the_deliverables_on_the_board(
        boards: dict, inventory_env: Path, tiny_keras: Path, tiny_data: dict[str, Path],
        tmp_path: Path) -> None:
    """`edgepack build --device`: every deliverable runs on the emulated Pi; the report holds
    its on-device fidelity against the host and latency, marked as emulated."""
    runner = CliRunner()
    _add(runner, "pi", boards["emulated-pi"], "--target", "raspberrypi4")
    out = tmp_path / "build"
    done = runner.invoke(cli, ["build", str(tiny_keras), "-t", "raspberrypi",
                               "--calibration", str(tiny_data["calibration"]),
                               "--eval", str(tiny_data["eval"]), "-o", str(out), "--runs", "5",
                               "--device", "pi"])
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    deliverables = [a for a in report["artifacts"] if a["role"] == "deliverable"]
    assert {a["format"] for a in deliverables} == {"tflite", "onnx"}
    for art in deliverables:
        (run,) = art["devices"]
        assert run["device"] == "pi" and run["passed"] and run["emulated"]
        assert run["facts"]["arch"] == "aarch64" and not run["timings_are_performance"]
        assert run["fidelity"][0]["max_abs_error"] <= run["tolerances"][0]
        # an x86 host without VNNI computes ONNX int8 as written for the ARM board
        written = art["format"] == "onnx" and kernels_saturate()
        assert run["compared_with"] == (AS_WRITTEN if written else KERNELS)
        assert run["notes"] == [] or "as close to the source model" in run["notes"][0]
        assert f"on pi: {art['file']} p50 " in done.output
    assert "(EMULATED: not performance), outputs agree with the host's" in done.output
    text = (out / "report.md").read_text()
    assert text.count("- On board pi (Raspberry Pi 4 Model B") == len(deliverables)
    assert "EMULATED: not performance" in text and "(tolerance " in text
    assert (out / "report.html").read_text().count("<li>On board pi (") == len(deliverables)


def test_output_steps_of_int8_models_with_float_outputs(models: dict[str, Path],
                                                       tiny_build: Path) -> None:
    """The grid a dequantized float output lives on: one step is what ARM and x86 integer
    kernels may legitimately differ by. Float models and int8-I/O models (the adapter
    dequantizes those, with the scale on the signature) have none."""
    from edgepack.devices.quant_steps import output_steps

    for name in ("tiny.int8.tflite", "tiny.int8.onnx"):
        (step,) = output_steps(tiny_build / name)
        assert step is not None and 0 < step < 0.05, (name, step)
    assert output_steps(tiny_build / "tiny.fp32.onnx") == [None]
    assert output_steps(tiny_build / "tiny.fp32.tflite") == [None]
    assert output_steps(models["int8"]) == [None]


@pytest.mark.device
@pytest.mark.slow
def test_the_speed_step_times_int8_op_kinds_on_the_board(boards: dict, inventory_env: Path,
                                                         tmp_path: Path) -> None:
    """`build --device`: the speed step times plain int8 and its float-kind trials on the
    board, not on the build host. The loopback board is given this host's runtimes (the same
    Python minor version, their site-packages on PYTHONPATH)."""
    runner = CliRunner()
    site = sysconfig.get_paths()["purelib"]
    _add(runner, "x", boards["loopback"], "--python", f"env PYTHONPATH={site} python3")
    src = hard_swish_source(tmp_path)
    out = tmp_path / "out"
    done = runner.invoke(cli, ["build", str(src), "-t", "raspberrypi",
                               "--calibration", str(tmp_path / "calibration.npz"),
                               "--eval", str(tmp_path / "eval.npz"), "-o", str(out),
                               "--runs", "5", "--device", "x"])
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    art = next(a for a in report["artifacts"]
               if a["role"] == "deliverable" and a["format"] == "tflite")
    speed = [n for n in art["notes"] if n.startswith("speed:")]
    assert any("timed in turns on board x)" in n for n in speed), speed
    # which kinds it keeps is the board's timing (tests/test_speed_kinds.py decides it on
    # this host): on a 2-vCPU VM, XNNPACK's two threads ran the HARD_SWISH-float file at
    # 0.06 ms in some rounds and 0.37 ms in others, so the choice went either way here
    kept = next((n for n in speed if n.startswith("speed: int8 ops kept in float")), None)
    if kept is not None:
        assert "HARD_SWISH x4" in kept and "because board x's ai-edge-litert" in kept, speed
        assert input_types(out / art["file"])["HARD_SWISH"] == {"float32"}
    else:
        assert any("plain int8 runs slower than fp32 on board x" in n for n in speed), speed


@pytest.mark.device
def test_the_speed_step_passes_an_emulated_board_over(boards: dict) -> None:
    """qemu's timings are not the board's: the step times on this host and says why."""
    from edgepack.pipeline.fallback_speed import _where

    setup = SimpleNamespace(board=_device(boards["emulated-pi"]), trust_new_host=False)
    board, where, notes = _where(setup)  # type: ignore[arg-type]
    assert board is None and "host" in where
    assert notes[0].startswith("speed: pi is emulated (") and "timed on this host" in notes[0]
    setup.board = _device(boards["loopback"], "x")
    board, where, notes = _where(setup)  # type: ignore[arg-type]
    assert board is setup.board and where["board"]["arch"] == os.uname().machine and not notes


@pytest.mark.device
def test_boards_up_brings_back_a_board_whose_sshd_died(boards: dict) -> None:
    """A board cut off with its machine's run keeps its pid file and its mounted /proc, which
    hides the board's CPU files (CI once failed `mkdir .../proc/device-tree` there): `up`
    clears what the dead board left and starts it again. Last in this file: it restarts the
    board the other tests use."""
    board = boards["emulated-pi"]
    pid = int(Path(board["sshd_pid_file"]).read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not _alive(board):
            break
        time.sleep(0.05)
    assert not _alive(board) and os.path.ismount(Path(board["rootfs"]) / "proc")
    env = {**os.environ, "EDGEPACK_BOARDS": str(BOARDS), "PYTHON": sys.executable}
    done = subprocess.run([str(REPO / "scripts" / "device" / "emulated_pi.sh"), "up"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "already running" not in done.stderr
    assert _alive(json.loads((BOARDS / "emulated-pi.json").read_text()))
