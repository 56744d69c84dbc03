"""Check every model of the zoo: it loads (onnxruntime / ai_edge_litert), its inputs are the
arrays of calib.npz / eval.npz, no eval row repeats a calib row, and it runs on eval row 0.
Prints one sanity figure per model; exits 1 if anything failed.  Usage: verify.py OUT_DIR

Feeding row i: take arr[i] of each input and put the batch axis back where meta.json's
"batch_axis" says (0 for most; silero-vad's state has it at 1, its sr is a scalar).
"""
import ast
import glob
import hashlib
import json
import os
import sys
import time

import numpy as np


def feed(data, inputs, i):
    return {s["name"]: np.asarray(data[s["name"]][i]) if s["batch_axis"] is None
            else np.expand_dims(data[s["name"]][i], s["batch_axis"]) for s in inputs}


class Model:
    def __init__(self, path):
        if path.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter
            self.it = Interpreter(model_path=path, num_threads=os.cpu_count())
            self.it.allocate_tensors()
            self.ins = {d["name"]: d for d in self.it.get_input_details()}
            self.outs = [d["name"] for d in self.it.get_output_details()]
        else:
            import onnxruntime as ort
            self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.ins = {d.name: d for d in self.sess.get_inputs()}
            self.outs = [d.name for d in self.sess.get_outputs()]

    def __call__(self, x):
        if hasattr(self, "sess"):
            return dict(zip(self.outs, self.sess.run(None, x), strict=True))
        for name, v in x.items():
            self.it.set_tensor(self.ins[name]["index"], v)
        self.it.invoke()
        return {d["name"]: self.it.get_tensor(d["index"]) for d in self.it.get_output_details()}


def ctc_decode(probs, chars):
    idx = probs.argmax(-1)
    return "".join(chars[k] for j, k in enumerate(idx) if k and (j == 0 or k != idx[j - 1]))


