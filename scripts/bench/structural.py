"""Structural compression on Fashion-MNIST: the evidence table for issue #8, measured in one run.

Two models, both trained here in Keras, seeded (``keras.utils.set_random_seed(0)`` and TF op
determinism), on the real 60,000 training images, and evaluated on the real 10,000 test images:

- cnn: Conv(32)-pool-Conv(64)-pool-Dense(128)-Dense(10), 225k parameters;
- mlp: 784-128-10, 101.8k parameters (its 784-64-10 counterpart is the half-width student).

Every compressed row is an ordinary ``edgepack.build(model, "raspberrypi", ...)`` with the
structural flags a user would pass, giving an int8 TFLite deliverable and its fp32 TFLite
reference (the pruned / factorized / distilled source converted without quantization). Each
recipe's profile is int8-arm (same quantization) with the recipe's ``structural`` section and
without a budget: so every int8 row is plain full-int8, none changed by the accuracy fallback
keeping layers in float, and the "int8-arm budget" column says whether the row would pass
int8-arm's budget (1 point of top-1, 97% agreement and 0.99 cosine with the ORIGINAL model). The
distillation data is 20,000 labelled training images (disjoint from the test set; 20% of them
held out for early stopping); calibration is 300 other training images. For the MLP,
"structured 50%" (the head skipped: it is the output) and the width-0.5 student are the same
784-64-10 network, distilled with the same seed: their rows agree.

Columns: parameters (non-zero ones after unstructured pruning), MACs (batch 1, counted from the
TFLite file's conv/dense ops: unstructured zeros are still computed), file size, the zipped
(deflate, level 9) size as a ratio of the zipped fp32 baseline, top-1 accuracy on the 10,000
test images, top-1 agreement with the fp32 Keras original, and LiteRT latency at batch 1 and 2
threads: every file of a model is timed in ``--rounds`` rounds of ``--runs`` runs, the order
rotating each round, so the per-round ratio to the fp32 baseline shows the noise (median and
range). ``half-width, labels only`` is the no-teacher control: the same narrow network trained
on the same 20,000 labelled images for the same number of epochs, without a teacher.

Trained models, data, builds and results are cached in ``$TMPDIR/edgepack-bench-structural``:
a rerun only re-times. ``--latency-only`` re-times the cached files (a shared, noisy machine);
``--rebuild`` builds again (the trained baselines stay). Run from the repository root::

    .venv/bin/python scripts/bench/structural.py [--rounds 7 --runs 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fashion_mnist  # scripts/bench/fashion_mnist.py, beside this script
import numpy as np
import yaml
from edgepack.quiet import captured, import_tensorflow
from edgepack.structural.cost import macs, zipped_bytes

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "edgepack-bench-structural"
THREADS = 2
TEACHER_EPOCHS = {"cnn": 8, "mlp": 15}
DISTIL_SAMPLES = 20_000
#: the distillation settings of every recipe (the profile's ``structural.distill``)
DISTILL = {"epochs": 15, "patience": 3, "batch_size": 128, "learning_rate": 1e-3,
           "temperature": 4.0, "alpha": 0.7, "seed": 0}
#: layers unstructured/structured pruning leaves alone. The CNN keeps edgepack's default (the
#: first conv, which sees raw pixels, and the head); the MLP's first layer IS its hidden layer,
#: so only the head is skipped there
SKIP = {"cnn": None, "mlp": ["probs"]}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ data, models

fmnist = fashion_mnist.load


def data_files() -> dict[str, Path]:
    """calibration (300 unlabelled), train (20,000 labelled, disjoint from calibration) and
    eval (the 10,000 test images, labelled), as .npz for edgepack."""
    files = {k: CACHE / f"{k}.npz" for k in ("calibration", "train", "eval")}
    if all(p.exists() for p in files.values()):
        return files
    d = fmnist()
    order = np.random.default_rng(0).permutation(len(d["x_train"]))
    calib, train = np.sort(order[:300]), np.sort(order[300:300 + DISTIL_SAMPLES])
    np.savez(files["calibration"], x=d["x_train"][calib])
    np.savez(files["train"], x=d["x_train"][train], y=d["y_train"][train])
    np.savez(files["eval"], x=d["x_test"], y=d["y_test"])
    return files


def architecture(kind: str, width: float = 1.0) -> Any:
    import keras

    inp = keras.Input((28, 28, 1), name="image")
    if kind == "cnn":
        x = keras.layers.Conv2D(int(32 * width), 3, activation="relu", name="conv1")(inp)
        x = keras.layers.MaxPooling2D(name="pool1")(x)
        x = keras.layers.Conv2D(int(64 * width), 3, activation="relu", name="conv2")(x)
        x = keras.layers.MaxPooling2D(name="pool2")(x)
        x = keras.layers.Flatten(name="flat")(x)
        x = keras.layers.Dense(int(128 * width), activation="relu", name="dense")(x)
    else:
        x = keras.layers.Flatten(name="flat")(inp)
        x = keras.layers.Dense(int(128 * width), activation="relu", name="hidden")(x)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=f"{kind}_w{width:g}")


def train(kind: str, width: float, epochs: int, control: bool) -> Path:
    """A seeded, deterministic Keras training run (cached): the teacher on all 60,000 training
    images, or the no-teacher ``control`` on the distillation set, holding out 20% and
    restoring the best epoch exactly as edgepack's distillation does."""
    path = CACHE / f"{kind}_w{width:g}_{'control' if control else 'full'}_e{epochs}.keras"
    if path.exists():
        return path
    if control:
        d = np.load(data_files()["train"])
        x, y = d["x"], d["y"]
    else:
        x, y = fmnist()["x_train"], fmnist()["y_train"]
    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    model = architecture(kind, width)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(patience=DISTILL["patience"],
                                               restore_best_weights=True)] if control else []
    t = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, shuffle=True,
              validation_split=0.2 if control else 0.0, callbacks=callbacks)
    log(f"trained {path.name} in {time.perf_counter() - t:.0f} s")
    model.save(path)
    return path


