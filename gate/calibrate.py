"""Calibrate the match threshold on the real photos shipped in installed packages.

Genuine pairs: each person's face crop against augmented variants of itself (flip,
small rotation, brightness, crop; ``gate.augment``) and the variants among themselves.
Impostor pairs: every template of one person against every template of every other.
Quality gating is bypassed here (detector → alignment → recogniser only) because the
point is the recogniser's score distributions, not the lane's refusals.

``recommend_threshold`` favours few false matches (a false match sends an innocent
traveller to secondary inspection): the highest impostor score plus a safety ``margin``,
rounded up to a multiple of 0.05, and never below ``floor``. Nine people are far too few
to see the impostor tail, hence the margin and the floor (OpenCV's published SFace
cosine threshold is 0.363; our floor is the settings default 0.40). The genuine accept
rate at the recommendation is reported next to it so the cost is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import numpy.typing as npt

from gate.augment import variants
from gate.pipeline import FacePipeline
from gate.samples import face_crops

__all__ = ["CalibrationReport", "calibrate", "recommend_threshold"]

FloatArray = npt.NDArray[np.float32]
DEFAULT_FLOOR = 0.40
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class CalibrationReport:
    """Score statistics (cosine similarity of unit templates) and the recommendation."""

    people: int
    templates: int
    genuine: FloatArray
    impostor: FloatArray
    threshold: float

    def summary(self) -> dict[str, float | int]:
        """Plain numbers for JSON output and docs/gate.md."""
        g, i = self.genuine, self.impostor
        return {
            "people": self.people,
            "templates": self.templates,
            "genuine_pairs": int(g.size),
            "impostor_pairs": int(i.size),
            "genuine_min": round(float(g.min()), 4),
            "genuine_p05": round(float(np.percentile(g, 5)), 4),
            "genuine_median": round(float(np.median(g)), 4),
            "impostor_median": round(float(np.median(i)), 4),
            "impostor_p99": round(float(np.percentile(i, 99)), 4),
            "impostor_max": round(float(i.max()), 4),
            "recommended_threshold": round(self.threshold, 3),
            "genuine_accept_rate": round(float((g >= self.threshold).mean()), 4),
            "impostor_accept_rate": round(float((i >= self.threshold).mean()), 4),
        }


def recommend_threshold(
    genuine: FloatArray,
    impostor: FloatArray,
    *,
    floor: float = DEFAULT_FLOOR,
    margin: float = DEFAULT_MARGIN,
) -> float:
    """``max(floor, ceil_0.05(max impostor + margin))`` (see the module docstring)."""
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("need both genuine and impostor scores")
    raw = float(impostor.max()) + margin
    return max(floor, math.ceil(round(raw / 0.05, 6)) * 0.05)


def _template(pipeline: FacePipeline, image: npt.NDArray[np.uint8]) -> FloatArray | None:
    dets = pipeline.detect(image)
    if not dets:
        return None
    best = max(dets, key=lambda d: d.box[2] * d.box[3])
    return pipeline.embedder.embed(pipeline.align(image, best))


def calibrate(
    pipeline: FacePipeline,
    *,
    per_person: int = 6,
    rng: np.random.Generator | None = None,
    floor: float = DEFAULT_FLOOR,
) -> CalibrationReport:
    """Embed every sample person and ``per_person`` variants; score all pairs."""
    rng = rng if rng is not None else np.random.default_rng(20240601)
    by_person: dict[str, list[FloatArray]] = {}
    for face in face_crops(pipeline):
        images = [face.image] + [v.image for v in variants(face.image, rng=rng, count=per_person)]
        temps = [t for t in (_template(pipeline, img) for img in images) if t is not None]
        if len(temps) >= 2:
            by_person[face.person] = temps
    genuine = [float(a @ b) for temps in by_person.values() for a, b in combinations(temps, 2)]
    impostor = [
        float(a @ b)
        for (_, ta), (_, tb) in combinations(by_person.items(), 2)
        for a in ta
        for b in tb
    ]
    g = np.asarray(genuine, dtype=np.float32)
    i = np.asarray(impostor, dtype=np.float32)
    return CalibrationReport(
        people=len(by_person),
        templates=sum(len(t) for t in by_person.values()),
        genuine=g,
        impostor=i,
        threshold=recommend_threshold(g, i, floor=floor),
    )
