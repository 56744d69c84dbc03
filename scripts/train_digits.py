"""Train the bundled example model, ``examples/digits``, reproducibly.

Why this exists: the example that ships with edgepack (``edgepack build examples/digits --target
raspberrypi``) must come from somewhere anyone can check and rebuild. This script is that source:
it trains a small Keras 3 CNN on scikit-learn's real 8x8 handwritten digits (``load_digits``,
1797 images, pixel values 0..16, bundled with scikit-learn, so no download) and writes every file
the example folder holds:

- ``model.keras``      the trained Functional model; input ``image`` (float32 NHWC, N x 8 x 8 x 1,
                       pixels / 16), output ``probs`` (softmax over the 10 digits)
- ``calibration.npz``  array ``image``: 200 training images (normalized) for int8 calibration
- ``eval.npz``         arrays ``image`` (the 360 held-out test images, normalized) and ``y`` (int64)
- ``labels.txt``       ``0`` .. ``9``, one a line
- ``edgepack.yaml``    the project file that names all of the above

Everything is seeded and TensorFlow runs with deterministic ops on the CPU, so running it twice
gives the same weights and the same accuracy. It takes about 20 seconds on two cores.

Run it from the repository root::

    python scripts/train_digits.py                 # writes into examples/digits/
    python scripts/train_digits.py --out /tmp/dg   # or into another folder
"""

from __future__ import annotations

import os

# These must be set before TensorFlow is imported.
os.environ["TF_DETERMINISTIC_OPS"] = "1"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # train on the CPU, always the same way
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

SEED = 0
SCALE = 1.0 / 16.0  # load_digits pixels are 0..16
N_CALIBRATION = 200
EPOCHS = 60
BATCH_SIZE = 32
FC_UNITS = 128

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "examples" / "digits"

PROJECT_YAML = """\
# The bundled example: a CNN trained on scikit-learn's 8x8 digits (scripts/train_digits.py).
name: digits
version: 1.0.0
model: model.keras
calibration: calibration.npz
eval: eval.npz
labels: labels.txt
normalization: {scale: 0.0625, mean: [0.0], std: [1.0], color_order: GRAY}
targets: [raspberrypi]
"""


def load_data():
    """The fixed, stratified 80/20 split, normalized to float32 NHWC."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) * np.float32(SCALE))[..., np.newaxis]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def build_model() -> keras.Model:
    """About 72k parameters, nearly all in "fc": enough that the int8 weights, not the few KB of
    flatbuffer overhead, dominate a TFLite file, so full int8 makes it ~3.6x smaller than fp32."""
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(FC_UNITS, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder to write the example into (default: examples/digits)")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_inter_op_parallelism_threads(1)

    x_train, x_test, y_train, y_test = load_data()

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0)

    probs = model.predict(x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    # Save an uncompiled copy: no optimizer state in the file (3x smaller), and nothing a
    # consumer that loads with compile=False would have to skip.
    clean = build_model()
    clean.set_weights(model.get_weights())
    clean.save(out / "model.keras")
    calib_idx = np.random.default_rng(SEED).choice(len(x_train), N_CALIBRATION, replace=False)
    np.savez_compressed(out / "calibration.npz",
                        image=np.ascontiguousarray(x_train[np.sort(calib_idx)], dtype=np.float32))
    np.savez_compressed(out / "eval.npz", image=np.ascontiguousarray(x_test, dtype=np.float32),
                        y=y_test.astype(np.int64))
    (out / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)), encoding="utf-8")
    (out / "edgepack.yaml").write_text(PROJECT_YAML, encoding="utf-8")

    print(f"wrote {out}: model.keras, calibration.npz ({N_CALIBRATION}), "
          f"eval.npz ({len(x_test)}), labels.txt, edgepack.yaml")
    print(f"parameters: {model.count_params()}")
    print(f"fp32 test accuracy: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
