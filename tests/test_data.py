"""Calibration/eval data: accepted forms, seeded sampling, and refusals with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgepack.data.dataset import load_dataset
from edgepack.data.random_inputs import random_inputs
from edgepack.errors import DataError, UsageError
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
    part = load_dataset(p, SIG, max_samples=10, seed=0)  # the draw take() makes
    assert np.array_equal(part.inputs["image"], a.inputs["image"]) and part.drawn_from == 100
    assert ds.drawn_from is None and a.drawn_from is None


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


# -- inputs that are not a batch on axis 0: an RNN state, a scalar ---------------------------
RNN = Signature(inputs=(TensorSpec("input", ("batch", 6), "float32"),
                        TensorSpec("state", (2, "batch", 3), "float32"),
                        TensorSpec("sr", (), "int64")))


def _rnn_rows(n: int) -> dict[str, np.ndarray]:
    """Rows as a data file stores them: one per sample on axis 0 (state [N, 2, 3], sr [N])."""
    rng = np.random.default_rng(0)
    return {"input": rng.standard_normal((n, 6)).astype(np.float32),
            "state": rng.standard_normal((n, 2, 3)).astype(np.float32),
            "sr": np.full(n, 16000, np.int64)}


def test_state_rows_go_to_the_models_batch_axis_and_a_scalar_gets_one_value_each(
        tmp_path: Path) -> None:
    p = tmp_path / "rnn.npz"
    rows = _rnn_rows(5)
    np.savez(p, **rows, speech=np.ones(5, np.uint8))
    ds = load_dataset(p, RNN)
    assert len(ds) == 5
    assert ds.inputs["state"].shape == (2, 5, 3) and ds.inputs["sr"].shape == (5,)
    one = ds.sample(3)
    assert one["input"].shape == (1, 6) and one["sr"].shape == ()
    assert np.array_equal(one["state"][:, 0], rows["state"][3])
    assert [s["state"].shape for s in ds.samples()] == [(2, 1, 3)] * 5
    picked = ds.take(2, seed=0)
    assert picked.inputs["state"].shape == (2, 2, 3) and picked.inputs["sr"].shape == (2,)
    assert ds.head(4).inputs["state"].shape == (2, 4, 3)


def test_a_scalar_stored_once_serves_every_sample(tmp_path: Path) -> None:
    p = tmp_path / "rnn.npz"
    rows = _rnn_rows(4)
    np.savez(p, input=rows["input"], state=rows["state"], sr=np.int64(8000))
    ds = load_dataset(p, RNN)
    assert ds.inputs["sr"].tolist() == [8000] * 4


@pytest.mark.parametrize("where", ["file", "project"])
def test_a_declared_batch_axis_wins_over_the_shape(tmp_path: Path, where: str) -> None:
    """A time-major state [T, batch, 3] with unnamed dims looks batch-first; the data file
    (``state.batch_axis``) or the project (``batch_axis: {state: 1}``) says otherwise."""
    sig = Signature(inputs=(TensorSpec("state", ("?", "?", 3), "float32"),))
    rows = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)  # 5 samples of [T=4, 3]
    p = tmp_path / "d.npz"
    if where == "file":
        np.savez(p, state=rows, **{"state.batch_axis": np.int64(1)})
        ds = load_dataset(p, sig)
    else:
        np.savez(p, state=rows)
        ds = load_dataset(p, sig, batch_axes={"state": 1})
    assert ds.inputs["state"].shape == (4, 5, 3)
    assert np.array_equal(ds.sample(2)["state"][:, 0], rows[2])


def test_rows_that_fit_another_batch_axis_say_how_to_declare_it(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, state=np.zeros((4, 2, 3), np.float32), x=np.zeros((4, 6), np.float32))
    sig = Signature(inputs=(TensorSpec("state", (2, 1, 3), "float32"),
                            TensorSpec("x", (1, 6), "float32")))
    assert load_dataset(p, sig).inputs["state"].shape == (2, 4, 3)  # [2, 1, 3]: axis 1 shows
    np.savez(p, state=np.zeros((4, 7, 2, 3), np.float32))
    sig = Signature(inputs=(TensorSpec("state", ("time", 2, "b2", 3), "float32"),))
    with pytest.raises(DataError, match=r"'state.batch_axis' = 2 .* batch_axis: \{state: 2\}"):
        load_dataset(p, sig)
    assert load_dataset(p, sig, batch_axes={"state": 2}).inputs["state"].shape == (7, 2, 4, 3)
    with pytest.raises(DataError, match="unknown input"):
        load_dataset(p, sig, batch_axes={"nope": 1})


def test_a_fixed_batch_of_several_samples_is_refused_before_any_run(tmp_path: Path) -> None:
    """A model exported with its training batch (4) cannot run one sample: the data check
    says so and how to fix it, instead of the runtime failing on the first sample."""
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((32, 3, 8, 8), np.float32))
    sig = Signature(inputs=(TensorSpec("x", (4, 3, 8, 8), "float32", "NCHW"),))
    with pytest.raises(DataError, match="fixed batch of 4 samples") as info:
        load_dataset(p, sig)
    assert "d.npz" in str(info.value) and "dynamic batch" in str(info.value.hint)
    one = Signature(inputs=(TensorSpec("x", (1, 3, 8, 8), "float32", "NCHW"),))
    assert load_dataset(p, one).inputs["x"].shape == (32, 3, 8, 8)
    with pytest.raises(UsageError, match="fixed batch of 4 samples") as info:  # without data
        random_inputs(sig, tmp_path / "m.onnx", 8, 0)
    assert "m.onnx" in str(info.value)
    assert random_inputs(one, tmp_path / "m.onnx", 8, 0)["x"].shape == (8, 3, 8, 8)


def test_a_scalar_with_rows_of_values_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "rnn.npz"
    rows = _rnn_rows(3)
    np.savez(p, **{**rows, "sr": np.zeros((3, 2), np.int64)})
    with pytest.raises(DataError, match="'sr' is a scalar"):
        load_dataset(p, RNN)


def test_fixed_shapes_share_named_dims_and_take_the_rest_from_the_data(tmp_path: Path) -> None:
    """``--input-shape input_ids:1x128`` fixes the mask's ``batch`` and ``seq`` too; for a
    static-shape target the dims nobody gave come from a data sample (batch 1)."""
    from edgepack.data.dataset import fixed_shapes

    tokens = Signature(inputs=(TensorSpec("input_ids", ("batch", "seq"), "int64"),
                               TensorSpec("attention_mask", ("batch", "seq"), "int64"),
                               TensorSpec("image", ("N", 3, "h", "w"), "float32")))
    given = {"input_ids": (1, 128)}
    assert fixed_shapes(tokens, given, None) == {"input_ids": (1, 128),
                                                 "attention_mask": (1, 128)}
    p = tmp_path / "d.npz"
    np.savez(p, **_rnn_rows(3))
    data = load_dataset(p, RNN)
    assert fixed_shapes(RNN, {}, data) == {"input": (1, 6), "state": (2, 1, 3), "sr": ()}
