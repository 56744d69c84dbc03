"""The build matrix, measured side by side in one run: cold, warm (all cached), after changing
one profile, and -j 1 vs -j 2 (cold, separate caches).

``steps`` counts, over the cells built in that run, the build steps (conversion hops and
validations) taken from the step cache and those run afresh, as their reports record them:
after a profile change the rebuilt cells should run only what depends on the profile.

Two models (the bundled digits CNN and a small MLP trained here on the same data) x three
targets (raspberrypi, intel-cpu, x86-host). Run: python scripts/bench/matrix.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits"
PROJECT = """
models:
  - {name: digits, model: digits.keras, calibration: calibration.npz, eval: eval.npz,
     labels: labels.txt}
  - {name: mlp, model: mlp.keras, calibration: calibration.npz, eval: eval.npz,
     labels: labels.txt}
targets: [raspberrypi, intel-cpu, x86-host]
profiles_dir: [profiles]
"""


def make_zoo(root: Path) -> None:
    import numpy as np
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    root.mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.keras", root / "digits.keras")
    for name in ("calibration.npz", "eval.npz", "labels.txt"):
        shutil.copy(EXAMPLE / name, root / name)
    (root / "profiles").mkdir()
    (root / "edgepack.yaml").write_text(PROJECT)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, digits.target, epochs=5, verbose=0)
    model.save(root / "mlp.keras")


def timed(args: list[str], cwd: Path, cache: Path) -> tuple[float, str, str]:
    """Wall time of one matrix build, how many cells were built / reused, and how many steps
    the built cells reused / ran."""
    import json
    import subprocess
    import sys
    from collections import Counter

    env = {**os.environ, "EDGEPACK_CACHE": str(cache)}
    t0 = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "edgepack"), "build", "--runs",
                           "20", "--json", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    cells = json.loads(done.stdout[done.stdout.index("["):])
    counts = Counter(c["status"] for c in cells)
    steps = Counter()
    for c in cells:
        if c["status"] in ("built", "over budget"):
            report = json.loads((cwd / c["output"] / "report.json").read_text())
            steps.update(report["step_cache"] or {})
    return (seconds, ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
            f"{steps['reused']} reused, {steps['built']} built" if steps else "-")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgepack-matrix-bench-") as tmp:
        root = Path(tmp) / "zoo"
        make_zoo(root)
        cache = Path(tmp) / "cache"
        rows = [("cold, -j 1", timed(["-j", "1"], root, cache))]
        rows.append(("warm (nothing changed), -j 1", timed(["-j", "1"], root, cache)))
        profile = (REPO / "profiles" / "int8-arm.yaml").read_text()
        (root / "profiles" / "int8-arm.yaml").write_text(
            profile.replace("samples: 200", "samples: 150"))
        rows.append(("int8-arm profile changed, -j 1", timed(["-j", "1"], root, cache)))
        shutil.rmtree(root / "build")
        rows.append(("cold, -j 2 (fresh cache)", timed(["-j", "2"], root, Path(tmp) / "c2")))
        shutil.rmtree(root / "build")
        rows.append(("cold, -j 1 (fresh cache)", timed(["-j", "1"], root, Path(tmp) / "c1")))
    print(f"build matrix: 2 models x 3 targets, {os.cpu_count()} cores")
    print(f"{'run':34s} {'seconds':>8s}  {'cells':28s} steps (in the cells built)")
    for name, (seconds, cells, steps) in rows:
        print(f"{name:34s} {seconds:8.1f}  {cells:28s} {steps}")


if __name__ == "__main__":
    main()
