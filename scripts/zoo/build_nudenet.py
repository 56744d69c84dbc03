"""NudeNet 320n: a YOLOv8n-style detector (18 body-part classes, exported by Ultralytics 8.2.46),
the ONNX file shipped in nudenet 3.4.2, copied unchanged. Data prepared as nudenet's
_read_image does (pad bottom/right to a square with black, resize to 320x320, x/255, NCHW), in RGB
as Ultralytics models take it. (nudenet 3.4.2 itself passes BGR for 3-channel images: its
cv2.cvtColor(COLOR_RGBA2BGR) swaps R and B, then blobFromImage(swapRB=True) swaps them back.)

Output output0 [N, 22, 2100]: per anchor cx, cy, w, h (input pixels) + 18 class scores
(sigmoid applied); class names are in the ONNX metadata key "names". nudenet keeps anchors with
max score >= 0.2, then class-agnostic NMS (score 0.25, IoU 0.45).
"""
import os

import numpy as np
import zoo_common as z

SIZE = 320


def prep(img):
    return (z.letterbox(img, SIZE, center=False).astype(np.float32) / 255).transpose(2, 0, 1)


def main():
    out = z.out_dir()
    folder = os.path.join(out, "nudenet-320n")
    if z.done(folder):
        return
    import onnx
    whl = z.wheel(out, "nudenet")
    path = z.extract(whl, "nudenet/320n.onnx", os.path.join(folder, "nudenet-320n.onnx"))
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    calib = np.stack([prep(c) for c in z.crops("calib", z.N_CALIB, seed=20, people=True)])
    evals = np.stack([prep(c) for c in z.crops("eval", z.N_EVAL_COUNTED, seed=21, people=True)])
    z.finish(folder, {
        "name": "nudenet-320n", "family": "YOLO detector (YOLOv8n-style, anchor-free, 18 classes)",
        "model": "nudenet-320n.onnx", "format": "onnx",
        "source": {"packages": [z.wheel_info(whl)], "file_in_package": "nudenet/320n.onnx",
                   "onnx_metadata": {k: props[k] for k in ("author", "license", "version")},
                   "made_by": "copied unchanged from the wheel"},
        "inputs": [{"name": "images", "dtype": "float32", "shape": ["batch", 3, "height", "width"],
                    "layout": "NCHW", "batch_axis": 0, "data_shape": [3, SIZE, SIZE],
                    "preprocessing": "RGB; pad bottom/right with 0 to a square; resize to 320x320 "
                                     "(bilinear as cv2 INTER_LINEAR); x/255"}],
        "outputs": [{"name": "output0", "shape": ["batch", 22, 2100],
                     "meaning": "per anchor: cx, cy, w, h in input pixels, then 18 class scores"}],
        "data": {"calib_source": f"crops of skimage.data {z.CALIB_PHOTOS}, every other one a box "
                                 "around the astronaut",
                 "eval_source": f"crops of skimage.data {z.EVAL_PHOTOS}, every other one a box "
                                "around the cameraman",
                 "labels": None},
        "fidelity": "boxes after score threshold + NMS (as nudenet: 0.25 / IoU 0.45), matched "
                    "between fp32 and converted model by class and IoU >= 0.5; max class score "
                    "per image",
    }, {"images": calib}, {"images": evals})


if __name__ == "__main__":
    main()
