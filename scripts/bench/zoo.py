"""The model zoo through every target: ``edgepack build`` per (model, target), side by side.

Each model of the zoo (``scripts/zoo/fetch.sh``: real pretrained models, each in a folder with
its file, ``calib.npz``, ``eval.npz`` and ``meta.json``) is built for each target with the real
CLI, ``edgepack build MODEL --target T --calibration calib.npz --eval eval.npz --json``, in its
own process, timed for wall time and peak RSS (``os.wait4``'s rusage of that process and the
ones it waited for). Dynamic input dimensions are fixed from ``meta.json`` (``data_shape``, else
one row of the data) with ``--input-shape``; an input whose batch is not on axis 0 gets a
``<input>.batch_axis`` array in a copy of the data files. Every cell yields a row, failed ones
too: formats delivered (and those not, with the reason), exit code, each output's gating
fidelity measure against its budget, size against the fp32 file of the same format, p50
latency of int8 and fp32 in the same runtime, wall time and peak memory.

``--anchors`` adds, per ONNX-source model, the field's plain int8 on the same calibration rows
(``anchors.py``: ONNX Runtime ``quantize_static`` defaults, NNCF defaults on the OpenVINO
model), scored on ``eval.npz`` against the fp32 model by edgepack's own fidelity functions, next
to edgepack's int8 deliverables. Run from the repository root::

    python scripts/bench/zoo.py --zoo /work/zoo --models efficientnet-lite0 --targets intel-cpu
    python scripts/bench/zoo.py --anchors --json zoo.json     # every model, every target
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("raspberrypi", "intel-cpu", "android-gpu")


@dataclass
class Delivered:
    """One deliverable of a cell, with what its report measured."""

    format: str
    precision: str
    file: str
    size_ratio: float | None  # against the fp32 file of the same format
    p50_ms: float | None
    fp32_p50_ms: float | None  # the fp32 file of the same format, in the same runtime
    speedup: float | None
    passed: bool | None  # within its budget (None: no budget)
    #: per output: role, gating measure, value, limit, passed
    fidelity: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CellRow:
    """One (model, target) build: whatever happened, a row."""

    model: str
    target: str
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    status: str = ""  # the report's "passed"/"failed"; "no report" when none was written
    delivered: list[Delivered] = field(default_factory=list)
    not_delivered: list[dict[str, str]] = field(default_factory=list)  # format, precision, reason
    error: str = ""  # the last line the build printed when it exited non-zero
    command: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------- the zoo

def default_zoo() -> Path:
    return Path(os.environ.get("EDGEPACK_ZOO") or Path.home() / ".cache" / "edgepack" / "zoo")


def zoo_models(zoo: Path) -> list[Path]:
    """Every model folder of the zoo: a folder holding meta.json."""
    return sorted(p.parent for p in zoo.glob("*/meta.json"))


def ensure_zoo(zoo: Path, wanted: list[str] | None) -> None:
    """Build the zoo with the project's own recipe when ``zoo`` lacks the wanted models."""
    have = {p.name for p in zoo_models(zoo)} if zoo.is_dir() else set()
    if have and not set(wanted or ()) - have:
        return
    log(f"the zoo at {zoo} lacks models: bash scripts/zoo/fetch.sh {zoo}")
    subprocess.run(["bash", str(REPO / "scripts" / "zoo" / "fetch.sh"), str(zoo)], check=True)


def input_shapes(meta: dict[str, Any], eval_npz: Path) -> list[str]:
    """``--input-shape`` values (NAME:1x3x320x320) for inputs with dynamic dimensions: batch 1
    at the input's batch axis, the others from ``data_shape`` or one row of the eval data."""
    shapes = []
    with np.load(eval_npz, allow_pickle=False) as data:
        for spec in meta["inputs"]:
            dims, axis = spec.get("shape") or [], spec.get("batch_axis", 0)
            if all(isinstance(d, int) for d in dims) or axis is None:
                continue
            row = list(spec.get("data_shape") or data[spec["name"]].shape[1:])
            row.insert(axis, 1)
            shapes.append(f"{spec['name']}:" + "x".join(str(d) for d in row))
    return shapes


def data_files(folder: Path, meta: dict[str, Any], work: Path) -> tuple[Path, Path]:
    """calib.npz and eval.npz, or copies that declare ``<input>.batch_axis`` for inputs whose
    batch is not on axis 0 (meta.json says where)."""
    axes = {s["name"]: s["batch_axis"] for s in meta["inputs"]
            if s.get("batch_axis") not in (0, None)}
    if not axes:
        return folder / "calib.npz", folder / "eval.npz"
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for split in ("calib", "eval"):
        with np.load(folder / f"{split}.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        arrays.update({f"{k}.batch_axis": np.array(v) for k, v in axes.items()})
        np.savez(work / f"{split}.npz", **arrays)
        out.append(work / f"{split}.npz")
    return out[0], out[1]


# ------------------------------------------------------------------------------- one cell

def edgepack_command() -> list[str]:
    """The installed ``edgepack`` command beside this interpreter, else its entry point."""
    script = Path(sys.executable).with_name("edgepack")
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "import sys; from edgepack.cli import main; sys.exit(main())"]