# ------------------------------------------------------------------------------ recipes

@dataclass
class Recipe:
    key: str
    title: str
    flags: dict[str, Any]  # edgepack.build keyword arguments, as the CLI flags would give
    structural: dict[str, Any]  # the bench profile's structural section
    fp32_row: bool = False  # also show the fp32 reference (structure alone, no int8)


def recipes(kind: str) -> list[Recipe]:
    skip = {} if SKIP[kind] is None else {"skip": SKIP[kind]}
    return [
        Recipe("int8", "int8 only", {}, {}),
        Recipe("prune50", "prune 50% + distill + int8", {"prune": 0.5, "distill": True},
               {"prune": {"sparsity": 0.5, **skip}, "distill": DISTILL}),
        Recipe("prune80", "prune 80% + distill + int8", {"prune": 0.8, "distill": True},
               {"prune": {"sparsity": 0.8, **skip}, "distill": DISTILL}),
        Recipe("structured50", "structured 50% + distill",
               {"prune": 0.5, "structured": True, "distill": True},
               {"prune": {"sparsity": 0.5, **skip}, "distill": DISTILL}, fp32_row=True),
        Recipe("lowrank", "low-rank 0.5x + distill", {"distill": True},
               {"lowrank": {"param_ratio": 0.5}, "distill": DISTILL}, fp32_row=True),
        Recipe("half", "half-width student, distilled", {"distill": True},
               {"distill": {**DISTILL, "width": 0.5}}, fp32_row=True),
    ]


def profile_dir(kind: str, recipe: Recipe) -> tuple[Path, str]:
    """A profile like int8-arm with this recipe's structural section."""
    name = f"bench-{kind}-{recipe.key}"
    folder = CACHE / "profiles" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((ROOT / "profiles" / "int8-arm.yaml").read_text())
    spec.update(name=name, title=f"int8-arm, {recipe.title}", budget={})
    if recipe.structural:
        spec["structural"] = recipe.structural
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return folder, name


def build(model: Path, kind: str, recipe: Recipe, files: dict[str, Path], tag: str,
          rebuild: bool) -> dict[str, Any]:
    """The build's report.json (cached unless ``rebuild``)."""
    import edgepack

    out = CACHE / "builds" / f"{tag}-{recipe.key}"
    if (out / "report.json").exists() and not rebuild:
        return json.loads((out / "report.json").read_text())
    folder, name = profile_dir(kind, recipe)
    log(f"edgepack.build({model.name}, raspberrypi, profile={name}, {recipe.flags}) ...")
    t = time.perf_counter()
    with captured() as cap:
        try:
            edgepack.build(model, "raspberrypi", profile=name, profiles_dirs=(folder,),
                           calibration=files["calibration"], evaluation=files["eval"],
                           train=files["train"] if recipe.structural else None, output=out,
                           force=True, runs=20, threads=THREADS, **recipe.flags)
        except Exception:
            print(cap.text[-3000:], file=sys.stderr)
            raise
    log(f"  ... {time.perf_counter() - t:.0f} s")
    return json.loads((out / "report.json").read_text())


