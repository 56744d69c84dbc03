"""Calibration and evaluation data: loading, checking against the model, seeded sampling.

Accepted: an ``.npz`` with arrays named after the model's inputs (or ``x`` for a single input),
one row per sample on axis 0, optional labels ``y``; a folder of ``.npy`` files (one per input
name, or samples/batches of the single input, plus an optional ``y.npy``); or a folder of
images for a single image input, preprocessed by a recipe that is recorded on the Dataset
(``images``, ``preprocess``). Arrays are never unpickled.

Not every input stacks samples on axis 0: an RNN state ``[layers, batch, hidden]`` has its
batch on axis 1, and a scalar input (a sample rate, rank 0) has none. Stored rows go back to
the model's batch axis, which the data file declares (an array ``<input>.batch_axis``), or
the project (``batch_axis: {state: 1}``), or else the model's shape shows
(``signature.batch_axis``); a scalar input's rows are one value per sample, shape (N,).

Data that does not fit the model is refused with the reason, because a silently reshaped or
mis-scaled calibration set is exactly how int8 accuracy collapses without anyone noticing.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field, replace
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..signature import BATCH_NAMES, Signature, TensorSpec, batch_axis
from .images import list_images, read_images
from .preprocess import Preprocessing, resolve

LABEL_KEYS = ("y", "labels", "label")
#: an array ``<input>.batch_axis`` in a data file declares that input's batch axis
AXIS_SUFFIX = ".batch_axis"

#: an input's batch axis: where its samples lie in a batch; None for a scalar input
BatchAxes = dict[str, int | None]


@dataclass
class Dataset:
    """Model inputs (by input name, as the model takes a batch of them) and optional labels.

    Each input holds its samples along its batch axis (``batch_axes``, 0 when not named
    there): a ``[2, N, 128]`` state has them on axis 1; a scalar input (axis None) holds one
    value per sample, shape (N,). ``preprocessing`` says what turned image files into these
    arrays (None for arrays given as they are), so the report and artifact metadata can
    state it.
    """

    source: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    preprocessing: dict[str, Any] | None = None
    batch_axes: BatchAxes = field(default_factory=dict)
    #: how many samples the file or folder held when these were drawn from it (None: these
    #: are all of it, or a part taken in memory): the accuracy fallback may draw more
    drawn_from: int | None = None

    def axis(self, name: str) -> int:
        """The axis of ``inputs[name]`` its samples lie on (0 for a scalar input's values)."""
        return self.batch_axes.get(name, 0) or 0

    def is_scalar(self, name: str) -> bool:
        return name in self.batch_axes and self.batch_axes[name] is None

    def __len__(self) -> int:
        name, first = next(iter(self.inputs.items()))
        return first.shape[self.axis(name)]

    def take(self, n: int, seed: int) -> Dataset:
        """At most ``n`` samples, drawn without replacement with ``seed`` (all if fewer)."""
        if n >= len(self):
            return self
        return self._rows(sample_indices(len(self), n, seed))

    def head(self, n: int) -> Dataset:
        return self._rows(slice(0, n))

    def _rows(self, rows: np.ndarray | slice) -> Dataset:
        inputs = {k: v[(slice(None),) * self.axis(k) + (rows,)] for k, v in self.inputs.items()}
        return Dataset(self.source, inputs, None if self.labels is None else self.labels[rows],
                       self.preprocessing, self.batch_axes)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Sample ``i`` as a batch of one, at each input's batch axis (a scalar as a 0-d
        array): what calibration and latency loops feed the model."""
        return {k: np.asarray(v[i]) if self.is_scalar(k)
                else v[(slice(None),) * self.axis(k) + (slice(i, i + 1),)]
                for k, v in self.inputs.items()}

    def samples(self) -> list[dict[str, np.ndarray]]:
        """One batch-of-one feed per sample (``sample``)."""
        return [self.sample(i) for i in range(len(self))]


def sample_indices(n: int, k: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` samples drawn with ``seed`` (all when ``k`` is None or
    not smaller): loading a bounded subset picks exactly what ``take`` would pick from all."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def load_dataset(path: str | Path, signature: Signature, *,
                 preprocessing: Preprocessing | None = None,
                 class_names: list[str] | None = None, max_samples: int | None = None,
                 seed: int = 0, batch_axes: dict[str, int] | None = None) -> Dataset:
    """Read ``path`` and check it against ``signature``'s inputs.

    ``preprocessing`` and ``class_names`` (the project's labels, naming class subfolders) apply
    to a folder of images. At most ``max_samples`` samples are kept, drawn with ``seed``; image
    files beyond them are never decoded. ``batch_axes`` (the project's ``batch_axis``) says
    where inputs whose batch is not on axis 0 take their samples; the data file's own
    ``<input>.batch_axis`` arrays say the same.
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
    axes = resolve_batch_axes(p, signature, {**_declared_axes(p, arrays), **(batch_axes or {})})
    inputs = _match_inputs(p, arrays, signature, axes)
    n = {len(v) for v in inputs.values() if v.ndim}
    if len(n) > 1:
        raise DataError(f"inputs have different sample counts {sorted(n)}", path=p)
    count = n.pop() if n else 1
    if count == 0:
        raise DataError("no samples", path=p)
    inputs = {k: np.full(count, v) if v.ndim == 0 else v for k, v in inputs.items()}
    if labels is not None:
        labels = _check_labels(p, labels, count)
    moved = {k: np.moveaxis(v, 0, axes[k]) if axes[k] else v for k, v in inputs.items()}
    data = Dataset(str(p), moved, labels, None, {k: axes[k] for k in moved})
    return data if max_samples is None else replace(data.take(max_samples, seed),
                                                    drawn_from=len(data))


def resolve_batch_axes(path: Path | None, signature: Signature,
                       declared: dict[str, int]) -> BatchAxes:
    """Each input's batch axis: None for a scalar (rank 0), else as ``declared``, else as the
    model's shape shows it (``signature.batch_axis``)."""
    names = signature.input_names
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise DataError(f"batch_axis names unknown input(s) {', '.join(unknown)}", path=path,
                        hint=f"the model's inputs: {', '.join(names)}")
    axes: BatchAxes = {}
    for spec in signature.inputs:
        axis = declared.get(spec.name)
        if spec.rank == 0 or axis is None:
            axes[spec.name] = batch_axis(spec.shape)
        elif -spec.rank <= axis < spec.rank:
            axes[spec.name] = axis % spec.rank
        else:
            raise DataError(f"batch_axis {axis} of input '{spec.name}' is not one of its "
                            f"{spec.rank} axes ({spec.shape_str()})", path=path)
    return axes


def fixed_shapes(signature: Signature, given: dict[str, tuple[int, ...]],
                 data: Dataset | None) -> dict[str, tuple[int, ...]]:
    """Input shapes with every dimension fixed: the ``given`` ones as they are; in the other
    inputs a dimension a given shape names (``batch``, ``seq`` shared by token ids and their
    mask) takes that size, and with ``data`` every other dynamic dimension takes the size of
    one of its samples (batch 1). Inputs still dynamic after that are left out."""
    named: dict[str, int] = {}
    for name, shape in given.items():
        dims = signature.input(name).shape
        if len(dims) == len(shape):
            named.update((d, v) for d, v in zip(dims, shape, strict=True)
                         if isinstance(d, str) and d != "?" and d not in named)
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in signature.inputs:
        if spec.name in given:
            shapes[spec.name] = tuple(given[spec.name])
            continue
        dims = [named.get(d, d) if isinstance(d, str) else d for d in spec.shape]
        if data is not None and spec.name in data.inputs:
            row = data.sample(0)[spec.name].shape
            dims = [row[i] if isinstance(d, str) and len(row) == len(dims) else d
                    for i, d in enumerate(dims)]
        if all(isinstance(d, int) for d in dims):
            shapes[spec.name] = tuple(int(d) for d in dims)
    return shapes


def _declared_axes(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """The ``<input>.batch_axis`` arrays of a data file, removed from ``arrays``."""
    declared = {}
    for key in [k for k in arrays if k.endswith(AXIS_SUFFIX)]:
        value = arrays.pop(key)
        if value.size != 1 or value.dtype.kind not in "iu":
            raise DataError(f"'{key}' must hold one integer (the input's batch axis), got "
                            f"{value.dtype} {_fmt(value.shape)}", path=path)
        declared[key[:-len(AXIS_SUFFIX)]] = int(value.reshape(()))
    return declared


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
    return Dataset(str(path), {spec.name: x}, labels, record, drawn_from=len(found.files))


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
    row = data.sample(i)
    for name in sorted(row):
        sample = np.ascontiguousarray(row[name])
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


def _match_inputs(path: Path, arrays: dict[str, np.ndarray], signature: Signature,
                  axes: BatchAxes) -> dict[str, np.ndarray]:
    """The arrays for the model's inputs, checked, still one row per sample on axis 0."""
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
    return {n: _check_array(path, signature.input(n), a, axes[n]) for n, a in chosen.items()}


def _stack_samples(path: Path, arrays: list[np.ndarray], spec: TensorSpec) -> np.ndarray:
    """Per-sample (no batch dim) or per-batch .npy files of one input, in file-name order."""
    parts = [a[None] if a.ndim == spec.rank - 1 else a for a in arrays]
    try:
        return np.concatenate(parts)
    except ValueError as exc:
        raise DataError(f"the .npy files do not share one shape: {exc}", path=path) from exc


def _check_array(path: Path, spec: TensorSpec, a: np.ndarray, axis: int | None = 0) -> np.ndarray:
    """``a`` (one row per sample on axis 0) checked against ``spec`` whose batch is on
    ``axis`` (None: a scalar input, one value per sample or one for all)."""
    want_float = spec.dtype.startswith("float")
    if want_float and a.dtype.kind not in "f":
        raise DataError(
            f"input '{spec.name}' is {a.dtype} but the model takes {spec.dtype}", path=path,
            hint="store the data already preprocessed (normalized floats) as the model expects")
    real = a.dtype.kind == "f" and spec.quantization is not None  # quantized by the session
    if not want_float and a.dtype.kind not in "iub" and not real:
        raise DataError(f"input '{spec.name}' is {a.dtype} but the model takes {spec.dtype}",
                        path=path)
    if axis is None:
        if a.ndim > 1:
            raise DataError(f"input '{spec.name}' is a scalar but the data has shape "
                            f"{_fmt(a.shape)}", path=path,
                            hint="store one value per sample (shape (N,)) or one for all")
        return a.astype(spec.dtype, copy=False)
    if a.ndim != spec.rank:
        raise DataError(
            f"input '{spec.name}' has shape {_fmt(a.shape)} but the model expects "
            f"{_fmt(spec.shape)} (rank {spec.rank})", path=path,
            hint="the first dimension is the sample index")
    fixed = fixed_batch(spec, axis)
    if fixed is not None:
        raise DataError(fixed[0], path=path, hint=fixed[1])
    expected = spec.shape[:axis] + spec.shape[axis + 1:]
    got = a.shape[1:]
    if not _fits(expected, got):
        hint = _layout_hint(expected, got, spec.layout) or _axis_hint(spec, got)
        raise DataError(f"input '{spec.name}' has shape {_fmt(a.shape)} but the model expects "
                        f"{_fmt(spec.shape)}" + (f" (batch on axis {axis})" if axis else ""),
                        path=path, hint=hint)
    return a.astype(spec.dtype, copy=False)


def fixed_batch(spec: TensorSpec, axis: int) -> tuple[str, str] | None:
    """(why, what to do) when ``spec`` holds a fixed batch of several samples on ``axis``:
    edgepack runs a model on one sample at a time, so such a model runs on none; None when
    the batch holds one sample or is dynamic."""
    size = spec.shape[axis]
    if not isinstance(size, int) or size <= 1:
        return None
    return (f"the model's input '{spec.name}' takes a fixed batch of {size} samples "
            f"({spec.shape_str()}) and edgepack runs it on one sample at a time",
            f"export the model with batch 1 or a dynamic batch dimension; if axis {axis} is "
            f"not its batch, declare the one that is ('{spec.name}{AXIS_SUFFIX}' in the data "
            f"file, or batch_axis in edgepack.yaml)")


def _fits(expected: tuple, got: tuple) -> bool:
    return all(isinstance(e, str) or e == g for e, g in zip(expected, got, strict=True))


def _axis_hint(spec: TensorSpec, got: tuple) -> str | None:
    """How to declare the batch axis when the rows fit the model with the batch on another
    axis that could hold one (dynamic or 1, and no dimension named as the batch left)."""
    for k in range(spec.rank):
        rest = spec.shape[:k] + spec.shape[k + 1:]
        plausible = (isinstance(spec.shape[k], str) or spec.shape[k] == 1) and not any(
            isinstance(d, str) and d.lower() in BATCH_NAMES for d in rest)
        if plausible and _fits(rest, got):
            return (f"rows fit the model with its batch on axis {k}: declare it with an array "
                    f"'{spec.name}{AXIS_SUFFIX}' = {k} in the data file, or "
                    f"batch_axis: {{{spec.name}: {k}}} in edgepack.yaml")
    return None


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
