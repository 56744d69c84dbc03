"""Shared fixtures: tiny real models made once per session (nothing binary is committed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "digits"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Builds made by session fixtures cache under a temporary folder, never in ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEPACK_CACHE", str(tmp_path_factory.mktemp("edgepack-cache")))
        yield


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from an empty build and step cache: no test reuses another's steps
    (a test that breaks a converter must see it run), and none writes to ~/.cache."""
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path_factory.mktemp("cache")))


def _digit_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable 10-class 8x8x1 task: class template + noise, values in [0, 1)."""
    templates = np.random.default_rng(0).random((10, 8, 8, 1)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = 0.7 * templates[y] + 0.3 * rng.random((n, 8, 8, 1)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained Keras CNN (8x8x1 -> 10 classes, ~3k parameters) saved as .keras."""
    from edgepack.quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    model = keras.Model(inp, x)
    model.compile("adam", "sparse_categorical_crossentropy")
    xs, ys = _digit_like(512, 1)
    model.fit(xs, ys, epochs=8, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """calibration.npz (input 'image') and eval.npz (image + labels y) for ``tiny_keras``."""
    folder = tmp_path_factory.mktemp("data")
    xc, _ = _digit_like(100, 2)
    xe, ye = _digit_like(200, 3)
    np.savez(folder / "calibration.npz", image=xc)
    np.savez(folder / "eval.npz", image=xe, y=ye)
    return {"calibration": folder / "calibration.npz", "eval": folder / "eval.npz"}


@pytest.fixture(scope="session")
def tiny_savedmodel(tiny_keras: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgepack.formats.keras import KerasFormat

    path = tmp_path_factory.mktemp("sm") / "tiny_savedmodel"
    KerasFormat().load(tiny_keras).export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def tiny_build(tiny_keras: Path, tiny_data: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real build folder of ``tiny_keras`` for raspberrypi: int8 TFLite and int8 ONNX, each
    with its fp32 reference."""
    import edgepack

    out = tmp_path_factory.mktemp("tiny-build") / "tiny-rpi"
    report = edgepack.build(tiny_keras, "raspberrypi", calibration=tiny_data["calibration"],
                            evaluation=tiny_data["eval"], output=out, runs=5)
    assert report.passed, "the tiny model must pass its budget to be packaged"
    return out
