"""A folder of images as calibration/eval data: geometry, normalization, labels, refusals.

The images are crops of the two real photographs scikit-learn ships (china.jpg and flower.jpg,
427x640 RGB), written as PNG (lossless: pixel values can be checked exactly) or JPEG.
Tolerances: the normalization is float32 arithmetic on values of magnitude < 3, so 1e-5
absolute; everything that is a pure copy, transpose or channel swap is compared exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from edgepack.config.project import load_project
from edgepack.data import images
from edgepack.data.dataset import Dataset, load_dataset, overlap
from edgepack.data.preprocess import Preprocessing
from edgepack.errors import DataError
from edgepack.signature import Normalization, Signature, TensorSpec
from PIL import Image

ATOL = 1e-5  # float32 (pixel * scale - mean) / std on values of magnitude < 3


def _sig(shape: tuple, layout: str, norm: Normalization | None = None) -> Signature:
    return Signature(inputs=(TensorSpec("image", ("batch", *shape), "float32", layout,
                                        normalization=norm),))


NHWC8 = _sig((8, 8, 3), "NHWC")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return {Path(f).stem: img for f, img in zip(data.filenames, data.images, strict=True)}


def _save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def classes(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """china/ (3 PNG crops) and flower/ (3 JPEG crops), of different sizes."""
    root = tmp_path / "classes"
    for name, suffix in (("china", "png"), ("flower", "jpg")):
        for i in range(3):
            crop = photos[name][100 + 40 * i:100 + 40 * i + 30 + 10 * i, 200:250]
            _save(crop, root / name / f"{i}.{suffix}")
    return root


@pytest.fixture
def marked(tmp_path: Path, photos: dict[str, np.ndarray]) -> tuple[Path, np.ndarray]:
    """One 10x12 PNG crop of a photo with pixel (row 3, col 4) set to RGB (255, 128, 0)."""
    crop = photos["china"][200:210, 300:312].copy()
    crop[3, 4] = (255, 128, 0)
    return _save(crop, tmp_path / "marked" / "a.png").parent, crop


IMAGENET = Preprocessing(crop=8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                         scale=1 / 255)


def test_class_subfolders_give_sorted_labels_and_nhwc_batch(classes: Path) -> None:
    ds = load_dataset(classes, NHWC8)
    x = ds.inputs["image"]
    assert x.shape == (6, 8, 8, 3) and x.dtype == np.float32
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.preprocessing["classes"] == ["china", "flower"]
    assert ds.preprocessing["layout"] == "NHWC" and ds.preprocessing["crop"] is None


def test_project_labels_order_the_classes(classes: Path) -> None:
    ds = load_dataset(classes, NHWC8, class_names=["cat", "flower", "china"])
    assert ds.labels.tolist() == [2, 2, 2, 1, 1, 1]


def test_subfolder_missing_from_labels_is_refused(classes: Path) -> None:
    with pytest.raises(DataError, match=r"class subfolders \['china'\] are not among"):
        load_dataset(classes, NHWC8, class_names=["flower"])


def test_normalization_of_one_pixel_by_hand(marked: tuple[Path, np.ndarray]) -> None:
    # crop 8 of 10x12 (no resize): top = round(2/2) = 1, left = round(4/2) = 2, so the marked
    # pixel (3, 4) lands at (2, 2).
    folder, _ = marked
    x = load_dataset(folder, NHWC8, preprocessing=IMAGENET).inputs["image"]
    # (255/255 - 0.485)/0.229, (128/255 - 0.456)/0.224, (0/255 - 0.406)/0.225
    expected = [2.2489083, 0.2051821, -1.8044444]
    np.testing.assert_allclose(x[0, 2, 2], expected, atol=ATOL)


def test_crop_without_resize_copies_pixels(marked: tuple[Path, np.ndarray]) -> None:
    folder, crop = marked
    x = load_dataset(folder, NHWC8, preprocessing=Preprocessing(crop=8)).inputs["image"]
    np.testing.assert_array_equal(x[0], crop[1:9, 2:10].astype(np.float32))


def test_bgr_reverses_channels(marked: tuple[Path, np.ndarray]) -> None:
    folder, _ = marked
    rgb = load_dataset(folder, NHWC8, preprocessing=Preprocessing(crop=8)).inputs["image"]
    bgr = load_dataset(folder, NHWC8, preprocessing=Preprocessing(crop=8, color_order="BGR"))
    np.testing.assert_array_equal(bgr.inputs["image"], rgb[..., ::-1])
    assert bgr.inputs["image"][0, 2, 2].tolist() == [0.0, 128.0, 255.0]
    assert bgr.preprocessing["color_order"] == "BGR"


def test_nchw_is_the_transpose_of_nhwc(marked: tuple[Path, np.ndarray]) -> None:
    folder, _ = marked
    nhwc = load_dataset(folder, NHWC8, preprocessing=IMAGENET).inputs["image"]
    nchw = load_dataset(folder, _sig((3, 8, 8), "NCHW"), preprocessing=IMAGENET)
    assert nchw.inputs["image"].shape == (1, 3, 8, 8)
    np.testing.assert_array_equal(nchw.inputs["image"], nhwc.transpose(0, 3, 1, 2))


def test_gray_is_one_channel_of_luma(marked: tuple[Path, np.ndarray]) -> None:
    folder, _ = marked
    ds = load_dataset(folder, _sig((8, 8, 1), "NHWC"), preprocessing=Preprocessing(crop=8))
    assert ds.inputs["image"].shape == (1, 8, 8, 1) and ds.preprocessing["color_order"] == "GRAY"
    # ITU-R 601 luma: 0.299 * 255 + 0.587 * 128 = 151.381; Pillow rounds in fixed point (+-1)
    assert abs(ds.inputs["image"][0, 2, 2, 0] - 151.381) <= 1.0


def test_normalization_comes_from_the_signature(marked: tuple[Path, np.ndarray]) -> None:
    folder, _ = marked
    norm = Normalization(mean=(0.5,), std=(0.25,), scale=1 / 255, color_order="BGR")
    ds = load_dataset(folder, _sig((8, 8, 3), "NHWC", norm), preprocessing=Preprocessing(crop=8))
    # BGR pixel (0, 128, 255): (0 - 0.5)/0.25, (128/255 - 0.5)/0.25, (1 - 0.5)/0.25
    np.testing.assert_allclose(ds.inputs["image"][0, 2, 2], [-2.0, 0.0078431, 2.0], atol=ATOL)
    assert ds.preprocessing["mean"] == [0.5, 0.5, 0.5] and ds.preprocessing["std"] == [0.25] * 3


@pytest.mark.parametrize("portrait", [False, True])
def test_resize_shorter_side_then_centre_crop(tmp_path: Path, photos: dict[str, np.ndarray],
                                              portrait: bool) -> None:
    photo = photos["flower"].transpose(1, 0, 2) if portrait else photos["flower"]  # 427x640
    folder = _save(np.ascontiguousarray(photo), tmp_path / "one" / "p.png").parent
    ds = load_dataset(folder, _sig((56, 56, 3), "NHWC"),
                      preprocessing=Preprocessing(resize=64, crop=56))
    # shorter side 427 -> 64, longer side int(64 * 640 / 427) = int(95.93) = 95;
    # offsets round((64 - 56) / 2) = 4 and round((95 - 56) / 2) = round(19.5) = 20
    if portrait:
        resized = np.asarray(Image.fromarray(np.ascontiguousarray(photo)).resize(
            (64, 95), Image.Resampling.BILINEAR))
        expected = resized[20:76, 4:60]
    else:
        resized = np.asarray(Image.fromarray(photo).resize((95, 64), Image.Resampling.BILINEAR))
        expected = resized[4:60, 20:76]
    np.testing.assert_array_equal(ds.inputs["image"][0], expected.astype(np.float32))
    assert ds.preprocessing["resize"] == 64 and ds.preprocessing["crop"] == [56, 56]


def test_without_resize_or_crop_images_are_stretched_to_the_model(
        classes: Path, photos: dict[str, np.ndarray]) -> None:
    ds = load_dataset(classes, _sig((24, 16, 3), "NHWC"))
    first = photos["china"][100:130, 200:250]  # china/0.png, 30x50
    expected = np.asarray(Image.fromarray(first).resize((16, 24), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ds.inputs["image"][0], expected.astype(np.float32))


def test_max_samples_decodes_only_the_seeded_subset(
        classes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = load_dataset(classes, NHWC8)
    decoded: list[Path] = []
    real = images.decode
    monkeypatch.setattr(images, "decode", lambda p: decoded.append(p) or real(p))
    part = load_dataset(classes, NHWC8, max_samples=4, seed=7)
    assert len(part) == 4 and len(decoded) == 4
    assert part.preprocessing["files"] == 6 and part.preprocessing["loaded"] == 4
    assert part.drawn_from == 6  # the accuracy fallback may draw more of them
    same = full.take(4, 7)  # bounded loading picks exactly what take() picks from all
    np.testing.assert_array_equal(part.inputs["image"], same.inputs["image"])
    assert part.labels.tolist() == same.labels.tolist()


def test_unlabelled_folder(marked: tuple[Path, np.ndarray]) -> None:
    folder, _ = marked
    (folder / "notes.txt").write_text("not an image")
    ds = load_dataset(folder, NHWC8)
    assert len(ds) == 1 and ds.labels is None and ds.preprocessing["classes"] is None


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_refused_by_name(classes: Path, damage: str) -> None:
    bad = classes / "flower" / "1.jpg"
    data = bad.read_bytes()
    bad.write_bytes(b"this is not a JPEG" if damage == "garbage" else data[:len(data) // 2])
    with pytest.raises(DataError, match="not a readable image") as info:
        load_dataset(classes, NHWC8)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_16_bit_image_is_refused(tmp_path: Path) -> None:
    path = _save(np.full((8, 8), 40000, np.uint16), tmp_path / "deep" / "a.png")
    with pytest.raises(DataError, match="only 8-bit") as info:
        load_dataset(path.parent, _sig((8, 8, 1), "NHWC"))
    assert "a.png" in str(info.value)


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no .npy files and no images"):
        load_dataset(tmp_path, NHWC8)


def test_images_at_top_level_and_in_subfolders_are_refused(
        classes: Path, marked: tuple[Path, np.ndarray]) -> None:
    shutil.copy(marked[0] / "a.png", classes / "a.png")
    with pytest.raises(DataError, match="both at the top level and in class subfolders"):
        load_dataset(classes, NHWC8)


@pytest.mark.parametrize("sig,asked,needle", [
    (Signature(inputs=(TensorSpec("x", ("batch", 64), "float32", "NC"),)), None, "rank 2"),
    (_sig((8, 8, 3), "NHWC"), Preprocessing(color_order="GRAY"), "has 3 channels but color"),
    (_sig((8, 8, 1), "NHWC", Normalization(color_order="RGB")), None, "has 1 channels"),
    (_sig((8, 8, 3), "NHWC"), Preprocessing(crop=16), "crop is 16 but input"),
    (_sig(("h", "w", 3), "NHWC"), None, "dynamic image size"),
    (_sig((8, 8, 3), "NHWC"), Preprocessing(mean=(0.1, 0.2)), "mean has 2 values for 3"),
    (_sig((8, 8, 3), "NHWC"), Preprocessing(std=(0.0,)), "has a zero"),
    (_sig((8, 8, 3), "NHWC"), Preprocessing(resize=4, crop=8), "smaller than the 8x8 crop"),
])
def test_model_and_recipe_mismatches_are_refused(classes: Path, sig: Signature,
                                                 asked: Preprocessing | None,
                                                 needle: str) -> None:
    with pytest.raises(DataError, match=needle) as info:
        load_dataset(classes, sig, preprocessing=asked)
    assert str(classes) in str(info.value)


def test_overlap_counts_identical_samples(classes: Path, tmp_path: Path) -> None:
    evals = tmp_path / "evals"
    shutil.copytree(classes / "china", evals / "china")  # 3 shared samples
    rng = np.random.default_rng(0)
    _save(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), evals / "flower" / "new.png")
    calib = load_dataset(classes, NHWC8)
    assert overlap(calib, load_dataset(evals, NHWC8)) == 3
    assert overlap(calib, calib) == len(calib)


def test_overlap_of_arrays_is_exact() -> None:
    a = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    b = np.concatenate([a[1:2], a[2:3] + 1e-3, a[1:2]])  # a[1] twice, a near miss of a[2]
    assert overlap(Dataset("a", {"x": a}), Dataset("b", {"x": b})) == 2


def test_project_preprocessing_section(tmp_path: Path) -> None:
    (tmp_path / "edgepack.yaml").write_text(
        "model: m.onnx\npreprocessing: {resize: 256, crop: 224, mean: [0.5], std: [0.5], "
        "scale: 1/255, color_order: BGR, layout: NCHW}\n")
    spec = load_project(tmp_path).spec.preprocessing
    assert spec is not None
    assert spec.to_preprocessing() == Preprocessing(256, 224, (0.5,), (0.5,), 1 / 255, "BGR",
                                                    "NCHW")