def nms_classes(out0, score=0.25, iou=0.45):
    """nudenet-style decode: anchors with max class score >= score, class-agnostic NMS; returns
    the class index of every kept box."""
    a = out0[0].T                                   # [anchors, 4 + classes]
    a = a[a[:, 4:].max(1) >= score]
    s = a[:, 4:].max(1)
    xy = np.c_[a[:, :2] - a[:, 2:4] / 2, a[:, :2] + a[:, 2:4] / 2]
    area = (xy[:, 2] - xy[:, 0]) * (xy[:, 3] - xy[:, 1])
    keep, order = [], np.argsort(-s)
    while len(order):
        k, order = order[0], order[1:]
        keep.append(k)
        lo, hi = np.maximum(xy[order, :2], xy[k, :2]), np.minimum(xy[order, 2:], xy[k, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        order = order[inter / (area[order] + area[k] - inter + 1e-9) < iou]
    return [int(a[k, 4:].argmax()) for k in keep]


def sanity(name, model, path, ev, inputs, y):
    """One figure that shows the model computes something sensible on real data."""
    if name.startswith("efficientnet"):
        p = np.exp(y["logits"][0] - y["logits"][0].max())
        return f"eval row 0: top-1 class {p.argmax()}, p={p.max() / p.sum():.2f}"
    if name.startswith("minilm"):
        y1 = model(feed(ev, inputs, 1))
        e0, e1 = y["sentence_embedding"][0], y1["sentence_embedding"][0]
        return f"|emb|={np.linalg.norm(e0):.3f}, cos(row0, row1)={float(e0 @ e1):.3f}"
    if name == "ppocrv4-det":
        return f"eval row 0: {float((y['sigmoid_0.tmp_0'] > 0.3).mean()):.1%} of pixels > 0.3"
    if name == "ppocrv4-rec":
        chars = ["blank"] + model.sess.get_modelmeta().custom_metadata_map[
            "character"].splitlines() + [" "]
        got = [ctc_decode(model({"x": ev["x"][i:i + 1]})["softmax_11.tmp_0"][0], chars)
               for i in range(len(ev["x"]))]
        ok = np.mean([g == t for g, t in zip(got, ev["text"], strict=True)])
        return f"row 0 {str(ev['text'][0])!r} -> {got[0]!r}; exact match on eval {ok:.1%}"
    if name.startswith("nudenet"):
        import onnx
        props = onnx.load(path, load_external_data=False).metadata_props
        names = ast.literal_eval({p.key: p.value for p in props}["names"])
        found = [names[c] for r in range(len(ev["images"]))
                 for c in nms_classes(model({"images": ev["images"][r:r + 1]})["output0"])]
        return (f"{len(found)} boxes on {len(ev['images'])} eval images, e.g. "
                f"{sorted(set(found))[:3]}")
    if name == "silero-vad":
        p = np.array([model(feed(ev, inputs, i))["output"][0, 0] for i in range(len(ev["sr"]))])
        acc = np.mean((p > 0.5) == (ev["speech"] == 1))
        return f"row 0 p={p[0]:.2f}; accuracy vs `speech` on {len(p)} eval steps {acc:.1%}"
    if name == "mediapipe-selfie-segmentation":
        return f"eval row 0: person mask covers {float((y['activation_10'] > 0.5).mean()):.1%}"
    if name == "mediapipe-face-landmark":
        p = [1 / (1 + np.exp(-model({"input_1": ev["input_1"][i:i + 1]})["conv2d_31"].item()))
             for i in range(len(ev["face"]))]
        acc = np.mean((np.array(p) > 0.5) == (ev["face"] == 1))
        return f"row 0 face={ev['face'][0]} p={p[0]:.2f}; accuracy vs `face` on eval {acc:.1%}"
    if name == "mediapipe-pose-landmark":
        return f"eval row 0: pose presence {float(y['Identity_1'].ravel()[0]):.2f}"
    return ""


def rows(data, inputs):
    n = len(data[inputs[0]["name"]])
    return {hashlib.sha1(b"".join(data[s["name"]][i].tobytes() for s in inputs)).hexdigest()
            for i in range(n)}


def check(folder):
    meta = json.load(open(os.path.join(folder, "meta.json")))
    path = os.path.join(folder, meta["model"])
    model = Model(path)
    inputs = meta["inputs"]
    names = [s["name"] for s in inputs]
    assert sorted(model.ins) == sorted(names), f"model inputs {sorted(model.ins)} != meta {names}"
    data = {}
    for split in ("calib", "eval"):
        with np.load(os.path.join(folder, split + ".npz"), allow_pickle=False) as f:
            data[split] = {k: f[k] for k in f.files}
        lens = {len(data[split][n]) for n in names}
        assert len(lens) == 1, f"{split}: inputs have different row counts {lens}"
        for s in inputs:
            assert str(data[split][s["name"]].dtype) == s["dtype"], f"{split}: {s['name']} dtype"
    shared = rows(data["calib"], inputs) & rows(data["eval"], inputs)
    assert not shared, f"{len(shared)} eval rows are also calib rows"
    t = time.perf_counter()
    y = model(feed(data["eval"], inputs, 0))
    ms = (time.perf_counter() - t) * 1e3
    assert all(np.isfinite(v).all() for v in y.values()), "non-finite output"
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in y.items())
    return (f"OK  {meta['name']:30s} {meta['model_bytes'] / 1e6:6.1f} MB  calib "
            f"{len(data['calib'][names[0]]):4d} / eval {len(data['eval'][names[0]]):4d} rows  "
            f"row 0 in {ms:6.1f} ms -> {shapes}\n      "
            + sanity(meta["name"], model, path, data["eval"], inputs, y))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: verify.py OUT_DIR")
    folders = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(sys.argv[1], "*",
                                                                           "meta.json")))
    failed = 0
    for folder in folders:
        try:
            print(check(folder), flush=True)
        except Exception as e:  # report every model, then fail
            failed += 1
            print(f"FAIL {os.path.basename(folder)}: {type(e).__name__}: {e}", flush=True)
    print(f"{len(folders) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not folders else 0)


if __name__ == "__main__":
    main()
