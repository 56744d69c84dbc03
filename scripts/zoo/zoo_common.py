"""Helpers shared by the build_*.py scripts: real photos and sentences split into disjoint
calibration / evaluation sets, files read out of downloaded wheels, and how a model folder is
written (model file, calib.npz, eval.npz, then meta.json last: its presence marks "done")."""
import glob
import hashlib
import importlib
import inspect
import json
import os
import re
import sys
import zipfile

import numpy as np
from PIL import Image

N_CALIB = int(os.environ.get("ZOO_CALIB", 64))  # image samples per calib.npz
N_EVAL = int(os.environ.get("ZOO_EVAL", 32))    # image samples per eval.npz
# models judged by counting (a classifier's top-1 agreement against a 0.97 bar, a detector's
# detections kept and extra against 0.95 and 0.05): on 32 rows one row is 3% of the agreement
# and the 95% interval of 31/32 spans 0.84-0.99; nudenet finds 29 objects in 32 rows, one 3.4%
N_EVAL_COUNTED = int(os.environ.get("ZOO_EVAL", 160))

# skimage.data images bundled in the scikit-image wheel (no download), split into two sets:
# calibration data come only from CALIB_PHOTOS, evaluation data only from EVAL_PHOTOS.
CALIB_PHOTOS = ["astronaut", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                "brick", "grass", "coins", "page"]
EVAL_PHOTOS = ["camera", "coffee", "stereo_motorcycle", "retina", "colorwheel", "gravel", "moon",
               "clock", "text"]
PERSON = {"astronaut": (0, 0, 380, 512), "camera": (0, 60, 340, 512)}  # x0, y0, x1, y1


def out_dir():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    return os.path.abspath(sys.argv[1])


# ---------------------------------------------------------------------------- photos
def photo(name):
    """uint8 RGB HxWx3 (grey images repeated on 3 channels)."""
    from skimage import data
    a = getattr(data, name)()
    a = np.asarray(a[0] if isinstance(a, tuple) else a)  # stereo_motorcycle: left view
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return np.ascontiguousarray(a[..., :3])


def crops(split, n, seed, people=False):
    """n random crops (scale 0.4-1, aspect 3:4-4:3, random h-flip) of the split's photos, cycling
    through them; with people=True every other crop is a jittered box around the person
    (astronaut in calib, cameraman in eval)."""
    names = CALIB_PHOTOS if split == "calib" else EVAL_PHOTOS
    ims = {k: photo(k) for k in names}
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if people and i % 2 == 0:
            k = next(p for p in names if p in PERSON)
            im = ims[k]
            x0, y0, x1, y1 = PERSON[k]
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            s = rng.uniform(0.8, 1.3)
            hw, hh = (x1 - x0) * s / 2, (y1 - y0) * s / 2
            cx += rng.uniform(-0.1, 0.1) * hw
            cy += rng.uniform(-0.1, 0.1) * hh
            xa, xb = int(max(0, cx - hw)), int(min(im.shape[1], cx + hw))
            ya, yb = int(max(0, cy - hh)), int(min(im.shape[0], cy + hh))
        else:
            im = ims[names[i % len(names)]]
            h, w = im.shape[:2]
            s = rng.uniform(0.4, 1.0)
            ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            ch, cw = min(h, int(h * s * np.sqrt(ar))), min(w, int(w * s / np.sqrt(ar)))
            ya, xa = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            yb, xb = ya + ch, xa + cw
        c = im[ya:yb, xa:xb]
        out.append(np.ascontiguousarray(c[:, ::-1] if rng.random() < 0.5 else c))
    return out


def resize(img, w, h, antialias=False):
    """Bilinear resize of a uint8 HxWx3 image. antialias=False matches cv2.resize INTER_LINEAR
    (what rapidocr, nudenet and MediaPipe use) to within 1 grey level; antialias=True is PIL's
    resize (torchvision on PIL images)."""
    im = Image.fromarray(img)
    if antialias:
        return np.asarray(im.resize((w, h), Image.BILINEAR))
    sx, sy = img.shape[1] / w, img.shape[0] / h
    return np.asarray(im.transform((w, h), Image.AFFINE, (sx, 0, 0, 0, sy, 0), Image.BILINEAR))


def letterbox(img, size, center=True):
    """Fit into size x size keeping the aspect ratio, black padding. center=True: resize, then
    pad around (MediaPipe); center=False: pad bottom/right to a square, then resize (nudenet)."""
    h, w = img.shape[:2]
    if not center:
        sq = np.zeros((max(h, w), max(h, w), 3), np.uint8)
        sq[:h, :w] = img
        return resize(sq, size, size)
    s = size / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y:y + nh, x:x + nw] = resize(img, nw, nh)
    return out


# ---------------------------------------------------------------------------- sentences
STDLIB = ["argparse", "asyncio", "base64", "bisect", "calendar", "collections", "configparser",
          "contextlib", "csv", "dataclasses", "datetime", "decimal", "difflib", "email", "enum",
          "fractions", "ftplib", "functools", "gzip", "heapq", "http.client", "imaplib",
          "inspect", "ipaddress", "itertools", "json", "logging", "mailbox", "mimetypes",
          "multiprocessing", "os", "pathlib", "pickle", "queue", "random", "shutil", "smtplib",
          "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile",
          "textwrap", "threading", "typing", "unittest", "urllib.request", "zipfile"]


