"""The forms exporters write, through ``edgepack build``: what each target gets from each.

The zoo (``zoo.py``) measures fidelity on real pretrained models; this measures breadth on the
files users bring. Small networks of the families users ship (a MobileNetV3 block with hard
swish and squeeze-excite, a ViT, a U-Net with a transposed convolution, a YOLO-style head, an
LSTM, a classifier whose output is squeezed to no batch axis, one exported with a fixed batch
of 4) are exported as PyTorch writes them (the TorchScript exporter at opsets 11 and 17 with a
dynamic batch, with its weights listed as inputs, the dynamo exporter with its default external
data file, fp16 with onnxconverter-common) and two Keras files (augmentation layers left in,
a multi-output dict). Weights are random: a row says what was built and why not, never how
faithful a trained model would be. Each is built for each target with the real CLI in its own
process, with calibration and eval data of its input, and prints one row: exit code, seconds,
the formats delivered, the first reason a format was not, the error line.

    python scripts/bench/exporters.py                       # every model, every form
    python scripts/bench/exporters.py --models yolo --forms dynamo fp16 --targets raspberrypi
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log: noise in the table

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("raspberrypi", "intel-cpu")
#: how each ONNX form is written: (TorchScript-exporter keyword arguments, or "dynamo"/"fp16")
FORMS = ("opset17", "opset11-dynamic", "weights-as-inputs", "dynamo", "fp16")


def torch_models() -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    """Each family: (a constructor of the module, one sample's input shape)."""
    import torch
    from torch import nn

    def conv_bn_hswish(i: int, o: int, k: int = 3, stride: int = 1, groups: int = 1) -> Any:
        return nn.Sequential(nn.Conv2d(i, o, k, stride, k // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(o), nn.Hardswish())

    class SqueezeExcite(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

        def forward(self, x: Any) -> Any:
            g = self.b(torch.relu(self.a(x.mean((2, 3), keepdim=True))))
            return x * nn.functional.hardsigmoid(g)

    class MobileNetV3Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = conv_bn_hswish(3, 16, 3, 2)
            self.block = nn.Sequential(conv_bn_hswish(16, 32, 1),
                                       conv_bn_hswish(32, 32, 3, 1, 32), SqueezeExcite(32),
                                       nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16))
            self.fc = nn.Linear(16, 10)

        def forward(self, x: Any) -> Any:
            y = self.stem(x)
            return self.fc((y + self.block(y)).mean((2, 3)))

    class ViT(nn.Module):
        def __init__(self, d: int = 32) -> None:
            super().__init__()
            self.patches = nn.Conv2d(3, d, 8, 8)
            self.cls = nn.Parameter(torch.randn(1, 1, d))
            self.pos = nn.Parameter(torch.randn(1, 17, d) * 0.02)
            layer = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, activation="gelu",
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(d, 10)

        def forward(self, x: Any) -> Any:
            t = self.patches(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1) + self.pos
            return self.head(self.encoder(t)[:, 0])

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down1 = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU())
            self.down2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU())
            self.up = nn.ConvTranspose2d(16, 8, 2, 2)
            self.out = nn.Sequential(nn.Conv2d(16, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 1, 1))

        def forward(self, x: Any) -> Any:
            a = self.down1(x)
            return torch.sigmoid(self.out(torch.cat([a, self.up(self.down2(a))], 1)))

    class YoloHead(nn.Module):
        def __init__(self, classes: int = 3) -> None:
            super().__init__()
            def block(i: int, o: int) -> Any:
                return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1), nn.BatchNorm2d(o), nn.SiLU())
            self.p3, self.p4 = nn.Sequential(block(3, 16), block(16, 32)), block(32, 64)
            self.h3, self.h4 = nn.Conv2d(32, 4 + classes, 1), nn.Conv2d(64, 4 + classes, 1)

        def forward(self, x: Any) -> Any:
            f3 = self.p3(x)
            f4 = self.p4(f3)
            out = torch.cat([self.h3(f3).flatten(2), self.h4(f4).flatten(2)], 2)
            return torch.cat([out[:, :4], out[:, 4:].sigmoid()], 1)

    class LSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm, self.fc = nn.LSTM(20, 32, batch_first=True), nn.Linear(32, 5)

        def forward(self, x: Any) -> Any:
            return self.fc(self.lstm(x)[0][:, -1])

    class Squeezed(nn.Module):
        """Returns one sample's scores without their batch axis (``logits[0]``)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3, 2, 1), nn.Linear(8, 6)

        def forward(self, x: Any) -> Any:
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))[0]

    return {"mobilenetv3": (MobileNetV3Block, (3, 64, 64)), "vit": (ViT, (3, 32, 32)),
            "unet": (UNet, (3, 32, 32)), "yolo": (YoloHead, (3, 64, 64)),
            "lstm": (LSTMClassifier, (10, 20)), "squeezed": (Squeezed, (3, 32, 32))}


def export(name: str, form: str, folder: Path) -> tuple[Path, tuple[int, ...]]:
    """The family ``name`` written in ``form`` into ``folder``; its file and sample shape."""
    import torch

    factory, shape = torch_models()[name]
    torch.manual_seed(0)
    model = factory().eval()
    for m in model.modules():  # statistics a trained model would have
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    batch = 4 if form == "fixed-batch-4" else 1
    example = (torch.randn(batch, *shape),)
    path = folder / f"{name}.onnx"
    names = {"input_names": ["x"], "output_names": ["y"]}
    dynamic = {"dynamic_axes": {"x": {0: "batch"}}} if name != "squeezed" else {}
    if form == "dynamo":
        torch.onnx.export(model, example, str(path), dynamo=True, verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", max=64)},)
                          if dynamic else None, **names)
        return path, shape
    opset = 11 if form == "opset11-dynamic" else 17
    torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset,
                      keep_initializers_as_inputs=form == "weights-as-inputs",
                      **names, **(dynamic if form == "opset11-dynamic" else {}))
    if form == "fp16":
        import onnx
        from onnxconverter_common import float16

        onnx.save(float16.convert_float_to_float16(onnx.load(str(path))), str(path))
    return path, shape


def keras_models(root: Path) -> dict[str, tuple[Path, dict[str, tuple[int, ...]]]]:
    """Keras files, each in its folder under ``root``: a classifier with augmentation layers
    left in, a dict of two outputs; each with its input shapes."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.RandomFlip()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    augmented = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x))
    for name in ("augmented", "two-outputs"):
        (root / f"{name}-keras").mkdir(parents=True, exist_ok=True)
    augmented.save(root / "augmented-keras" / "augmented.keras")
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(8, 3, padding="same",
                                                        activation="relu")(inp))
    seg = keras.layers.Conv2D(2, 1, name="seg")(
        keras.layers.UpSampling2D(interpolation="bilinear")(x))
    cls = keras.layers.Dense(4, name="cls")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, {"cls": cls, "seg": seg}).save(root / "two-outputs-keras" / "two.keras")
    return {"augmented": (root / "augmented-keras" / "augmented.keras", {"image": (48, 48, 3)}),
            "two-outputs": (root / "two-outputs-keras" / "two.keras", {"image": (32, 32, 3)})}