def run_measured(cmd: list[str], log_file: Path, timeout: float) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS MB) of ``cmd`` run in its own process; peak RSS is
    the largest of that process and the processes it waited for (``os.wait4``)."""
    t0 = time.perf_counter()
    with log_file.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, cwd=REPO)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024  # Linux: KiB


def build_cell(folder: Path, target: str, out_root: Path, args: argparse.Namespace) -> CellRow:
    """``edgepack build`` of one zoo model for one target, and its row."""
    meta = json.loads((folder / "meta.json").read_text())
    out = out_root / f"{folder.name}-{target}"
    if out.exists():
        shutil.rmtree(out)
    calib, ev = data_files(folder, meta, out_root / f"{folder.name}-data")
    cmd = [*edgepack_command(), "build", str(folder / meta["model"]), "--target", target,
           "--calibration", str(calib), "--eval", str(ev), "--output", str(out), "--json",
           "--runs", str(args.runs), "--warmup", str(args.warmup)]
    cmd += [a for s in input_shapes(meta, folder / "eval.npz") for a in ("--input-shape", s)]
    cmd += [] if args.cache else ["--no-cache"]
    log_file = out_root / f"{folder.name}-{target}.log"
    code, wall, rss = run_measured(cmd, log_file, args.timeout)
    row = CellRow(folder.name, target, code, round(wall, 2), round(rss, 1), command=cmd)
    report = out / "report.json"
    if report.is_file():
        summarize(row, json.loads(report.read_text()))
    else:
        row.status = "no report"
    if code:
        lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        row.error = lines[-1].strip() if lines else f"exit {code}"
    log(f"{folder.name} / {target}: exit {code} in {wall:.1f} s, peak RSS {rss:.0f} MB")
    return row


def summarize(row: CellRow, report: dict[str, Any]) -> None:
    """Fill ``row`` from a build's report.json."""
    row.status = report.get("status", "")
    source = report["model"]["path"] + ": "  # the reasons' prefix: the one model built
    row.not_delivered = [{"format": s["format"], "precision": s["precision"],
                          "reason": s["reason"].removeprefix(source)}
                         for s in report.get("skipped", [])]
    arts = report["artifacts"]
    for a in (a for a in arts if a["role"] == "deliverable"):
        ref = next((r for r in arts if r["role"] == "reference" and r["format"] == a["format"]),
                   None)
        p50 = (a.get("latency") or {}).get("p50_ms")
        ref_p50 = ((ref or {}).get("latency") or {}).get("p50_ms")
        budget = a.get("budget")
        row.delivered.append(Delivered(
            a["format"], a["precision"], a["file"],
            round(a["size_bytes"] / ref["size_bytes"], 4) if ref else None,
            p50, ref_p50, round(ref_p50 / p50, 3) if p50 and ref_p50 else None,
            budget["passed"] if budget else None, gating(a)))


