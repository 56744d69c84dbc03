"""How much does edgepack's timing add to what it times? Target: <= 3% at p50 on a ~1 ms model.

Why this exists: every latency in a report is a ``Session.run`` timed by
``validate.latency.time_runs``, so the adapter's own work (ordering inputs by name, checking
shapes, casting, (de)quantizing, copying outputs) is inside the number. That is deliberate (an app
pays it too), but it must stay small next to the model, or a report would describe edgepack
rather than the runtime. This script measures it per runtime (LiteRT, ONNX Runtime, OpenVINO).

What it does:

1. Builds one small CNN (Conv 3x3 x3 + global average pool + Dense + softmax, sized so fp32
   inference takes about 1 ms on 2 threads) in Keras, converts it to TFLite (the TFLite
   converter), writes the same network as NCHW ONNX with ``onnx.helper`` from the Keras weights
   (tf2onnx is not part of the pin set) and converts that ONNX to OpenVINO IR
   (``openvino.convert_model`` + ``save_model(compress_to_fp16=False)``). Each artifact is
   checked against Keras (max abs error <= 1e-4 on softmax outputs) so all three compute the
   same thing.
2. Per runtime, loads ONE session (several live sessions in one process slow each other down)
   and alternates rounds of (a) ``time_runs(session, feed)`` -- edgepack's timing -- and (b) a
   bare loop calling the raw interpreter / InferenceSession / InferRequest directly with
   arrays prepared beforehand, each call timed with ``perf_counter`` exactly as ``time_runs``
   times one. The order of (a) and (b) flips every round, so a noisy phase of the machine hits
   both alike.
3. Prints bare p50 and edgepack p50 pooled over all rounds, and the overhead as the median of
   the per-round overheads: each round's pair ran a fraction of a second apart, so a phase in
   which other processes share the cores slows both sides of a pair, while it can bias pooled
   percentiles. The pooled overhead is printed too; the two should agree on a quiet machine.
   The load average at the start is printed: on a busy machine, rerun.

Run it from the repository root (about a minute on 2 cores)::

    .venv/bin/python scripts/bench/harness_overhead.py
    .venv/bin/python scripts/bench/harness_overhead.py --threads 2 --rounds 20 --runs 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.quiet import captured, import_tensorflow
from edgepack.runtimes import RuntimeOptions, get_runtime
from edgepack.runtimes.base import Session
from edgepack.validate.latency import time_runs

CHECK_ATOL = 1e-4  # fp32 engines differ by float reordering only (~1e-6 on softmax outputs)


# ------------------------------------------------------------------------------------ the model

def build_keras(size: int, width: int) -> Any:
    """(size x size x 3) -> 3 valid 3x3 convs (the 2nd with stride 2) -> GAP -> Dense -> softmax."""
    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(width, 3, activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(2 * width, 3, strides=2, activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(2 * width, 3, activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, out)


def to_tflite(model: Any, folder: Path) -> Path:
    tf = import_tensorflow()
    saved = folder / "saved_model"
    model.export(str(saved), verbose=False)
    with captured():
        data = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    path = folder / "cnn.fp32.tflite"
    path.write_bytes(data)
    return path


def to_onnx(model: Any, folder: Path) -> Path:
    """The same network as NCHW ONNX (opset 17), weights taken from the Keras layers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []
    src = "x"
    for name, stride in (("c1", 1), ("c2", 2), ("c3", 1)):
        kernel, bias = model.get_layer(name).get_weights()  # HWIO -> OIHW
        inits += [numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), f"{name}_w"),
                  numpy_helper.from_array(bias, f"{name}_b")]
        nodes += [helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [f"{name}_c"],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"{name}_c"], [f"{name}_r"])]
        src = f"{name}_r"
    kernel, bias = model.get_layer("probs").get_weights()
    inits += [numpy_helper.from_array(kernel, "d_w"), numpy_helper.from_array(bias, "d_b")]
    nodes += [helper.make_node("GlobalAveragePool", [src], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "d_w", "d_b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    _, size, _, channels = model.input_shape
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    path = folder / "cnn.fp32.onnx"
    onnx.save(proto, path)
    return path


def to_openvino(onnx_path: Path, folder: Path) -> Path:
    import openvino as ov

    path = folder / "cnn.fp32.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(path), compress_to_fp16=False)
    return path


# ------------------------------------------------------------------------------------ bare loops

def bare_call(session: Session, x: np.ndarray) -> Callable[[], Any]:
    """One inference through the runtime's own API, everything prepared beforehand."""
    native = session.native  # type: ignore[attr-defined]
    if session.runtime == "litert":
        in_idx = native.get_input_details()[0]["index"]
        out_idx = native.get_output_details()[0]["index"]

        def litert() -> Any:
            native.set_tensor(in_idx, x)
            native.invoke()
            return native.get_tensor(out_idx)
        return litert
    if session.runtime == "onnxruntime":
        feed = {native.get_inputs()[0].name: x}
        fetch = [native.get_outputs()[0].name]
        return lambda: native.run(fetch, feed)
    if session.runtime == "openvino":
        import openvino as ov

        # the cheapest call there is: input tensor set once, then infer() and read the output
        request = native.create_infer_request()
        request.set_input_tensor(0, ov.Tensor(x, shared_memory=True))

        def openvino() -> Any:
            request.infer()
            return request.get_output_tensor(0).data
        return openvino
    raise ValueError(session.runtime)


def time_bare(call: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    """Timed exactly as ``time_runs`` times ``Session.run``: perf_counter around each call."""
    for _ in range(warmup):
        call()
    times = []
    clock = time.perf_counter
    for _ in range(runs):
        t0 = clock()
        call()
        times.append(clock() - t0)
    return times


def interleaved(session: Session, feed: dict[str, np.ndarray], rounds: int, runs: int,
                warmup: int) -> tuple[list[float], list[float], list[float]]:
    """(bare times, edgepack times, per-round overhead) over alternating rounds."""
    x = np.ascontiguousarray(next(iter(feed.values())))
    call = bare_call(session, x)
    bare: list[float] = []
    edge: list[float] = []
    ratios: list[float] = []
    time_runs(session, feed, warmup=warmup, runs=1)
    time_bare(call, warmup, 1)
    for r in range(rounds):
        order = ("bare", "edge") if r % 2 == 0 else ("edge", "bare")
        got: dict[str, list[float]] = {}
        for variant in order:
            if variant == "bare":
                got[variant] = time_bare(call, warmup=5, runs=runs)
            else:
                got[variant] = time_runs(session, feed, warmup=5, runs=runs)
        bare += got["bare"]
        edge += got["edge"]
        ratios.append(float(np.median(got["edge"]) / np.median(got["bare"])) - 1)
    return bare, edge, ratios


# ------------------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="input height and width")
    ap.add_argument("--width", type=int, default=48, help="filters of the first conv")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per variant per round")
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    load = os.getloadavg()[0]

    model = build_keras(args.size, args.width)
    x_nhwc = np.random.default_rng(0).random((1, args.size, args.size, 3), dtype=np.float32)
    ref = np.asarray(model(x_nhwc, training=False))
    with tempfile.TemporaryDirectory(prefix="edgepack-overhead-") as tmp:
        folder = Path(tmp)
        onnx_path = to_onnx(model, folder)
        artifacts = [("litert", to_tflite(model, folder), x_nhwc),
                     ("onnxruntime", onnx_path, x_nhwc.transpose(0, 3, 1, 2).copy()),
                     ("openvino", to_openvino(onnx_path, folder),
                      x_nhwc.transpose(0, 3, 1, 2).copy())]
        rows = []
        for name, path, x in artifacts:
            # f32 for OpenVINO: the check below compares with Keras; the overhead is the same
            options = RuntimeOptions(threads=args.threads,
                                     precision_hint="f32" if name == "openvino" else None)
            session = get_runtime(name).load(str(path), options)
            feed = {session.signature.input_names[0]: x}
            err = float(np.max(np.abs(next(iter(session.run(feed).values())) - ref)))
            if err > CHECK_ATOL:
                raise SystemExit(f"{name}: artifact differs from Keras by {err:.3g}")
            bare, edge, ratios = interleaved(session, feed, args.rounds, args.runs, args.warmup)
            b50, e50 = float(np.median(bare)) * 1e3, float(np.median(edge)) * 1e3
            rows.append((name, session.runtime_version, b50, e50, 100 * (e50 / b50 - 1),
                         100 * float(np.median(ratios))))
            del session

    print(f"harness overhead: {args.size}x{args.size}x3 CNN, fp32, {args.threads} threads, "
          f"{args.rounds} interleaved rounds x {args.runs} runs per variant; load average "
          f"at start {load:.2f} on {os.cpu_count()} cores")
    print(f"{'runtime':<12} {'version':<22} {'bare p50 ms':>12} {'edgepack p50 ms':>16} "
          f"{'overhead %':>11} {'(pooled p50s) %':>16}")
    for name, version, b50, e50, pooled, per_round in rows:
        print(f"{name:<12} {version:<22} {b50:>12.4f} {e50:>16.4f} {per_round:>+11.2f} "
              f"{pooled:>+16.2f}")


if __name__ == "__main__":
    main()
