"""Fault injection: kill -9 during a build, a full disk, SSH devices that drop, hang or answer
garbage, and the time/memory caps. Counts go to the terminal summary like the fuzz cases."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from edgepack import staging
from edgepack.cli import cli
from fuzzlib import TARGETS_DIR, tally

REPO = Path(__file__).resolve().parents[2]
EDGEPACK = Path(sys.executable).parent / "edgepack"
T = ["--targets-dir", str(TARGETS_DIR)]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    import model_files

    return model_files.onnx_cnn(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _build_argv(model: Path, out: Path) -> list[str]:
    return [*T, "build", str(model), "--target", "fuzz-onnx", "-o", str(out), "--runs", "2",
            "--warmup", "0", "--force"]


def _state(out: Path, reference: set[str]) -> str:
    """'previous', 'new', 'absent' or 'PARTIAL: ...' for an output folder."""
    if not out.exists():
        return "absent"
    names = {str(p.relative_to(out)) for p in out.rglob("*")}
    if "PREVIOUS" in names:
        return "previous" if names == reference | {"PREVIOUS"} else f"PARTIAL previous {names}"
    if names == reference:
        json.loads((out / "report.json").read_text())  # complete, parseable
        return "new"
    return f"PARTIAL: missing {sorted(reference - names)}, extra {sorted(names - reference)}"


# ------------------------------------------------------------------------------ kill -9

@pytest.mark.slow
def test_kill_9_leaves_previous_or_new_build_never_partial(tiny_onnx: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "b"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    done = subprocess.run([str(EDGEPACK), *_build_argv(tiny_onnx, out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    duration = time.monotonic() - start
    reference = {str(p.relative_to(out)) for p in out.rglob("*")}
    rng = random.Random(9)
    seen: dict[str, int] = {}
    t = tally("faults/kill-9 build")
    for _ in range(int(os.environ.get("EDGEPACK_KILL_CASES", "10"))):
        (out / "PREVIOUS").write_text("the previous complete build")
        proc = subprocess.Popen([str(EDGEPACK), *_build_argv(tiny_onnx, out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3 * duration, 1.1 * duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = _state(out, reference)
        seen[state] = seen.get(state, 0) + 1
        t.exits[state.split(":")[0]] = t.exits.get(state.split(":")[0], 0) + 1
        t.cases += 1
        if state.startswith("PARTIAL") or state == "absent":
            t.failures.append(state)
        if state == "absent":
            break
    assert not t.failures, (t.failures, seen)
    # the killed runs' hidden folders are the next build's to remove (staging.py's policy)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.")]
    done = subprocess.run([str(EDGEPACK), *_build_argv(tiny_onnx, out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _state(out, reference) == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["b"], (leftovers, seen)


def test_stale_staging_of_dead_pids_is_removed_and_old_build_restored(tmp_path: Path) -> None:
    """The policy itself: a dead pid's .NAME.tmp-* is removed, its .NAME.old-* is put back
    when NAME is missing (a kill between the fallback's two renames); a live pid's stays."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    out = tmp_path / "b"
    (tmp_path / f".b.tmp-{dead}-abc").mkdir()
    (tmp_path / f".b.old-{dead}").mkdir()
    (tmp_path / f".b.old-{dead}" / "report.json").write_text("{}")
    live = tmp_path / f".b.tmp-{os.getpid()}-xyz"
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}-q"
    other.mkdir()
    staging.clean_stale(out)
    assert (out / "report.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", live.name, other.name])


