"""Calibration/eval data: accepted forms, seeded sampling, and refusals with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgepack.data.dataset import load_dataset
from edgepack.errors import DataError
from edgepack.signature import Signature, TensorSpec

SIG = Signature(inputs=(TensorSpec("image", ("batch", 8, 8, 1), "float32", "NHWC"),))


def test_npz_named_after_input(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, image=np.ones((5, 8, 8, 1), np.float32), y=np.arange(5))
    ds = load_dataset(p, SIG)
    assert len(ds) == 5 and ds.labels.tolist() == [0, 1, 2, 3, 4]


def test_npz_x_and_one_hot_labels(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x=np.ones((3, 8, 8, 1), np.float32), y=np.eye(3))
    ds = load_dataset(p, SIG)
    assert list(ds.inputs) == ["image"] and ds.labels.tolist() == [0, 1, 2]


def test_folder_of_samples(tmp_path: Path) -> None:
    for i in range(4):
        np.save(tmp_path / f"s{i}.npy", np.full((8, 8, 1), i, np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 3]))
    ds = load_dataset(tmp_path, SIG)
    assert ds.inputs["image"].shape == (4, 8, 8, 1)
    assert ds.inputs["image"][:, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert ds.labels.tolist() == [0, 1, 2, 3]


def test_seeded_take_is_deterministic(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, image=np.arange(100 * 64, dtype=np.float32).reshape(100, 8, 8, 1))
    ds = load_dataset(p, SIG)
    a, b, c = ds.take(10, 0), ds.take(10, 0), ds.take(10, 1)
    assert np.array_equal(a.inputs["image"], b.inputs["image"])
    assert not np.array_equal(a.inputs["image"], c.inputs["image"])
    assert ds.take(500, 0) is ds


@pytest.mark.parametrize("arrays,needle", [
    ({"image": np.zeros((2, 1, 8, 8), np.float32)}, "transpose"),
    ({"image": np.zeros((2, 8, 8), np.float32)}, "rank 4"),
    ({"image": np.zeros((2, 8, 8, 1), np.int32)}, "int32"),
    ({"image": np.zeros((2, 8, 8, 1), np.float32), "y": np.arange(3)}, "3 labels for 2 samples"),
    ({"image": np.zeros((0, 8, 8, 1), np.float32)}, "no samples"),
])
def test_refusals(tmp_path: Path, arrays: dict, needle: str) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=needle) as info:
        load_dataset(p, SIG)
    assert "d.npz" in str(info.value)


def test_pickled_objects_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npz"
    np.savez(p, image=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="object arrays are refused"):
        load_dataset(p, SIG)


def test_not_an_npz(tmp_path: Path) -> None:
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(p, SIG)
