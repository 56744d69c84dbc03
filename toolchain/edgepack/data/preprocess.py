"""Image preprocessing: from what a user asked and what the model says, one concrete recipe.

A calibration set preprocessed differently from how the model was trained (wrong scale, BGR for
RGB, a stretched instead of a cropped resize) still "works" and quietly ruins int8 scales, so
every setting is resolved explicitly, checked against the model input, and recorded.

Each setting comes from, in order: the project's ``preprocessing`` section, the model input's
``Normalization`` (its signature, or the project's ``normalization`` recorded on it), and the
input's own shape and layout. Geometry follows torchvision's ``Resize(n)`` + ``CenterCrop(c)``
(bilinear with antialiasing, truncated long side, rounded crop offsets), the usual training
pipeline, so that calibration images look like training images: ``resize`` scales the shorter
side, then a centre crop of ``crop`` (default: the model's H x W) is taken; with neither, the
image is stretched to the model's H x W. EXIF orientation is not applied, as in torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from ..signature import TensorSpec

if TYPE_CHECKING:
    from PIL.Image import Image

CHANNELS = {"RGB": 3, "BGR": 3, "GRAY": 1}
IMAGE_LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class Preprocessing:
    """What the user asked for; ``None`` means "take it from the model"."""

    resize: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    color_order: str | None = None
    layout: str | None = None


@dataclass(frozen=True)
class Recipe:
    """Every preprocessing setting resolved: applying it needs nothing else."""

    size: tuple[int, int]  # output (height, width)
    resize: int | None  # the shorter side is resized to this first (aspect kept)
    crop: bool  # centre crop to ``size``; without a crop (and resize) the image is stretched
    mean: tuple[float, ...]  # one per channel
    std: tuple[float, ...]
    scale: float
    color_order: str
    layout: str

    @property
    def channels(self) -> int:
        return CHANNELS[self.color_order]

    def to_dict(self) -> dict[str, Any]:
        """For the report and artifact metadata: exactly what the pixels went through."""
        return {"size": list(self.size), "resize": self.resize,
                "crop": list(self.size) if self.crop else None,
                "interpolation": "bilinear", "mean": list(self.mean), "std": list(self.std),
                "scale": self.scale, "color_order": self.color_order, "layout": self.layout,
                "dtype": "float32", "formula": "(pixel * scale - mean) / std"}

    def apply(self, image: Image, name: str) -> np.ndarray:
        """One decoded image -> one float32 sample (no batch dim) in the model's layout.

        ``name`` is the file, for the refusal when the image is smaller than the crop.
        """
        image = image.convert("L" if self.color_order == "GRAY" else "RGB")
        image = self._geometry(image, name)
        pixels = np.asarray(image, dtype=np.float32).reshape(*self.size, self.channels)
        if self.color_order == "BGR":
            pixels = pixels[..., ::-1]
        x = (pixels * np.float32(self.scale) - np.asarray(self.mean, np.float32)) \
            / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1) if self.layout == "NCHW" else x)

    def _geometry(self, image: Image, name: str) -> Image:
        from PIL import Image as PILImage

        height, width = self.size
        if not self.crop:
            return image.resize((width, height), PILImage.Resampling.BILINEAR)
        if self.resize is not None:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.resize * long / short)  # torchvision truncates the long side
            new = (self.resize, new_long) if w <= h else (new_long, self.resize)
            image = image.resize(new, PILImage.Resampling.BILINEAR)
        w, h = image.size
        if w < width or h < height:
            raise DataError(f"image is {w}x{h} (after any resize), smaller than the "
                            f"{width}x{height} crop", path=name,
                            hint="set preprocessing.resize to at least the crop size")
        top, left = int(round((h - height) / 2)), int(round((w - width) / 2))
        return image.crop((left, top, left + width, top + height))


def resolve(spec: TensorSpec, asked: Preprocessing | None, where: str | Path) -> Recipe:
    """The recipe that turns an image file into a sample of ``spec``, or a refusal why not.

    ``where`` (the image folder) is named in every refusal.
    """
    asked = asked or Preprocessing()
    if spec.rank != 4:
        raise DataError(f"an image folder feeds an image input (rank 4), but input "
                        f"'{spec.name}' has shape {spec.shape_str()} (rank {spec.rank})",
                        path=where)
    layout = asked.layout or spec.layout
    if layout not in IMAGE_LAYOUTS:
        raise DataError(f"input '{spec.name}' has no known image layout ({layout or 'none'})",
                        path=where, hint="set preprocessing.layout (NHWC or NCHW)")
    h, w, c = (spec.shape[1], spec.shape[2], spec.shape[3]) if layout == "NHWC" \
        else (spec.shape[2], spec.shape[3], spec.shape[1])
    norm = spec.normalization
    color = asked.color_order or (norm.color_order if norm else "") or _color_for(c)
    if color not in CHANNELS:
        raise DataError(f"unknown color order '{color}' (RGB, BGR or GRAY)", path=where)
    channels = CHANNELS[color]
    if isinstance(c, int) and c != channels:
        raise DataError(f"input '{spec.name}' ({spec.shape_str()}, {layout}) has {c} channels "
                        f"but color order {color} gives {channels}", path=where,
                        hint="set preprocessing.color_order (GRAY for 1 channel, RGB or BGR "
                             "for 3) or preprocessing.layout")
    mean = asked.mean or (norm.mean if norm else (0.0,))
    std = asked.std or (norm.std if norm else (1.0,))
    scale = asked.scale if asked.scale is not None else (norm.scale if norm else 1.0)
    return Recipe(size=_size(spec, asked, h, w, where), resize=asked.resize,
                  crop=asked.crop is not None or asked.resize is not None,
                  mean=_per_channel("mean", mean, channels, where),
                  std=_std(std, channels, where), scale=scale, color_order=color, layout=layout)


def _color_for(channels: int | str) -> str:
    return "GRAY" if channels == 1 else "RGB"


def _size(spec: TensorSpec, asked: Preprocessing, h: int | str, w: int | str,
          where: str | Path) -> tuple[int, int]:
    """The output size: the crop when given (it must fit the model), else the model's H x W."""
    static = isinstance(h, int) and isinstance(w, int)
    if asked.crop is not None:
        if static and (h, w) != (asked.crop, asked.crop):
            raise DataError(f"preprocessing.crop is {asked.crop} but input '{spec.name}' takes "
                            f"{h}x{w} images ({spec.shape_str()})", path=where)
        return asked.crop, asked.crop
    if not static:
        raise DataError(f"input '{spec.name}' has a dynamic image size ({spec.shape_str()})",
                        path=where, hint="set preprocessing.crop (and resize) in edgepack.yaml")
    return h, w


def _per_channel(what: str, values: tuple[float, ...], channels: int,
                 where: str | Path) -> tuple[float, ...]:
    if len(values) == 1:
        return tuple(float(values[0]) for _ in range(channels))
    if len(values) != channels:
        raise DataError(f"{what} has {len(values)} values for {channels} channels", path=where)
    return tuple(float(v) for v in values)


def _std(values: tuple[float, ...], channels: int, where: str | Path) -> tuple[float, ...]:
    std = _per_channel("std", values, channels, where)
    if any(s == 0 for s in std):
        raise DataError(f"std {list(std)} has a zero: the normalization would divide by it",
                        path=where)
    return std
