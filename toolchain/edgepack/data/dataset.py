"""Calibration and evaluation data: loading, checking against the model, seeded sampling.

Accepted: an ``.npz`` with arrays named after the model's inputs (or ``x`` for a single input),
optional labels ``y``; a folder of ``.npy`` files (one per input name, or samples/batches of
the single input, plus an optional ``y.npy``); or a folder of images for a single image input,
preprocessed by a recipe that is recorded on the Dataset (``images``, ``preprocess``). Arrays
are never unpickled.

Data that does not fit the model is refused with the reason, because a silently reshaped or
mis-scaled calibration set is exactly how int8 accuracy collapses without anyone noticing.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..signature import Signature, TensorSpec
from .images import list_images, read_images
from .preprocess import Preprocessing, resolve

LABEL_KEYS = ("y", "labels", "label")


@dataclass
class Dataset:
    """Model inputs (by input name, batch first) and optional integer class labels.

    ``preprocessing`` says what turned image files into these arrays (None for arrays given
    as they are), so the report and artifact metadata can state it.
    """

    source: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    preprocessing: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, n: int, seed: int) -> Dataset:
        """At most ``n`` samples, drawn without replacement with ``seed`` (all if fewer)."""
        if n >= len(self):
            return self
        idx = sample_indices(len(self), n, seed)
        return Dataset(self.source, {k: v[idx] for k, v in self.inputs.items()},
                       None if self.labels is None else self.labels[idx], self.preprocessing)

    def head(self, n: int) -> Dataset:
        return Dataset(self.source, {k: v[:n] for k, v in self.inputs.items()},
                       None if self.labels is None else self.labels[:n], self.preprocessing)

    def samples(self) -> list[dict[str, np.ndarray]]:
        """One batch-of-one feed per sample, as calibration and latency loops want them."""
        return [{k: v[i:i + 1] for k, v in self.inputs.items()} for i in range(len(self))]


def sample_indices(n: int, k: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` samples drawn with ``seed`` (all when ``k`` is None or
    not smaller): loading a bounded subset picks exactly what ``take`` would pick from all."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def load_dataset(path: str | Path, signature: Signature, *,
                 preprocessing: Preprocessing | None = None,
                 class_names: list[str] | None = None, max_samples: int | None = None,
                 seed: int = 0) -> Dataset:
    """Read ``path`` and check it against ``signature``'s inputs.

    ``preprocessing`` and ``class_names`` (the project's labels, naming class subfolders) apply
    to a folder of images. At most ``max_samples`` samples are kept, drawn with ``seed``; image
    files beyond them are never decoded.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", path=p)
    if p.is_dir() and not any(p.glob("*.npy")):
        return _load_images(p, signature, preprocessing, class_names, max_samples, seed)
    arrays = _read_folder(p) if p.is_dir() else _read_npz(p)
    labels = None
    for key in LABEL_KEYS:
        if key in arrays:
            labels = arrays.pop(key)
            break
    inputs = _match_inputs(p, arrays, signature)
    n = {len(v) for v in inputs.values()}
    if len(n) != 1:
        raise DataError(f"inputs have different sample counts {sorted(n)}", path=p)
    count = n.pop()
    if count == 0:
        raise DataError("no samples", path=p)
    if labels is not None:
        labels = _check_labels(p, labels, count)
    data = Dataset(str(p), inputs, labels)
    return data if max_samples is None else data.take(max_samples, seed)


def _load_images(path: Path, signature: Signature, asked: Preprocessing | None,
                 class_names: list[str] | None, max_samples: int | None,
                 seed: int) -> Dataset:
    """Decode only the sampled images of a folder, preprocessed for the single image input."""
    found = list_images(path, class_names)
    if len(signature.inputs) != 1:
        raise DataError(f"a folder of images feeds a model with one input; this one has "
                        f"{signature.input_names}", path=path,
                        hint="give an .npz with one array per input")
    spec = signature.inputs[0]
    recipe = resolve(spec, asked, path)
    idx = sample_indices(len(found.files), max_samples, seed)
    x = _check_array(path, spec, read_images([found.files[i] for i in idx], recipe))
    labels = None if found.labels is None else np.asarray(found.labels, np.int64)[idx]
    record = {**recipe.to_dict(), "files": len(found.files), "loaded": len(idx),
              "classes": found.classes}
    return Dataset(str(path), {spec.name: x}, labels, record)


def overlap(calib: Dataset, evals: Dataset) -> int:
    """How many evaluation samples are byte-for-byte calibration samples too.

    Evaluating on calibration data flatters int8: the quantization ranges were fitted to those
    very samples. Each sample is hashed (sha1 of every input's dtype, shape and bytes), so two
    sets are compared in one pass each without holding pairs of arrays.
    """
    seen = {_digest(calib, i) for i in range(len(calib))}
    return sum(_digest(evals, i) in seen for i in range(len(evals)))


def _digest(data: Dataset, i: int) -> bytes:
    h = hashlib.sha1(usedforsecurity=False)
    for name in sorted(data.inputs):
        sample = np.ascontiguousarray(data.inputs[name][i])
        h.update(f"{name}:{sample.dtype}:{sample.shape}".encode())
        h.update(sample.tobytes())
    return h.digest()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() == ".npy":
        return {"x": _load_npy(path)}
    if path.suffix.lower() != ".npz":
        raise DataError("unsupported data file", path=path,
                        hint="give an .npz (arrays named after the inputs, or x; labels y), "
                             "an .npy, a folder of .npy files or a folder of images")
    if not zipfile.is_zipfile(path):
        raise DataError("not a readable .npz archive (not a zip file)", path=path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"not a readable .npz archive ({exc})", path=path) from exc
    except ValueError as exc:
        raise DataError(f"cannot read arrays: {exc} (object arrays are refused: they would "
                        "need unpickling)", path=path) from exc


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, EOFError) as exc:
        raise DataError(f"not a readable .npy file ({exc})", path=path) from exc
    except ValueError as exc:
        raise DataError(f"cannot read array: {exc} (object arrays are refused)",
                        path=path) from exc


