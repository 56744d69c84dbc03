"""Fuzzing helpers: byte mutations (hypothesis strategies), the crash-proof worker client, and
the tally the conftest prints at the end of the run ("fuzz inspect/tflite: 120 cases, 0
failures").

A case is a FAILURE when edgepack, fed a mutated file:
* raises anything but an EdgepackError (a traceback, or the CLI's exit 1 "internal error"),
* crashes natively (the worker process dies: segfault, abort),
* runs past its time bound (a hang),
* or leaves output behind (an output folder or file, a hidden staging folder).
Exit 0 is fine (a mutation that leaves a file valid, e.g. a flipped weight byte).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
TARGETS_DIR = HERE / "targets"
#: cases scale with EDGEPACK_FUZZ_SCALE (scripts/fuzz.sh sets it for long sessions)
SCALE = float(os.environ.get("EDGEPACK_FUZZ_SCALE", "1"))


def cases(n: int) -> int:
    return max(1, int(n * SCALE))


# ---------------------------------------------------------------------------------- the tally

@dataclass
class Tally:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    exits: dict[int, int] = field(default_factory=dict)


TALLY: dict[str, Tally] = {}


def tally(name: str) -> Tally:
    return TALLY.setdefault(name, Tally())


def summary_lines() -> list[str]:
    lines = []
    for name, t in TALLY.items():
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(t.exits.items(), key=lambda kv: str(kv)))
        lines.append(f"fuzz {name}: {t.cases} cases, {len(t.failures)} failures"
                     + (f" (outcomes {codes})" if codes else ""))
    total = sum(t.cases for t in TALLY.values())
    failed = sum(len(t.failures) for t in TALLY.values())
    if TALLY:
        lines.append(f"fuzz total: {total} cases, {failed} failures")
    return lines


# ------------------------------------------------------------------------------- mutations

def _truncate(data: bytes, at: int) -> bytes:
    return data[: at % max(1, len(data))]


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in flips:
        b[pos % len(b)] ^= val or 0xFF
    return bytes(b)


def _magic(data: bytes, head: bytes) -> bytes:
    return head + data[len(head):]


def _huge(data: bytes, pos: int, value: int) -> bytes:
    """A 32-bit little-endian size/offset/count field somewhere made huge (or negative)."""
    b = bytearray(data)
    pos = (pos % max(1, len(b) - 4)) & ~3
    b[pos:pos + 4] = struct.pack("<I", value)
    return bytes(b)


def _splice(data: bytes, at: int, chunk: bytes, cut: int) -> bytes:
    at %= max(1, len(data))
    return data[:at] + chunk + data[at + cut:]


HUGE = st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000000, 0xFFFFFFF0, 65535])


def mutations(data: bytes) -> st.SearchStrategy[tuple[str, bytes]]:
    """(what was done, the mutated bytes): truncation, byte flips, wrong magic, a huge
    size/offset field, a spliced chunk."""
    pos = st.integers(0, max(0, len(data) - 1))
    return st.one_of(
        pos.map(lambda at: (f"truncate@{at}", _truncate(data, at))),
        st.lists(st.tuples(pos, st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda fl: (f"flip{fl}", _flip(data, fl))),
        st.binary(min_size=4, max_size=8).map(lambda h: (f"magic{h!r}", _magic(data, h))),
        st.tuples(pos, HUGE).map(lambda pv: (f"huge@{pv[0]}={pv[1]:#x}", _huge(data, *pv))),
        st.tuples(pos, st.binary(max_size=64), st.integers(0, 64)).map(
            lambda s: (f"splice@{s[0]}+{len(s[1])}-{s[2]}", _splice(data, *s))),
    )


# ---------------------------------------------------------------------------------- the worker

class Worker:
    """A fuzz_worker.py process; restarted after a crash or a hang."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "fuzz_worker.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env,
                                     start_new_session=True)
        return self.proc

    def run(self, argv: Sequence[str], cwd: Path, bound_s: float) -> dict:
        proc = self.proc if self.proc and self.proc.poll() is None else self._start()
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps({"argv": list(argv), "cwd": str(cwd),
                                     "bound_s": bound_s}) + "\n")
        proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        # first import of TensorFlow/torch in a fresh worker takes a while: not the case's time
        ready = sel.select(timeout=bound_s + 60)
        sel.close()
        line = proc.stdout.readline() if ready else ""
        if line:
            return json.loads(line)
        if proc.poll() is None:  # stuck in native code where SIGALRM cannot reach it
            self.stop()
            return {"exit_code": None, "output": "", "exception": None, "hang": True}
        code = proc.wait()
        self.proc = None
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        return {"exit_code": None, "output": "", "exception": f"worker crashed: {how}",
                "crashed": True, "hang": False}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def check_case(worker: Worker, name: str, what: str, argv: Sequence[str], cwd: Path,
               watch: Path, keep: set[str], bound_s: float = 20) -> dict:
    """Run one case, judge it (see the module doc), record it in the tally; clean ``watch``."""
    t = tally(name)
    answer = worker.run(argv, cwd, bound_s)
    t.cases += 1
    code = answer["exit_code"]
    t.exits[code if code is not None else "crash/hang"] = \
        t.exits.get(code if code is not None else "crash/hang", 0) + 1
    problems = []
    if answer.get("hang"):
        problems.append(f"hang past {bound_s} s")
        worker.stop()  # its state after an interrupted case is not to be trusted
    if answer.get("exception"):
        problems.append(answer["exception"].strip().splitlines()[-1])
    if code == 1:
        problems.append("exit 1 (internal error): " + answer["output"].strip()[-300:])
    if "Traceback (most recent call last)" in answer["output"]:
        problems.append("traceback on the output")
    left = leftovers(watch, keep)
    if code not in (0, None) and left:
        problems.append(f"left behind: {left}")
    if problems:
        t.failures.append(f"{what}: {' | '.join(problems)}")
    for extra in left:  # start the next case from a clean folder
        p = watch / extra
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return answer
