"""What an output means, so that each is judged with a measure that fits it.

A role is a plain class: the words in an output's name that say it, a test on the source's
values for when the name says nothing, the channel groups of mixed meaning it judges apart (a
YOLO head's boxes next to its class scores), and the readings a user of such an output cares
about (a classifier's top-k, a detector's detections, an embedding's neighbours, a map's
thresholded IoU). A role declared in the project file or with ``--metric`` wins, then the
name, then the data; an output none of them claims is judged by the generic measures only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import UsageError

#: class scores share one scale, a regression's values mix quantities (MediaPipe pose's 195
#: landmark values: x/y in pixels, depth, visibility logits): an (N, C) output whose channels'
#: typical magnitudes (RMS over samples, 90th percentile over the 10th) spread beyond this is
#: not read as class scores from its values (EfficientNet-Lite0's logits: 2.2, pose's: 38)
MIXED_SCALES = 10.0
#: a classifier's top class follows its input: an (N, C) output whose largest entry is one
#: channel's in this share of at least ``DOMINANT_ROWS`` samples is a regression (MediaPipe's
#: hand landmarks: the wrist's y in pixels, largest in 31 of 32 crops, while its channels'
#: scales spread only 9x, as a z in pixels sits beside each x and y)
DOMINANT_SHARE = 0.9
DOMINANT_ROWS = 8
#: a source row whose best classes lie within this share of its spread (the row's standard
#: deviation) of each other decides nothing between them, and an artifact that picks any of them
#: agrees with it (EfficientNet-Lite2's eval row 25 scores two classes 5.72845 and 5.72812, 2.4e-4
#: of its spread, and its fp16 file, cosine 0.99999, swapped them; int8 files' flips on the zoo's
#: classifiers are at margins of 0.01-0.05, the median row's is 0.5)
TIE = 1e-3
#: a detector's anchor counts as a detection when its best class score reaches this
#: (Ultralytics' default confidence)
DETECTION_SCORE = 0.25
#: how many leading channels of a detector head are box coordinates (cx, cy, w, h)
BOX_CHANNELS = 4
#: boxes of one class overlapping more than this are one object (Ultralytics' predict default)
NMS_IOU = 0.7
#: an artifact's detection is the source's when the class is the same and the boxes overlap
#: this much (the PASCAL VOC / COCO mAP@0.5 criterion)
MATCH_IOU = 0.5


@dataclass(frozen=True)
class Group:
    """Channels ``start:stop`` of axis ``axis``: one meaning inside a mixed output."""

    name: str
    axis: int
    start: int
    stop: int | None = None

    def take(self, values: np.ndarray) -> np.ndarray:
        return np.take(values, range(self.start, self.stop or values.shape[self.axis]),
                       axis=self.axis)

    @property
    def channels(self) -> str:
        return f"{self.start}:{'' if self.stop is None else self.stop} of axis {self.axis}"


class Role:
    """The generic output: closeness measures only (validate/fidelity.py)."""

    name: ClassVar[str] = "generic"
    #: lower-case fragments of an output's name that say it plays this role
    words: ClassVar[tuple[str, ...]] = ()

    def fits(self, ref: np.ndarray) -> bool:
        """Whether an output of this shape can carry the role's readings at all."""
        return True

    def evident(self, ref: np.ndarray, primary: bool) -> bool:
        """Whether the source's values alone show the role (``primary``: the first output)."""
        return True

    def groups(self, ref: np.ndarray) -> list[Group]:
        """Channel groups judged apart; [] when the output has one meaning throughout."""
        return []

    def readings(self, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
        """What a user of such an output sees, artifact against source."""
        return {}


class Classifier(Role):
    """Class scores along the last axis: top-1 agreement and top-5 overlap per row."""

    name = "classifier"
    words = ("logit", "prob", "softmax", "score")

    def fits(self, ref: np.ndarray) -> bool:
        return ref.ndim >= 2 and ref.shape[-1] >= 2

    def evident(self, ref: np.ndarray, primary: bool) -> bool:
        # a model's (N, C) first output is class scores far more often than anything else,
        # unless its channels are quantities of different scales or one channel is the largest
        # whatever the input; probabilities (softmax, sigmoid) are class scores whatever the
        # spread of their classes' frequencies
        if not (primary and ref.ndim == 2 and ref.shape[1] >= 2):
            return False
        if ref.min() >= 0 and ref.max() <= 1:
            return True
        rms = np.sqrt(np.mean(np.square(ref, dtype=np.float64), axis=0))
        low, high = np.percentile(rms, [10, 90])
        top = np.bincount(ref.argmax(1), minlength=ref.shape[1]).max()
        return bool(high <= MIXED_SCALES * low) and not (
            len(ref) >= DOMINANT_ROWS and top >= DOMINANT_SHARE * len(ref))

    def readings(self, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
        r, o = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, ref.shape[-1])
        return {"top1_agreement": top1_agreement(r, o),
                "top5_overlap": topk_overlap(r, o, min(5, r.shape[1]))}


class Detector(Role):
    """A YOLO-style head, [batch, 4 + classes, anchors] or [batch, anchors, 4 + classes]:
    box coordinates next to class scores, judged as two groups. Its readings are about what an
    app shows, the detections after per-class non-maximum suppression (score >= DETECTION_SCORE,
    NMS at NMS_IOU): the share of the source's detections the artifact finds with the same
    class at IoU >= MATCH_IOU, the artifact's detections that match none (per source
    detection), and the matched boxes' mean IoU."""

    name = "detector"
    words = ("yolo",)

    def fits(self, ref: np.ndarray) -> bool:
        return ref.ndim == 3 and min(ref.shape[1:]) > BOX_CHANNELS

    def evident(self, ref: np.ndarray, primary: bool) -> bool:
        if not self.fits(ref):
            return False
        boxes, scores = (g.take(ref) for g in self.groups(ref))
        # scores are probabilities, boxes are coordinates in pixels (beyond [0, 1])
        return bool(scores.min() >= 0 and scores.max() <= 1 and np.abs(boxes).max() > 1.5)

    def groups(self, ref: np.ndarray) -> list[Group]:
        axis = 1 if ref.shape[1] <= ref.shape[2] else 2  # the channels: the shorter axis
        return [Group("boxes", axis, 0, BOX_CHANNELS), Group("scores", axis, BOX_CHANNELS)]

    def readings(self, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
        axis = self.groups(ref)[0].axis
        r, o = np.moveaxis(ref, axis, -1), np.moveaxis(out, axis, -1)  # [batch, anchors, ch]
        total = extra = 0
        ious: list[float] = []
        for rows_r, rows_o in zip(r, o, strict=True):
            found_r, found_o = detections(rows_r), detections(rows_o)
            pairs = match(found_r, found_o)
            total += len(found_r[0])
            extra += len(found_o[0]) - len(pairs)
            ious.extend(iou for _, _, iou in pairs)
        result = {"detections_kept": len(ious) / total if total else float(extra == 0),
                  "extra_detections": extra / max(total, 1)}
        if ious:
            result["box_iou"] = float(np.mean(ious))
        return result


def detections(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's detections from its [anchors, 4 + classes] rows: boxes (cx, cy, w, h) and
    classes, best score first, after per-class greedy non-maximum suppression."""
    scores = rows[:, BOX_CHANNELS:]
    best, classes = scores.max(1), scores.argmax(1)
    order = [i for i in np.argsort(-best, kind="stable") if best[i] >= DETECTION_SCORE]
    chosen: list[int] = []
    for i in order:
        rivals = [j for j in chosen if classes[j] == classes[i]]
        if not rivals or box_iou(rows[rivals, :BOX_CHANNELS],
                                 np.repeat(rows[i:i + 1, :BOX_CHANNELS], len(rivals), 0)
                                 ).max() <= NMS_IOU:
            chosen.append(i)
    return rows[chosen, :BOX_CHANNELS], classes[chosen]


def match(source: tuple[np.ndarray, np.ndarray], artifact: tuple[np.ndarray, np.ndarray]
          ) -> list[tuple[int, int, float]]:
    """Pairs (source index, artifact index, IoU) of the same class at IoU >= MATCH_IOU, each
    detection in one pair at most, the source's most confident first taking its best match."""
    (boxes_s, cls_s), (boxes_a, cls_a) = source, artifact
    free = np.ones(len(cls_a), bool)
    pairs = []
    for i in range(len(cls_s)):
        candidates = np.nonzero(free & (cls_a == cls_s[i]))[0]
        if not len(candidates):
            continue
        ious = box_iou(np.repeat(boxes_s[i:i + 1], len(candidates), 0), boxes_a[candidates])
        best = int(ious.argmax())
        if ious[best] >= MATCH_IOU:
            free[candidates[best]] = False
            pairs.append((i, int(candidates[best]), float(ious[best])))
    return pairs


class Embedding(Role):
    """A vector per sample compared by direction: the worst sample's cosine, and whether
    each sample's nearest neighbour among the others stays the same (what a search sees)."""

    name = "embedding"
    words = ("embed", "pooler")

    def fits(self, ref: np.ndarray) -> bool:
        return ref.ndim == 2 and ref.shape[1] >= 2

    def evident(self, ref: np.ndarray, primary: bool) -> bool:
        # L2-normalised rows: a sentence or face embedding, never class scores
        return self.fits(ref) and ref.shape[1] >= 16 and bool(
            np.allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-3))

    def readings(self, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
        cos = _row_cosines(ref, out)
        result = {"worst_cosine": float(cos.min())}
        if len(ref) >= 3:
            result["neighbour_agreement"] = float(np.mean(
                _nearest_other(ref) == _nearest_other(out)))
        return result


class Map(Role):
    """A spatial map (a segmentation mask, a text map, heatmaps): the intersection over union
    of the source's and the artifact's maps thresholded where the source's values say: 0.5 for
    probabilities, 0 for logits (signed), half the largest value for a map that is
    non-negative but unbounded (after a ReLU). A sample empty in both agrees fully."""

    name = "map"
    words = ("mask", "seg", "heatmap")

    def fits(self, ref: np.ndarray) -> bool:
        return ref.ndim >= 3

    def evident(self, ref: np.ndarray, primary: bool) -> bool:
        if ref.ndim != 4:
            return False
        spatial = ref.shape[2:] if ref.shape[1] == 1 else ref.shape[1:3]
        return 1 in (ref.shape[1], ref.shape[3]) and min(spatial) >= 8

    def readings(self, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
        low, high = float(ref.min()), float(ref.max())
        cut = 0.0 if low < 0 else 0.5 if high <= 1 else high / 2
        r = (ref > cut).reshape(len(ref), -1)
        o = (out > cut).reshape(len(ref), -1)
        union = (r | o).sum(1)
        iou = np.where(union > 0, (r & o).sum(1) / np.maximum(union, 1), 1.0)
        return {"iou": float(iou.mean())}


#: every role; a name's words and then the data are tried in this order (generic last)
ROLES: list[Role] = [Detector(), Embedding(), Map(), Classifier(), Role()]
#: by name, as config/profiles.py RoleName spells them (a test keeps the two equal)
BY_NAME: dict[str, Role] = {r.name: r for r in ROLES}


def role_for(name: str, ref: np.ndarray, declared: str = "", primary: bool = False) -> Role:
    """The role output ``name`` plays: the declared one, else the one its name says, else the
    first whose test the source's values ``ref`` pass. UsageError when a declared role cannot
    apply to the output's shape."""
    if declared:
        role = BY_NAME[declared]
        if not role.fits(ref):
            raise UsageError(f"output '{name}' is declared a {declared}, but its shape "
                             f"{list(ref.shape)} cannot be one",
                             hint="fix the role in the project file's outputs or --metric")
        return role
    lowered = name.lower()
    for role in ROLES:
        if role.fits(ref) and any(w in lowered for w in role.words):
            return role
    return next(r for r in ROLES if r.evident(ref, primary))


def top1_agreement(ref: np.ndarray, out: np.ndarray) -> float:
    """Share of rows where the artifact's best class is the source's, or one the source ties
    with its best (within ``TIE`` of the row's spread)."""
    tied = ref >= ref.max(1, keepdims=True) - TIE * ref.std(1, keepdims=True)
    return float(np.mean(tied[np.arange(len(ref)), out.argmax(1)]))


def topk_overlap(ref: np.ndarray, out: np.ndarray, k: int) -> float:
    """Mean share of the source's top-k classes that are also in the artifact's top-k.

    Ties count as in: an int8 output maps many small scores to the same value, and which of the
    tied classes an argsort puts first says nothing about the model.
    """
    top_ref = np.argsort(-ref, axis=1)[:, :k]
    kth = -np.sort(-out, axis=1)[:, k - 1:k]  # the artifact's k-th largest score per sample
    hits = np.take_along_axis(out, top_ref, axis=1) >= kth
    return float(np.mean(hits.sum(axis=1) / k))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes given as (cx, cy, w, h) rows, pairwise by row."""
    lo = np.maximum(a[:, :2] - a[:, 2:] / 2, b[:, :2] - b[:, 2:] / 2)
    hi = np.minimum(a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2)
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    union = np.abs(np.prod(a[:, 2:], axis=1)) + np.abs(np.prod(b[:, 2:], axis=1)) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1)


def _nearest_other(vectors: np.ndarray) -> np.ndarray:
    """Each row's most similar other row, by cosine."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)
