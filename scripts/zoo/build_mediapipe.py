"""Three float TFLite models from the mediapipe 0.10.21 wheel (unzipped, not installed),
copied unchanged. All take input_1 [1, S, S, 3] float32 NHWC, RGB in [0, 1], resized as the
ImageToTensorCalculator of MediaPipe's graph for that model does: selfie segmentation stretches
the image to 256x256 (keep_aspect_ratio: false), pose landmark letterboxes it (aspect kept,
centred, black padding), face landmark gets a square face crop. Their weights are stored as
float16 and expanded by DEQUANTIZE ops; activations are float32.
selfie_segmentation.tflite also uses the MediaPipe custom op Convolution2DTransposeBias.
(hand_landmark_full.tflite ships too, but no bundled photo shows a hand: its presence score
stays near 0 on every crop, so it is left out.)
"""
import os

import numpy as np
import zoo_common as z

PEOPLE = (f"crops of skimage.data {z.CALIB_PHOTOS}, every other one a box around the astronaut",
          f"crops of skimage.data {z.EVAL_PHOTOS}, every other one a box around the cameraman")
FACES = ("a quarter: boxes around the astronaut's face; a half: skimage.data.lfw_subset() faces "
         "0-49; a quarter: lfw_subset non-faces 100-149",
         "a quarter: boxes around the cameraman's face (profile, partly hidden by the camera); "
         "a half: lfw_subset faces 50-99; a quarter: lfw_subset non-faces 150-199")
MODELS = {  # name: (file in mediapipe/modules, size, letterbox?, family, outputs, data, fidelity)
    "mediapipe-selfie-segmentation": (
        "selfie_segmentation/selfie_segmentation.tflite", 256, False,
        "segmentation CNN (person mask, MobileNetV3-like encoder + decoder)",
        [("activation_10", [1, 256, 256, 1], "person probability per pixel")], PEOPLE,
        "IoU of the masks thresholded at 0.5; mean abs diff of the probabilities"),
    "mediapipe-pose-landmark": (
        "pose_landmark/pose_landmark_full.tflite", 256, True,
        "landmark regression CNN (39 body keypoints, heatmap and person-mask heads)",
        [("Identity", [1, 195], "39 x (x, y, z, visibility logit, presence logit), x/y/z in "
                                "input pixels"),
         ("Identity_1", [1, 1], "pose presence score"),
         ("Identity_2", [1, 256, 256, 1], "person segmentation logits (range ~ +-1e3)"),
         ("Identity_3", [1, 64, 64, 39], "keypoint heatmaps"),
         ("Identity_4", [1, 117], "39 x (x, y, z) world coordinates")], PEOPLE,
        "mean keypoint distance in pixels (Identity, first 33 points) and presence score; "
        "mask IoU for Identity_2"),
    "mediapipe-face-landmark": (
        "face_landmark/face_landmark.tflite", 192, False,
        "landmark regression CNN (468-point face mesh, PReLU)",
        [("conv2d_21", [1, 1, 1, 1404], "468 x (x, y, z), x/y in input pixels"),
         ("conv2d_31", [1, 1, 1, 1], "face presence logit (sigmoid -> score)")], FACES,
        "mean keypoint distance in pixels (conv2d_21) on rows with face=1; presence score "
        "difference; accuracy of sigmoid(conv2d_31) > 0.5 against `face`"),
}
FACE_BOX = {"astronaut": (150, 20, 300, 190), "camera": (160, 60, 280, 190)}  # x0, y0, x1, y1


def face_crops(split, n, seed):
    """Labelled face / non-face images, as described in FACES."""
    from skimage import data
    rng = np.random.default_rng(seed)
    lfw = data.lfw_subset()  # 0-99 faces, 100-199 non-faces, 25x25, floats in [0, 1]
    lfw = lfw if lfw.dtype == np.uint8 else np.round(lfw * 255).astype(np.uint8)
    first = 0 if split == "calib" else 50
    who = "astronaut" if split == "calib" else "camera"
    im, (x0, y0, x1, y1) = z.photo(who), FACE_BOX[who]
    imgs, labels, faces, others = [], [], 0, 0
    for i in range(n):
        if i % 4 == 0:
            h = max(x1 - x0, y1 - y0) * rng.uniform(1.0, 1.5) / 2
            cx = (x0 + x1) / 2 + rng.uniform(-0.1, 0.1) * h
            cy = (y0 + y1) / 2 + rng.uniform(-0.1, 0.1) * h
            a, face = im[int(max(0, cy - h)):int(cy + h), int(max(0, cx - h)):int(cx + h)], 1
        elif i % 4 == 3:
            a, face, others = np.stack([lfw[100 + first + others % 50]] * 3, -1), 0, others + 1
        else:
            a, face, faces = np.stack([lfw[first + faces % 50]] * 3, -1), 1, faces + 1
        imgs.append(np.ascontiguousarray(a[:, ::-1] if rng.random() < 0.5 else a))
        labels.append(face)
    return imgs, np.array(labels, np.uint8)


def main():
    out = z.out_dir()
    whl = z.wheel(out, "mediapipe")
    for k, (name, (member, size, box, family, outputs, sources, fidelity)) in enumerate(
            MODELS.items()):
        folder = os.path.join(out, name)
        if z.done(folder):
            continue
        z.extract(whl, "mediapipe/modules/" + member, os.path.join(folder, name + ".tflite"))
        data, labels = {}, {"labels": None}

        def fit(img, size=size, box=box):
            return z.letterbox(img, size) if box else z.resize(img, size, size)

        for split, n, seed in (("calib", z.N_CALIB, 40 + k), ("eval", z.N_EVAL, 50 + k)):
            if sources is FACES:
                imgs, face = face_crops(split, n, seed)
                data[split] = {"face": face}
                labels = {"labels": "face", "extra_arrays": {"face": "1 = the crop shows a face"}}
            else:
                imgs, data[split] = z.crops(split, n, seed, people=True), {}
            data[split]["input_1"] = np.stack([fit(c) for c in imgs]).astype(np.float32) / 255
        z.finish(folder, {
            "name": name, "family": family + "; TFLite source",
            "model": name + ".tflite", "format": "tflite",
            "source": {"packages": [z.wheel_info(whl)],
                       "file_in_package": "mediapipe/modules/" + member,
                       "made_by": "copied unchanged from the wheel (pip download --no-deps)"},
            "inputs": [{"name": "input_1", "dtype": "float32", "shape": [1, size, size, 3],
                        "layout": "NHWC", "batch_axis": 0,
                        "preprocessing": "RGB; " + (
                            f"letterbox to {size}x{size} (aspect kept, centred, 0 padding" if box
                            else f"resize to {size}x{size} (aspect not kept") +
                            ", bilinear as cv2 INTER_LINEAR); x/255"}],
            "outputs": [{"name": n, "shape": s, "meaning": m} for n, s, m in outputs],
            "data": {"calib_source": sources[0], "eval_source": sources[1], **labels},
            "fidelity": fidelity,
        }, data["calib"], data["eval"])


if __name__ == "__main__":
    main()