def write_data(folder: Path, inputs: dict[str, tuple[int, ...]], dtype: str) -> list[str]:
    """calib.npz (64 rows) and eval.npz (32) in ``folder``; the build's data options."""
    rng = np.random.default_rng(0)
    for split, rows in (("calib", 64), ("eval", 32)):
        np.savez(folder / f"{split}.npz", **{name: rng.standard_normal((rows, *shape))
                                             .astype(dtype) for name, shape in inputs.items()})
    return ["--calibration", str(folder / "calib.npz"), "--eval", str(folder / "eval.npz")]


def build(model: Path, target: str, data: list[str], out: Path) -> dict[str, Any]:
    """``edgepack build`` in its own process; the row of what it did."""
    entry = "import sys; from edgepack.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", entry, "build", str(model), "--target", target, *data,
           "--output", str(out), "--force", "--no-cache", "--runs", "5", "--warmup", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "toolchain")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    row: dict[str, Any] = {"exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
                           "delivered": [], "not_built": "", "error": ""}
    report = out / "report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        row["delivered"] = [f"{a['format']} {a['precision']}" for a in rep["artifacts"]
                            if a["role"] == "deliverable"]
        skipped = rep.get("skipped", [])
        if skipped:
            source = rep["model"]["path"] + ": "
            row["not_built"] = (f"{skipped[0]['format']}: "
                                + skipped[0]["reason"].removeprefix(source))
    if proc.returncode:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        row["error"] = lines[-1] if lines else ""
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", help="families to build (default: all, and Keras)")
    p.add_argument("--forms", nargs="+", default=[*FORMS, "fixed-batch-4"],
                   choices=[*FORMS, "fixed-batch-4"])
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--keep", type=Path, help="keep the models and builds in this folder")
    p.add_argument("--json", type=Path, help="write every row here")
    args = p.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgepack-exporters-"))
    families = args.models or [*torch_models(), "keras"]
    cases: list[tuple[str, str, Path | str, dict[str, tuple[int, ...]], str]] = []
    for name in (f for f in families if f != "keras"):
        for form in (f for f in args.forms if f != "fixed-batch-4" or name == "mobilenetv3"):
            folder = root / f"{name}-{form}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                path, shape = export(name, form, folder)
            except Exception as exc:  # noqa: BLE001 (the exporter's refusal is the row)
                cases.append((name, form, f"export failed: {str(exc).splitlines()[0]}", {}, ""))
                continue
            cases.append((name, form, path, {"x": shape},
                          "float16" if form == "fp16" else "float32"))
    if "keras" in families:
        for name, (path, inputs) in keras_models(root).items():
            cases.append((name, "keras", path, inputs, "float32"))
    rows: list[dict[str, Any]] = []
    print(f"{'model':12} {'form':18} {'target':12} exit    s  delivered / not built / error")
    for name, form, path, inputs, dtype in cases:
        if isinstance(path, str):  # not exported: one row for every target
            rows.append({"model": name, "form": form, "target": "-", "exit": None,
                         "error": path})
            print(f"{name:12} {form:18} {'-':12}    -     -  {path[:120]}", flush=True)
            continue
        data = write_data(path.parent, inputs, dtype)
        for target in args.targets:
            row = {"model": name, "form": form, "target": target,
                   **build(path, target, data, root / "builds" / f"{name}-{form}-{target}")}
            rows.append(row)
            what = ", ".join(row["delivered"]) or "-"
            print(f"{name:12} {form:18} {target:12} {row['exit']:4} {row['seconds']:5.0f}  "
                  f"{what}", flush=True)
            for key in ("not_built", "error"):
                if row[key]:
                    print(f"{'':50}{key.replace('_', ' ')}: {row[key][:160]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