def int8_arm_verdict(artifact: dict[str, Any], source_top1: float) -> str:
    """Whether ``artifact`` is within int8-arm's budget against the original model."""
    budget = yaml.safe_load((ROOT / "profiles" / "int8-arm.yaml").read_text())["budget"]
    fid = artifact["fidelity"][0]
    ok = (source_top1 - artifact["accuracy"]["top1"] <= budget["max_top1_drop"] + 1e-12
          and fid["top1_agreement"] >= budget["min_top1_agreement"]
          and fid["cosine"] >= budget["min_cosine"])
    return "ok" if ok else "over"


# ------------------------------------------------------------------------------ measuring

@dataclass
class Row:
    model: str
    name: str
    file: str
    params: int
    nonzero: int
    macs: int = 0
    size: int = 0
    zipped: int = 0
    accuracy: float = 0.0
    agreement: float = 0.0
    budget: str = ""
    p50_ms: float = 0.0  # over all rounds
    round_ms: list[float] = field(default_factory=list)  # p50 of each round


def speedup(row: Row, base: Row) -> tuple[float, float, float]:
    """(median, min, max) over the rounds of base's p50 / row's p50 in the same round."""
    ratios = np.array(base.round_ms) / np.array(row.round_ms)
    return float(np.median(ratios)), float(ratios.min()), float(ratios.max())


def rows_of(kind: str, recipe: Recipe, rep: dict[str, Any], folder: Path) -> list[Row]:
    stages = rep.get("structural") or []
    last = stages[-1] if stages else None
    params = last["parameters"] if last else rep["model"]["parameters"]
    nonzero = last["nonzero_parameters"] if last else params
    found = []
    for a in sorted(rep["artifacts"], key=lambda a: a["role"] != "reference"):
        if a["format"] != "tflite":
            continue
        if a["role"] == "reference" and recipe.key == "int8":
            name = "fp32 baseline"
        elif a["role"] == "reference" and recipe.fp32_row:
            name = f"{recipe.title} (fp32)"
        elif a["role"] == "deliverable":
            name = recipe.title if "int8" in recipe.title else f"{recipe.title} + int8"
        else:
            continue
        path = folder / a["file"]
        found.append(Row(kind, name, str(path), params, nonzero, macs(path, "tflite"),
                         path.stat().st_size, zipped_bytes(path), a["accuracy"]["top1"],
                         a["fidelity"][0]["top1_agreement"],
                         "" if a["role"] == "reference" else
                         int8_arm_verdict(a, rep["source_accuracy"]["top1"])))
    return found


