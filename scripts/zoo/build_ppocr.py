"""PP-OCRv4 text detection (DB, segmentation-like) and recognition (CRNN/SVTR + CTC): the ONNX
files shipped in rapidocr-onnxruntime 1.4.4, copied unchanged, plus data prepared the way
rapidocr prepares it: BGR, x/255, (x - 0.5) / 0.5, NCHW.

ppocrv4-det  x [N,3,H,W] (H, W multiples of 32; data: 320x320) -> probability map [N,1,H,W]
ppocrv4-rec  x [N,3,48,W] (data: W=320, line resized to height 48, right-padded with 0)
             -> per-step softmax [N, W/8, 6625]; index 0 = CTC blank, 1..6623 = the characters
             in the ONNX metadata key "character" (one per line), 6624 = space.
"""
import math
import os

import numpy as np
import zoo_common as z
from PIL import Image, ImageDraw, ImageFont

FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"]  # Debian fonts-dejavu-core
DET, REC = 320, (48, 320)
N_REC_CALIB, N_REC_EVAL = 128, 64
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_{}_infer.onnx"


def norm(rgb):
    """uint8 RGB HxWx3 -> float32 3xHxW, BGR, [-1, 1]."""
    return ((rgb[..., ::-1].astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)


def font(rng, lo, hi):
    return ImageFont.truetype(FONTS[rng.integers(len(FONTS))], int(rng.integers(lo, hi)))


def colours(rng):
    ink, paper = int(rng.integers(0, 90)), int(rng.integers(190, 256))
    tint = rng.integers(-25, 26, 3)
    ink, paper = np.clip(ink + tint, 0, 255), np.clip(paper + tint, 0, 255)
    return (tuple(int(v) for v in paper), tuple(int(v) for v in ink)) if rng.random() < 0.8 \
        else (tuple(int(v) for v in ink), tuple(int(v) for v in paper))  # 20% light on dark


def text_line(sentence, rng):
    """Render 1-5 words of a sentence as a tight line image; returns (rgb, text)."""
    words = sentence.split()
    start = int(rng.integers(0, len(words)))
    words = words[start:start + int(rng.integers(1, 6))]
    f = font(rng, 22, 40)
    bg, fg = colours(rng)
    while True:
        txt = " ".join(words)
        x0, y0, x1, y1 = f.getbbox(txt)
        m = int(rng.integers(2, 8))
        w, h = x1 - x0 + 2 * m, y1 - y0 + 2 * m
        if w / h <= REC[1] / REC[0] or len(words) == 1:
            break
        words = words[:-1]
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((m - x0, m - y0), txt, fill=fg, font=f)
    a = np.asarray(img).astype(np.int16) + rng.normal(0, 4, (h, w, 1)).astype(np.int16)
    return np.clip(a, 0, 255).astype(np.uint8), txt


def rec_input(line):
    """rapidocr's resize_norm_img for a [3, 48, 320] input."""
    h, w = line.shape[:2]
    nw = min(REC[1], math.ceil(REC[0] * w / h))
    out = np.zeros((3, REC[0], REC[1]), np.float32)
    out[:, :, :nw] = norm(z.resize(line, nw, REC[0]))
    return out


def det_samples(split, n, rng):
    """Thirds: crops of the scanned text images page() and text() (calib: their left halves,
    eval: their right halves), pages rendered from the split's sentences over lightened crops
    of the split's photos, and plain crops of those photos."""
    docs = []
    for name in ("page", "text"):
        a = z.photo(name)
        half = a.shape[1] // 2
        docs.append(a[:, :half] if split == "calib" else a[:, half:])
    sents = z.sentences(split)
    photos = z.crops(split, n, seed=int(rng.integers(1 << 30)))
    out = []
    for i in range(n):
        if i % 3 == 0:
            doc = docs[(i // 3) % 2]
            h, w = doc.shape[:2]
            side = int(min(h, w) * rng.uniform(0.6, 1.0))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            img = z.resize(doc[y:y + side, x:x + side], DET, DET)
        elif i % 3 == 1:
            bg = z.resize(photos[i], DET, DET).astype(np.float32)
            a = rng.uniform(0.6, 0.9)
            page = Image.fromarray((bg * (1 - a) + 255 * a).astype(np.uint8))
            d = ImageDraw.Draw(page)
            y = int(rng.integers(0, 40))
            while y < DET - 20:
                f = font(rng, 12, 30)
                d.text((int(rng.integers(0, 60)), y), sents[int(rng.integers(len(sents)))],
                       fill=tuple(int(v) for v in rng.integers(0, 90, 3)), font=f)
                y += int(f.size * rng.uniform(1.3, 2.5))
            img = np.asarray(page)
        else:
            img = z.resize(photos[i], DET, DET)
        out.append(norm(img))
    return np.stack(out)


def main():
    out = z.out_dir()
    whl = z.wheel(out, "rapidocr-onnxruntime")
    source = {"packages": [z.wheel_info(whl)], "made_by": "copied unchanged from the wheel"}
    pre = "BGR; x/255; (x - 0.5) / 0.5; NCHW; bilinear resizes as cv2 INTER_LINEAR"

    folder = os.path.join(out, "ppocrv4-det")
    if not z.done(folder):
        rng = np.random.default_rng(10)
        z.extract(whl, MEMBER.format("det"), os.path.join(folder, "ppocrv4-det.onnx"))
        calib, evals = det_samples("calib", z.N_CALIB, rng), det_samples("eval", z.N_EVAL, rng)
        z.finish(folder, {
            "name": "ppocrv4-det", "family": "text detector, DB segmentation-like (PP-OCRv4)",
            "model": "ppocrv4-det.onnx", "format": "onnx",
            "source": {**source, "file_in_package": MEMBER.format("det")},
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 3, "H", "W"],
                        "layout": "NCHW", "batch_axis": 0, "data_shape": [3, DET, DET],
                        "preprocessing": pre + f"; data resized to {DET}x{DET} (rapidocr "
                                           "resizes the shorter side to 736, to multiples of 32)"}],
            "outputs": [{"name": "sigmoid_0.tmp_0", "shape": ["N", 1, "H", "W"],
                         "meaning": "per-pixel text probability"}],
            "data": {"calib_source": "crops of the left halves of skimage.data.page() and text(); "
                                     "pages rendered (PIL, DejaVu fonts) from calib sentences over "
                                     f"lightened crops of {z.CALIB_PHOTOS}; plain crops of those",
                     "eval_source": "crops of the right halves of page() and text(); the same "
                                    f"renderings from eval sentences over {z.EVAL_PHOTOS}; "
                                    "plain crops of those",
                     "labels": None},
            "fidelity": "text boxes after rapidocr's DB post-processing (threshold 0.3 on the map, "
                        "box score >= 0.5, unclip ratio 1.6) matched by IoU between fp32 and "
                        "converted model; or IoU of the maps thresholded at 0.3",
        }, {"x": calib}, {"x": evals})

    folder = os.path.join(out, "ppocrv4-rec")
    if not z.done(folder):
        rng = np.random.default_rng(11)
        z.extract(whl, MEMBER.format("rec"), os.path.join(folder, "ppocrv4-rec.onnx"))
        data = {}
        for split, n in (("calib", N_REC_CALIB), ("eval", N_REC_EVAL)):
            lines = [text_line(s, rng) for s in z.sentences(split)[:n]]
            data[split] = {"x": np.stack([rec_input(a) for a, _ in lines]),
                           "text": np.array([t for _, t in lines])}
        z.finish(folder, {
            "name": "ppocrv4-rec", "family": "text-line recognizer, CRNN-style (SVTR-LCNet + CTC)",
            "model": "ppocrv4-rec.onnx", "format": "onnx",
            "source": {**source, "file_in_package": MEMBER.format("rec")},
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["N", 3, 48, "W"],
                        "layout": "NCHW", "batch_axis": 0, "data_shape": [3, 48, 320],
                        "preprocessing": pre + "; line resized to height 48 keeping its aspect, "
                                               "width <= 320, right-padded with 0"}],
            "outputs": [{"name": "softmax_11.tmp_0", "shape": ["N", "W/8", 6625],
                         "meaning": "CTC class probabilities per step (0 = blank, then the ONNX "
                                    "metadata 'character' list, last = space)"}],
            "data": {"calib_source": "1-5 consecutive words of calib sentences rendered with PIL "
                                     "(6 DejaVu fonts, 22-40 px, dark on light or light on dark)",
                     "eval_source": "the same from eval sentences",
                     "labels": "text", "extra_arrays": {"text": "the rendered string of each row"}},
            "fidelity": "greedy CTC decode (argmax, merge repeats, drop blanks): exact-match rate "
                        "and character error rate against `text` and against the fp32 decode",
        }, data["calib"], data["eval"])


if __name__ == "__main__":
    main()
