"""A folder of image files as the samples of a model's image input.

Two shapes of folder are read: image files directly inside it (no labels), or one subfolder per
class (torchvision's ImageFolder convention, so a training set's validation split can be used as
it is). Listing is separate from decoding so that the caller can pick which files to decode and a
folder of 10,000 photos never has to be held in memory at once.

Pillow is imported only when an image is decoded: ``edgepack --help`` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError, first_line
from .preprocess import Recipe

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")


@dataclass(frozen=True)
class ImageFiles:
    """The images of a folder in a fixed order (class folder, then path), with class indices."""

    files: list[Path]
    labels: list[int] | None  # one per file; None for a folder without class subfolders
    classes: list[str] | None  # class names in index order


def list_images(folder: Path, class_names: list[str] | None = None) -> ImageFiles:
    """The images of ``folder``; class ``i`` is ``class_names[i]``, else the i-th subfolder.

    A subfolder missing from ``class_names`` is refused rather than guessed: a wrong class index
    turns a good model's accuracy into noise without any error.
    """
    top = sorted(p for p in folder.iterdir() if _is_image(p))
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    nested = {d.name: _images_under(d) for d in subdirs}
    found = {name: files for name, files in nested.items() if files}
    if not top and not found:
        raise DataError(f"folder holds no .npy files and no images ({', '.join(IMAGE_SUFFIXES)})",
                        path=folder)
    if top and found:
        raise DataError(f"images both at the top level and in class subfolders {sorted(found)}",
                        path=folder, hint="put every image in a class subfolder, or none")
    if top:
        return ImageFiles(top, None, None)
    classes = class_names if class_names is not None else [d.name for d in subdirs]
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"class subfolders {unknown} are not among the labels "
                        f"({len(classes)} names)", path=folder,
                        hint="name each subfolder after a line of the project's labels")
    index = {name: i for i, name in enumerate(classes)}
    files = [f for files in found.values() for f in files]
    labels = [index[name] for name, files in found.items() for _ in files]
    return ImageFiles(files, labels, list(classes))


def read_images(files: list[Path], recipe: Recipe) -> np.ndarray:
    """Decode and preprocess ``files`` into one float32 batch, filled in place (one copy)."""
    height, width = recipe.size
    sample = (recipe.channels, height, width) if recipe.layout == "NCHW" \
        else (height, width, recipe.channels)
    batch = np.empty((len(files), *sample), np.float32)
    for i, path in enumerate(files):
        batch[i] = recipe.apply(decode(path), str(path))
    return batch


def decode(path: Path) -> Image:
    """The decoded image, or a refusal naming the file (corrupt, truncated, not 8-bit)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise DataError(f"not a readable image ({first_line(exc)})", path=path) from exc
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        raise DataError(f"a {image.mode} (16/32-bit) image: only 8-bit images are read, since "
                        "converting would clip or rescale its values", path=path)
    return image


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") \
        and path.is_file()


def _images_under(folder: Path) -> list[Path]:
    """Images anywhere below ``folder``, skipping hidden files and folders (.ipynb_checkpoints)."""
    return sorted(p for p in folder.rglob("*") if _is_image(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