def sentences(split):
    """English sentences from the docstrings of Python's standard library. Modules at even
    positions of STDLIB feed 'calib', odd ones 'eval', so the two sets share no sentence."""
    mods = STDLIB[0::2] if split == "calib" else STDLIB[1::2]
    seen = set(sentences("calib")) if split == "eval" else set()  # no sentence in both sets
    out = []
    for name in mods:
        m = importlib.import_module(name)
        objs = [getattr(m, a) for a in sorted(dir(m)) if not a.startswith("_")]
        for o in [m] + [o for o in objs if (inspect.isclass(o) or inspect.isfunction(o))
                        and str(getattr(o, "__module__", "")).startswith(name)]:
            for para in (inspect.getdoc(o) or "").split("\n\n"):
                for s in re.split(r"(?<=[.!?])\s+", " ".join(para.split())):
                    if (40 <= len(s) <= 160 and s.isascii() and s[0].isupper() and s.endswith(".")
                            and not re.search(r"[<>{}=\[\]_`|\\*#]|\(\)", s) and s not in seen):
                        seen.add(s)
                        out.append(s)
    np.random.default_rng(0 if split == "calib" else 1).shuffle(out)
    return out


# ---------------------------------------------------------------------------- wheels
def wheel(out, dist):
    """The downloaded wheel of `dist` (fetch.sh puts them in OUT_DIR/.wheels)."""
    found = glob.glob(os.path.join(out, ".wheels", dist.replace("-", "_") + "-*.whl"))
    if len(found) != 1:
        sys.exit(f"expected one {dist} wheel in {out}/.wheels, found {found}")
    return found[0]


def _licence_fields(header, licence_files):
    """Name, Version and every licence statement: METADATA fields + first line of LICENSE files."""
    out = {}
    for line in header.splitlines():
        k, _, v = line.partition(": ")
        if k in ("Name", "Version", "License", "License-Expression") or (
                k == "Classifier" and v.startswith("License")):
            out.setdefault(k, []).append(v)
    for name, text in licence_files:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        out.setdefault("license_files", []).append(f"{name}: {first[:80]}")
    return {k: v[0] if len(v) == 1 and k != "license_files" else v for k, v in out.items()}


def wheel_info(path):
    """What a wheel's METADATA and LICENSE files say about the package."""
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if ".dist-info/" in n]
        meta = z.read(next(n for n in names if n.endswith("/METADATA"))).decode("utf-8", "replace")
        lic = [(n.split(".dist-info/")[1], z.read(n).decode("utf-8", "replace")) for n in names
               if os.path.basename(n).upper().startswith(("LICENSE", "LICENCE", "COPYING"))]
    return _licence_fields(meta.split("\n\n", 1)[0], lic)


def extract(path, member, dest):
    with zipfile.ZipFile(path) as z, open(dest, "wb") as f:
        f.write(z.read(member))
    return dest


def installed_info(dist):
    """The same for an installed distribution."""
    from importlib.metadata import distribution
    d = distribution(dist)
    meta = d.read_text("METADATA") or ""
    lic = [(str(f).split(".dist-info/")[1], f.read_text()) for f in d.files or []
           if ".dist-info/" in str(f)
           and os.path.basename(str(f)).upper().startswith(("LICENSE", "LICENCE", "COPYING"))]
    return _licence_fields(meta.split("\n\n", 1)[0], lic)


# ---------------------------------------------------------------------------- output
def done(folder):
    if os.path.exists(os.path.join(folder, "meta.json")):
        print(f"   {os.path.basename(folder)}: already built, skipped")
        return True
    os.makedirs(folder, exist_ok=True)
    return False


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def finish(folder, meta, calib, evals):
    """Write calib.npz / eval.npz (arrays named after the inputs, sample index on axis 0) and
    meta.json (written last)."""
    np.savez(os.path.join(folder, "calib.npz"), **calib)
    np.savez(os.path.join(folder, "eval.npz"), **evals)
    model = os.path.join(folder, meta["model"])
    if model.endswith(".onnx"):
        import onnx
        m = onnx.load(model, load_external_data=False)
        meta["opset"] = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    meta["model_bytes"] = os.path.getsize(model)
    meta["model_sha256"] = sha256(model)
    first = meta["inputs"][0]["name"]
    meta["data"]["calib_rows"] = int(len(calib[first]))
    meta["data"]["eval_rows"] = int(len(evals[first]))
    meta["data"]["eval_arrays"] = {k: f"{v.dtype} {list(v.shape)}" for k, v in evals.items()}
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]",  # short lists on one line
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",\n")) + "]",
                  json.dumps(meta, indent=1))
    with open(os.path.join(folder, "meta.json.tmp"), "w") as f:
        f.write(text + "\n")
    os.replace(os.path.join(folder, "meta.json.tmp"), os.path.join(folder, "meta.json"))
    print(f"   {os.path.basename(folder)}: {meta['model']} {meta['model_bytes'] / 1e6:.1f} MB, "
          f"calib {meta['data']['calib_rows']} / eval {meta['data']['eval_rows']} rows")