def time_interleaved(rows: list[Row], x1: np.ndarray, rounds: int, runs: int,
                     warmup: int = 30) -> None:
    """p50 per file over all rounds, and per round."""
    from ai_edge_litert.interpreter import Interpreter

    per_round: list[list[float]] = [[] for _ in rows]
    pooled: list[list[float]] = [[] for _ in rows]
    for r in range(rounds):
        order = list(range(len(rows)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            interp = Interpreter(model_path=rows[i].file, num_threads=THREADS)
            interp.allocate_tensors()
            inp = interp.get_input_details()[0]["index"]
            times = []
            for k in range(warmup + runs):
                t = time.perf_counter()
                interp.set_tensor(inp, x1)
                interp.invoke()
                if k >= warmup:
                    times.append(time.perf_counter() - t)
            per_round[i].append(float(np.median(times)))
            pooled[i].extend(times)
    for i, row in enumerate(rows):
        row.p50_ms = 1e3 * float(np.median(pooled[i]))
        row.round_ms = [1e3 * t for t in per_round[i]]


# ------------------------------------------------------------------------------ output

def print_table(rows: list[Row], rounds: int, runs: int) -> None:
    print(f"\n| model | configuration | params (non-zero) | MACs | file | zipped vs fp32 | "
          f"top-1 acc | agreement | int8-arm budget | p50 µs | speed-up (range over "
          f"{rounds} rounds x {runs} runs) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in dict.fromkeys(r.model for r in rows):
        group = [r for r in rows if r.model == kind]
        fp32 = group[0]
        for r in group:
            params = f"{r.params:,}" + (f" ({r.nonzero:,})" if r.nonzero != r.params else "")
            mid, lo, hi = speedup(r, fp32)
            print(f"| {kind} | {r.name} | {params} | {r.macs / 1e6:.2f} M | "
                  f"{r.size / 1024:.1f} KiB | {r.zipped / fp32.zipped:.3f}x | "
                  f"{100 * r.accuracy:.2f}% | {100 * r.agreement:.2f}% | {r.budget or '-'} | "
                  f"{1e3 * r.p50_ms:.1f} | {mid:.2f}x ({lo:.2f}-{hi:.2f}) |")


def targets(rows: list[Row]) -> bool:
    """The issue's two targets, checked on the table."""
    ok = True
    for kind in dict.fromkeys(r.model for r in rows):
        group = [r for r in rows if r.model == kind]
        fp32 = group[0]
        small = [r for r in group if r.zipped <= 0.10 * fp32.zipped
                 and r.accuracy >= fp32.accuracy - 0.01]
        print(f"\n{kind}: <= 0.10x zipped fp32 within 1 point of fp32 "
              f"({100 * fp32.accuracy:.2f}%): "
              + (", ".join(f"{r.name} ({r.zipped / fp32.zipped:.3f}x, "
                           f"{100 * r.accuracy:.2f}%)" for r in small) or "NONE"))
        int8 = next(r for r in group if r.name == "int8 only")
        faster = []
        for r in (r for r in group if r.name.startswith("structured")):
            base = fp32 if r.name.endswith("(fp32)") else int8
            mid, lo, _ = speedup(r, base)
            faster.append(mid > 1.0)
            print(f"{kind}: {r.name}: {mid:.2f}x the speed of {base.name} (median of rounds; "
                  f"{'faster in every round' if lo > 1.0 else 'NOT faster in every round'})")
        ok = ok and bool(small) and all(faster)
    return ok


# ------------------------------------------------------------------------------ main

def measure(args: argparse.Namespace) -> list[Row]:
    files = data_files()
    rows: list[Row] = []
    for kind in ("cnn", "mlp"):
        teacher = train(kind, 1.0, TEACHER_EPOCHS[kind], control=False)
        control = train(kind, 0.5, DISTILL["epochs"], control=True)
        group: list[Row] = []
        for recipe in recipes(kind):
            rep = build(teacher, kind, recipe, files, kind, args.rebuild)
            group += rows_of(kind, recipe, rep, CACHE / "builds" / f"{kind}-{recipe.key}")
        control_rep = build(control, kind, recipes(kind)[0], files, f"{kind}-control",
                            args.rebuild)
        ref = next(r for r in rows_of(kind, recipes(kind)[0], control_rep,
                                      CACHE / "builds" / f"{kind}-control-int8")
                   if r.name == "fp32 baseline")
        ref.name = "half-width, labels only (no teacher, fp32)"
        # its agreement is with its own fp32 original: compare with the teacher's instead
        ref.agreement = agreement(Path(ref.file), teacher, files["eval"])
        rows += group + [ref]
    return rows


def agreement(tflite: Path, keras_model: Path, eval_npz: Path) -> float:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    x = np.load(eval_npz)["x"]
    teacher = keras.models.load_model(keras_model, safe_mode=True)
    ref = np.asarray(teacher.predict(x, batch_size=500, verbose=0)).argmax(1)
    interp = Interpreter(model_path=str(tflite))
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    return float(np.mean(out.argmax(1) == ref))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per file per round")
    parser.add_argument("--latency-only", action="store_true",
                        help="re-time the files of the last run (nothing is built)")
    parser.add_argument("--rebuild", action="store_true", help="build every recipe again")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    CACHE.mkdir(parents=True, exist_ok=True)
    results = CACHE / "rows.json"
    t0 = time.perf_counter()
    if args.latency_only:
        rows = [Row(**r) for r in json.loads(results.read_text())]
    else:
        if args.rebuild:
            shutil.rmtree(CACHE / "builds", ignore_errors=True)
        rows = measure(args)
    x1 = np.load(CACHE / "eval.npz")["x"][:1]
    for kind in dict.fromkeys(r.model for r in rows):
        log(f"timing {kind}: {args.rounds} rounds x {args.runs} runs per file, interleaved")
        time_interleaved([r for r in rows if r.model == kind], x1, args.rounds, args.runs)
    results.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print_table(rows, args.rounds, args.runs)
    met = targets(rows)
    print(f"\ntargets {'MET' if met else 'NOT met'}; {time.perf_counter() - t0:.0f} s; "
          f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