def test_publish_swaps_atomically(tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "old").write_text("1")
    new = staging.staging_dir(out)
    (new / "new").write_text("2")
    staging.publish(new, out)
    assert [p.name for p in out.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


# ------------------------------------------------------------------------------ disk full

@pytest.fixture
def full_disk(tmp_path: Path):
    """A 2 MB tmpfs, filled up to its last 8 KB (root only; unmounted afterwards)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny-fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        with (mnt / "filler").open("wb") as fh:
            try:
                fh.write(b"\0" * (2 * 2**20 - 8 * 1024))
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_fails_cleanly(tiny_onnx: Path, full_disk: Path) -> None:
    t = tally("faults/disk-full")
    runner = CliRunner()
    for argv in (_build_argv(tiny_onnx, full_disk / "b"),
                 ["convert", str(tiny_onnx), "--to", "openvino", "-o", str(full_disk / "m.xml")]):
        done = runner.invoke(cli, argv)
        t.cases += 1
        ok = (done.exit_code == 7 and str(full_disk) in done.output
              and "No space left" in done.output and "Traceback" not in done.output
              and sorted(p.name for p in full_disk.iterdir()) == ["filler"])
        if not ok:
            t.failures.append(f"{argv[2 if argv[0] == '--targets-dir' else 0]}: exit "
                              f"{done.exit_code}: {done.output.strip()[-300:]}; left "
                              f"{sorted(p.name for p in full_disk.iterdir())}")
    assert not t.failures, t.failures


# ------------------------------------------------------------------------------ SSH faults

class FakeDevice:
    """A TCP server on loopback that is not a working sshd: garbage, hang, or drop."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                self._answer(conn)
            except OSError:
                pass

    def _answer(self, conn: socket.socket) -> None:
        """What this fake says to one connection (by ``mode``)."""
        rng = random.Random(self.port)
        if self.mode == "garbage":
            conn.sendall(bytes(rng.randrange(256) for _ in range(4096)))
        elif self.mode == "banner-then-garbage":
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
            conn.sendall(bytes(rng.randrange(256) for _ in range(4096)))
        elif self.mode == "http":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()
        elif self.mode == "drop":
            conn.close()
        # "hang": accept, say nothing, keep it open

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def device_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import paramiko

    monkeypatch.setenv("EDGEPACK_DEVICES", str(tmp_path / "devices.yaml"))
    monkeypatch.setenv("EDGEPACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "id_ed25519"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(key))
    return key


@pytest.mark.parametrize("mode", ["garbage", "banner-then-garbage", "http", "drop", "hang"])
def test_ssh_device_that_misbehaves_is_timed_out_and_reported(mode: str, device_env: Path,
                                                              tiny_onnx: Path) -> None:
    fake = FakeDevice(mode)
    t = tally("faults/ssh device")
    try:
        runner = CliRunner()
        added = runner.invoke(cli, ["devices", "add", "fake", f"ssh://pi@127.0.0.1:{fake.port}",
                                    "--key", str(device_env), "--target", "x86-host"])
        assert added.exit_code == 0, added.output
        for argv in (["devices", "check", "fake", "--timeout", "3"],
                     ["bench", str(tiny_onnx), "--device", "fake", "--timeout", "3"]):
            start = time.monotonic()
            done = runner.invoke(cli, argv)
            took = time.monotonic() - start
            t.cases += 1
            if not (done.exit_code == 4 and "fake" in done.output and took < 30
                    and "Traceback" not in done.output):
                t.failures.append(f"{mode} {argv[0]}: exit {done.exit_code} after {took:.1f} s:"
                                  f" {done.output.strip()[-300:]}")
    finally:
        fake.close()
    assert not [f for f in t.failures if f.startswith(f"{mode} ")], t.failures


class GreedyBoard(FakeDevice):
    """A real SSH server (paramiko, on loopback) that logs anyone in, then misbehaves: every
    SFTP open is left unanswered, and any command sends stdout without end."""

    def __init__(self) -> None:
        import paramiko

        self.host_key = paramiko.ECDSAKey.generate()
        super().__init__("greedy")

    def _answer(self, conn: socket.socket) -> None:
        import paramiko

        board = self

        class Server(paramiko.ServerInterface):
            def get_allowed_auths(self, username: str) -> str:
                return "publickey"

            def check_auth_publickey(self, username: str, key: object) -> int:
                return paramiko.AUTH_SUCCESSFUL

            def check_channel_request(self, kind: str, chanid: int) -> int:
                return paramiko.OPEN_SUCCEEDED

            def check_channel_exec_request(self, channel: paramiko.Channel,
                                           command: bytes) -> bool:
                threading.Thread(target=board._flood, args=(channel,), daemon=True).start()
                return True

        class Silent(paramiko.SFTPServerInterface):
            def open(self, path: str, flags: int, attr: object) -> int:
                board.stop.wait(120)  # never answers within any test's deadline
                return paramiko.sftp.SFTP_FAILURE

        transport = paramiko.Transport(conn)
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, Silent)
        transport.start_server(server=Server())

    def _flood(self, channel: object) -> None:
        chunk = b"x" * (1 << 16)
        try:
            while not self.stop.is_set():
                channel.sendall(chunk)  # type: ignore[attr-defined]
        except (OSError, EOFError):
            pass


def test_a_board_that_stalls_an_upload_or_floods_output_is_stopped(device_env: Path,
                                                                   tmp_path: Path) -> None:
    """SFTP uploads have a deadline; a command's stdout is capped instead of filling this
    machine's memory."""
    from edgepack.devices.inventory import Device, DeviceSpec
    from edgepack.devices.ssh import CommandTimeout, connect
    from edgepack.errors import DeviceError

    board = GreedyBoard()
    t = tally("faults/ssh device")
    local = tmp_path / "model.tflite"
    local.write_bytes(b"TFL3" * 1000)
    device = Device("greedy", DeviceSpec(url=f"ssh://pi@127.0.0.1:{board.port}",
                                         key=str(device_env),
                                         known_hosts=str(tmp_path / "known_hosts")), tmp_path)
    try:
        with connect(device, trust_new_host=True, timeout=10) as conn:
            for what, action, error in (
                    ("stalled upload", lambda: conn.put(local, "/tmp/x", timeout=2),
                     CommandTimeout),
                    ("flooding command", lambda: conn.run("flood", timeout=30,
                                                          max_stdout=1 << 20), DeviceError)):
                t.cases += 1
                start = time.monotonic()
                try:
                    action()
                    t.failures.append(f"{what}: no error")
                except error as exc:
                    took = time.monotonic() - start
                    if took > 15 or "greedy" not in str(exc):
                        t.failures.append(f"{what}: after {took:.1f} s: {exc}")
    finally:
        board.close()
    assert not [f for f in t.failures if f.startswith(("stalled", "flooding"))], t.failures


# ------------------------------------------------------------------------------ convert

def test_an_interrupted_convert_never_leaves_a_model_beside_other_weights(
        tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`convert --force` over an earlier OpenVINO IR, stopped after its first file is in
    place: the .xml and .bin left are the old pair, the new pair, or no .xml at all."""
    import hashlib

    import onnx
    from edgepack.pipeline import convert_file
    from onnx import numpy_helper

    model = onnx.load(tiny_onnx)
    weight = model.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 2, weight.name))
    other = tmp_path / "other.onnx"
    onnx.save(model, other)

    def pair(xml: Path) -> tuple[str, str] | None:
        if not xml.exists():
            return None
        return tuple(hashlib.sha256(p.read_bytes()).hexdigest()  # type: ignore[return-value]
                     for p in (xml, xml.with_suffix(".bin")))

    runner = CliRunner()
    for src, dest in ((tiny_onnx, "old.xml"), (other, "new.xml"), (tiny_onnx, "m.xml")):
        done = runner.invoke(cli, ["convert", str(src), "--to", "openvino", "-o",
                                   str(tmp_path / dest)])
        assert done.exit_code == 0, done.output
    old, new = pair(tmp_path / "old.xml"), pair(tmp_path / "new.xml")
    real_place, placed = convert_file._place, []

    def place_then_fail(produced: Path, out: Path) -> Path:
        if placed:
            raise OSError(28, "No space left on device")
        placed.append(produced)
        return real_place(produced, out)

    monkeypatch.setattr(convert_file, "_place", place_then_fail)
    t = tally("faults/convert interrupted")
    t.cases += 1
    done = runner.invoke(cli, ["convert", str(other), "--to", "openvino", "-o",
                               str(tmp_path / "m.xml"), "--force"])
    left = pair(tmp_path / "m.xml")
    if done.exit_code != 7 or left not in (None, old, new):
        t.failures.append(f"exit {done.exit_code}; left a model beside other weights: {left}")
    assert not t.failures, t.failures


# ---------------------------------------------------------------- a runtime that aborts

def test_a_file_litert_aborts_on_fails_with_one_line_and_no_output(tmp_path: Path) -> None:
    """LiteRT calls abort() on a file with an absurd int8 scale: the build, in its own process
    here so that a regression shows as a dead process, not a dead test run, loads it in a
    child first and stops with a model error naming the file, nothing left behind."""
    sys.path.insert(0, str(REPO / "tests"))
    from hostile_files import aborting_tflite

    model = aborting_tflite(tmp_path)
    out = tmp_path / "b"
    done = subprocess.run([str(EDGEPACK), *T, "build", str(model), "--target", "fuzz-tflite",
                           "-o", str(out), "--runs", "2", "--warmup", "0"],
                          capture_output=True, text=True, timeout=600, check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 5, said
    assert "aborted (SIGABRT)" in said and str(model.name) in said, said
    assert "Traceback" not in said and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aborts.tflite"]


def test_the_child_probe_passes_a_good_file_and_names_the_signal_of_a_bad_one(
        tmp_path: Path) -> None:
    from edgepack.compress import tflite_graph as graph
    from edgepack.errors import ModelError
    from edgepack.runtimes import child_probe, get_runtime

    sys.path.insert(0, str(REPO / "tests"))
    from hostile_files import aborting_tflite

    bad = aborting_tflite(tmp_path)
    good = tmp_path / "good.tflite"
    flat = graph.read(bad.read_bytes())
    add = next(op for op in flat.subgraphs[0].operators if graph.op_code(flat, op) == 0)
    ref = flat.subgraphs[0].tensors[add.inputs[1]].quantization.scale
    flat.subgraphs[0].tensors[add.inputs[0]].quantization.scale = ref  # a sane scale again
    good.write_bytes(graph.write(flat))
    litert = get_runtime("litert")
    assert litert.aborts_on_bad_files
    session = child_probe.load(litert, good)
    assert session.run({"x": np.ones((1, 8), np.float32)})
    with pytest.raises(ModelError, match=r"litert aborted \(SIGABRT\) loading the model"):
        child_probe.load(litert, bad)


# ------------------------------------------------------------------------------ caps

def test_time_cap_stops_the_build_cleanly(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    done = CliRunner().invoke(cli, ["--max-seconds", "0.5", *_build_argv(tiny_onnx, out)[:-1],
                                    "--runs", "100000"])
    assert done.exit_code == 13, done.output
    assert "time limit of 0.5 s reached" in done.output and "during:" in done.output
    assert list(tmp_path.iterdir()) == []


def test_the_time_cap_interrupts_once_and_leaves_the_cleanup_alone() -> None:
    """The watchdog looks every 0.2 s here: after its one interruption, a cleanup that takes
    longer (removing a staging folder, waiting for a child) runs to its end, and the next step
    boundary raises again where the interruption was swallowed."""
    from edgepack import limits
    from edgepack.errors import ResourceLimitError

    cleaned = []
    with pytest.raises(ResourceLimitError, match="time limit of 0.2 s"):
        with limits.applied(max_seconds=0.2):
            try:
                while True:
                    time.sleep(0.01)
            finally:
                time.sleep(1.0)
                cleaned.append("done")
    assert cleaned == ["done"]
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    with limits.applied(max_seconds=0.2):
        with pytest.raises(ResourceLimitError):  # swallowed, as a weakref callback would
            while True:
                time.sleep(0.01)
        with pytest.raises(ResourceLimitError, match="during: writing the report"):
            limits.check("writing the report")


#: a process whose main thread's alternate signal stack was freed by the library that set it,
#: as a native library left it in the suite's worker: any signal handler run there faults
DANGLING_ALTSTACK = """
import ctypes, sys, time
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
class Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]
size = 1 << 16
sp = libc.mmap(None, size, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
assert libc.sigaltstack(ctypes.byref(Stack(sp, 0, size)), None) == 0
libc.munmap(sp, size)
from edgepack import limits
from edgepack.errors import ResourceLimitError
try:
    with limits.applied(max_seconds=0.3):
        time.sleep(5)
except ResourceLimitError as exc:
    print("capped:", exc)
"""


def test_the_time_cap_sends_no_signal_a_dangling_signal_stack_would_fault_on() -> None:
    done = subprocess.run([sys.executable, "-c", DANGLING_ALTSTACK], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert "capped: time limit of 0.3 s reached" in done.stdout


def test_the_caps_stop_a_command_while_it_waits_for_a_child(tmp_path: Path) -> None:
    """``run_child`` waits in slices: the cap is reached while the child sleeps, and the child
    is killed with the command, not left running. (A plain ``subprocess.run`` blocks in
    select() on the child's pipes, which the watchdog's interruption does not break: the
    command would go on until the child's own 20 s timeout.)"""
    from edgepack import limits
    from edgepack.errors import ResourceLimitError

    pid_file = tmp_path / "pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); " \
            "time.sleep(60)"
    start = time.monotonic()
    with pytest.raises(ResourceLimitError, match="time limit of 0.5 s"):
        with limits.applied(max_seconds=0.5):
            limits.run_child([sys.executable, "-c", child], timeout=20)
    assert time.monotonic() - start < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_memory_cap_stops_the_build_cleanly(tiny_onnx: Path, tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["--max-memory-mb", "10", *_build_argv(tiny_onnx,
                                                                          tmp_path / "b")])
    assert done.exit_code == 13, done.output
    assert "memory limit of 10 MB exceeded" in done.output
    assert list(tmp_path.iterdir()) == []


def test_declared_shape_beyond_the_cap_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "big", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096, 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096, 4096])])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    done = CliRunner().invoke(cli, ["--max-memory-mb", "32", "bench", str(path), "--runs", "1"])
    assert done.exit_code == 5, done.output
    assert "needs 64 MB, more than the 32 MB allowed" in done.output