def gating(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    """Per output, the budget's gating measure (value vs limit); without a budget, cosine."""
    budget = artifact.get("budget")
    if not budget:
        return [{"output": f["name"], "role": f["role"], "measure": "cosine",
                 "value": f["cosine"], "limit": None, "passed": None}
                for f in artifact.get("fidelity", [])]
    out = []
    for o in budget.get("outputs", []):
        checks = [c for c in o["checks"] if c.get("gating")] or o["checks"]
        worst = min(checks, key=lambda c: (c["passed"], margin(c)), default=None)
        if worst is not None:
            out.append({"output": o["output"], "role": o["role"], "measure": worst["name"],
                        "value": worst["value"], "limit": worst["limit"],
                        "passed": worst["passed"]})
    return out


def margin(check: dict[str, Any]) -> float:
    value, limit = check.get("value"), check.get("limit")
    if value is None or limit is None:
        return 0.0
    return value - limit if check.get("at_least", True) else limit - value


# ------------------------------------------------------------------------------- output

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


#: the format column: room for "openvino dynamic-int8"
FORMAT_WIDTH = 21


def cell_lines(row: CellRow) -> list[str]:
    """The table lines of one cell: one per deliverable, one per format not delivered."""
    head = f"{row.model:30s} {row.target:12s} {row.exit_code:4d} {row.wall_s:7.1f} " \
           f"{row.peak_rss_mb:7.0f}"
    pad = " " * len(head)
    lines = []
    for d in row.delivered:
        fid = "; ".join(f"{f['output']} {f['measure']} {fmt(f['value'], '.4f')}"
                        + (f" vs {f['limit']:.4g}" if f["limit"] is not None else "")
                        + ("" if f["passed"] is not False else " FAIL") for f in d.fidelity)
        lines.append(f"{pad if lines else head}  {d.format + ' ' + d.precision:{FORMAT_WIDTH}s} "
                     f"{fmt(d.size_ratio, '6.3f')} {fmt(d.p50_ms, '8.2f')} "
                     f"{fmt(d.fp32_p50_ms, '8.2f')} {fmt(d.speedup, '5.2f')}x  {fid}")
    for s in row.not_delivered:
        what = f"{s['format']} {s['precision']}"
        lines.append(f"{pad if lines else head}  {what:{FORMAT_WIDTH}s} "
                     f"not delivered: {s['reason'][:160]}")
    if row.error:
        lines.append(f"{pad if lines else head}  error: {row.error[:200]}")
    return lines or [head]


def print_table(rows: list[CellRow]) -> None:
    print(f"{'model':30s} {'target':12s} {'exit':>4s} {'wall s':>7s} {'RSS MB':>7s}  "
          f"{'format':{FORMAT_WIDTH}s} {'size':>6s} {'p50 ms':>8s} {'fp32 ms':>8s} {'speed':>6s}  "
          "fidelity per output (gating measure vs budget)")
    for row in rows:
        print("\n".join(cell_lines(row)))


def print_anchors(models: list[dict[str, Any]]) -> None:
    """One line per file of ``--anchors``: each output's fidelity, size and speed-up."""
    print(f"\n{'model':30s} {'format':9s} {'file':30s} {'size':>6s} {'speed':>6s}  "
          "fidelity per output vs fp32 on eval.npz")
    for m in models:
        if m.get("error"):
            print(f"{m['model']:30s} error: {m['error'][:200]}")
        for r in m["rows"]:
            head = f"{m['model']:30s} {r['format']:9s} {r['name'][:30]:30s}"
            if "error" in r:
                print(f"{head} error: {r['error'][:200]}")
                continue
            kept = f" ({r['speedup_kept']:.0%} of plain)" if "speedup_kept" in r else ""
            print(f"{head} {fmt(r['size_ratio'], '6.3f')} {fmt(r['speedup'], '5.2f')}x  "
                  + "; ".join(reading(o) for o in r["outputs"]) + kept)
        for note in m.get("notes", []):
            print(f"{'':30s} {note}")


def reading(out: dict[str, Any]) -> str:
    """An output's fidelity in a few characters: top-1 agreement [95% interval] for a
    classifier, else cosine and SNR, then the role's other readings (a detector's detections
    kept and extra, a map's IoU, an embedding's neighbour agreement)."""
    if out.get("mismatch"):
        return f"{out['output']} {out['mismatch']}"
    if "top1_agreement" in out:
        lo, hi = out["top1_interval"]
        return f"{out['output']} top-1 {out['top1_agreement']:.3f} [{lo:.3f}, {hi:.3f}]"
    more = "".join(f", {k} {v:.3f}" for k, v in (out.get("readings") or {}).items()
                   if isinstance(v, float))
    return (f"{out['output']} ({out['role']}) cosine {fmt(out['cosine'], '.4f')} "
            f"SNR {fmt(out['snr_db'], '.1f')} dB{more}")


# ------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", type=Path, default=default_zoo(),
                   help="zoo folder (default $EDGEPACK_ZOO or ~/.cache/edgepack/zoo); "
                        "built with scripts/zoo/fetch.sh when it lacks the models")
    p.add_argument("--models", nargs="+", help="model folders to build (default: all)")
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--out", type=Path,
                   default=Path(os.environ.get("TMPDIR", "/tmp")) / "edgepack-bench-zoo",
                   help="build folders and logs")
    p.add_argument("--json", type=Path, help="write every row here")
    p.add_argument("--jobs", type=int, default=1, help="builds at once (each its own process)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per latency")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per build")
    p.add_argument("--cache", action="store_true",
                   help="let builds reuse edgepack's step cache (wall times are then not cold)")
    p.add_argument("--anchors", action="store_true",
                   help="also ORT quantize_static and NNCF defaults on ONNX-source models")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_zoo(args.zoo, args.models)
    folders = [f for f in zoo_models(args.zoo) if not args.models or f.name in args.models]
    missing = sorted(set(args.models or ()) - {f.name for f in folders})
    if missing:
        sys.exit(f"no such model in {args.zoo}: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    cells = [(f, t) for f in folders for t in args.targets]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda c: build_cell(c[0], c[1], args.out, args), cells))
    print_table(rows)
    result: dict[str, Any] = {"zoo": str(args.zoo), "targets": args.targets,
                              "cells": [asdict(r) for r in rows]}
    if args.anchors:
        import anchors  # beside this script

        evals = {f.name: data_files(f, json.loads((f / "meta.json").read_text()),
                                    args.out / f"{f.name}-data")[1] for f in folders}
        result["anchors"] = anchors.zoo_anchors(folders, rows, args.out / "anchors", evals,
                                                runs=args.runs, warmup=args.warmup)
        print_anchors(result["anchors"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
