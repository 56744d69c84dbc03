"""Structural compression on the bundled digits example: size, parameters, accuracy, latency per
stage, for several recipes, and the int8 TFLite each recipe ends in.

The evidence for issue #8. Every recipe starts from ``examples/digits/model.keras`` (72k
parameters, 98.06% on the 360 held-out digits) and runs edgepack's own passes
(``edgepack.structural.passes.run_passes``) with the calibration data as the unlabelled
distillation set (200 images; 40 held out for early stopping), never the eval data. Accuracy
and top-1 agreement are on the 360 eval digits against the ORIGINAL model; latency is the
Keras model's p50 (batch 1, 2 threads, own process), then the full ``edgepack build`` for
raspberrypi (int8-arm) gives the shipped int8 TFLite's size, accuracy and p50 (LiteRT).

Run from the repository root (about 4 minutes on 2 cores)::

    .venv/bin/python scripts/bench/structural.py [--runs 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import edgepack
import numpy as np
from edgepack.data import Dataset
from edgepack.pipeline import Progress
from edgepack.report import fmt_bytes, fmt_pct
from edgepack.runtimes import get_runtime
from edgepack.structural.passes import run_passes
from edgepack.structural.settings import merge
from edgepack.structural.stages import Evaluation
from edgepack.validate import accuracy as acc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"

#: recipe name -> build()/merge() keyword arguments
RECIPES: dict[str, dict[str, object]] = {
    "unstructured 0.5": {"prune": 0.5},
    "structured 0.5 + distill": {"prune": 0.5, "structured": True, "distill": True},
    "structured 0.75 + distill": {"prune": 0.75, "structured": True, "distill": True},
    "lowrank 0.9 + distill": {"lowrank": 0.9, "distill": True},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs per latency")
    args = parser.parse_args()
    model = EXAMPLE / "model.keras"
    e, c = np.load(EXAMPLE / "eval.npz"), np.load(EXAMPLE / "calibration.npz")
    evals = Dataset("eval.npz", {"image": e["image"]}, e["y"])
    train = Dataset("calibration.npz", {"image": c["image"]})
    session = get_runtime("keras").load(str(model))
    ev = Evaluation(evals, list(session.run(evals.inputs).values()), session.signature,
                    lambda outs, d: acc.classification(outs[0], d.labels), threads=2,
                    runs=args.runs)
    print("| recipe | stage | params | non-zero | .keras size | top1_agree | top1_acc | "
          "keras p50_ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, flags in RECIPES.items():
        with tempfile.TemporaryDirectory() as work:
            _, stages = run_passes(model, "keras", merge(None, **flags), ev, Path(work),
                                   Progress(), train)
        for s in stages:
            print(f"| {name} | {s.stage} | {s.parameters:,} | {s.nonzero_parameters:,} | "
                  f"{fmt_bytes(s.size_bytes)} | {fmt_pct(s.top1_agreement)} | "
                  f"{fmt_pct(s.top1_accuracy)} | {s.p50_ms:.3f} |")
    print("\n| recipe | int8 .tflite | top1_acc | top1_agree | LiteRT p50_ms | budget |")
    print("|---|---|---|---|---|---|")
    for name, flags in {"none": {}, **RECIPES}.items():
        with tempfile.TemporaryDirectory() as out:
            report = edgepack.build(EXAMPLE, "raspberrypi", output=Path(out) / "b",
                                    runs=args.runs, **flags)  # type: ignore[arg-type]
        a = next(a for a in report.deliverables if a.format == "tflite")
        print(f"| {name} | {fmt_bytes(a.size_bytes)} | {fmt_pct(a.accuracy.top1)} | "
              f"{fmt_pct(a.fidelity[0].top1_agreement)} | {a.latency.p50_ms:.3f} | "
              f"{'pass' if a.budget.passed else 'FAIL'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