def _read_folder(path: Path) -> dict[str, np.ndarray]:
    return {f.stem: _load_npy(f) for f in sorted(path.glob("*.npy"))}


def _match_inputs(path: Path, arrays: dict[str, np.ndarray],
                  signature: Signature) -> dict[str, np.ndarray]:
    names = signature.input_names
    if all(n in arrays for n in names):
        chosen = {n: arrays[n] for n in names}
    elif len(names) == 1 and "x" in arrays:
        chosen = {names[0]: arrays["x"]}
    elif len(names) == 1 and len(arrays) == 1:
        chosen = {names[0]: next(iter(arrays.values()))}
    elif len(names) == 1 and path.is_dir() and arrays:
        chosen = {names[0]: _stack_samples(path, list(arrays.values()), signature.inputs[0])}
    else:
        raise DataError(f"arrays {sorted(arrays)} do not name the model's inputs {names}",
                        path=path, hint="name each array after an input (or 'x' for a single "
                                        "input) and labels 'y'")
    return {n: _check_array(path, signature.input(n), a) for n, a in chosen.items()}


def _stack_samples(path: Path, arrays: list[np.ndarray], spec: TensorSpec) -> np.ndarray:
    """Per-sample (no batch dim) or per-batch .npy files of one input, in file-name order."""
    parts = [a[None] if a.ndim == spec.rank - 1 else a for a in arrays]
    try:
        return np.concatenate(parts)
    except ValueError as exc:
        raise DataError(f"the .npy files do not share one shape: {exc}", path=path) from exc


def _check_array(path: Path, spec: TensorSpec, a: np.ndarray) -> np.ndarray:
    want_float = spec.dtype.startswith("float")
    if want_float and a.dtype.kind not in "f":
        raise DataError(
            f"input '{spec.name}' is {a.dtype} but the model takes {spec.dtype}", path=path,
            hint="store the data already preprocessed (normalized floats) as the model expects")
    if not want_float and a.dtype.kind not in "iub":
        raise DataError(f"input '{spec.name}' is {a.dtype} but the model takes {spec.dtype}",
                        path=path)
    if a.ndim != spec.rank:
        raise DataError(
            f"input '{spec.name}' has shape {_fmt(a.shape)} but the model expects "
            f"{_fmt(spec.shape)} (rank {spec.rank})", path=path,
            hint="the first dimension is the sample index")
    expected = spec.shape[1:]
    got = a.shape[1:]
    if not all(isinstance(e, str) or e == g for e, g in zip(expected, got, strict=True)):
        hint = _layout_hint(expected, got, spec.layout)
        raise DataError(f"input '{spec.name}' has shape {_fmt(a.shape)} but the model expects "
                        f"{_fmt(spec.shape)}", path=path, hint=hint)
    return a.astype(spec.dtype, copy=False)


def _layout_hint(expected: tuple, got: tuple, layout: str) -> str | None:
    if any(isinstance(e, str) for e in expected) or len(expected) != 3:
        return None
    for perm in permutations(range(3)):
        if tuple(got[i] for i in perm) == tuple(expected) and perm != (0, 1, 2):
            axes = (0, *(i + 1 for i in perm))
            other = "NCHW" if layout == "NHWC" else "NHWC"
            return (f"the data looks {other} but the model takes {layout or 'another layout'}: "
                    f"transpose it with x.transpose{axes}")
    return None


def _check_labels(path: Path, labels: np.ndarray, count: int) -> np.ndarray:
    """Class indices (N,) as int64; one-hot rows become indices. Anything else numeric with N
    rows (boxes, masks, regression targets) is kept as it is, for a user metric."""
    if labels.dtype.kind not in "iufb" or labels.ndim == 0:
        raise DataError(f"labels must be numeric with one row per sample, got {labels.dtype} "
                        f"{_fmt(labels.shape)}", path=path)
    if len(labels) != count:
        raise DataError(f"{len(labels)} labels for {count} samples", path=path)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim == 2 and np.isin(labels, (0, 1)).all() and (labels.sum(axis=1) == 1).all():
        return labels.argmax(axis=1).astype(np.int64)  # one-hot
    if labels.ndim == 1 and labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    return labels


def is_class_labels(labels: np.ndarray | None) -> bool:
    """Integer class indices, one per sample: what top-1/top-5 accuracy needs."""
    return labels is not None and labels.ndim == 1 and labels.dtype.kind in "iu"


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
