"""Pose and lighting variants of a real face image, for tests, calibration and the demo.

Each transform is deterministic given its parameters; ``variants`` draws a set of them
from an injectable ``numpy.random.Generator`` so runs are reproducible. The variants are
what a gate sees of the same traveller on another day: mirrored, slightly tilted,
brighter or darker, framed a little differently; ``closeup`` frames a face as an
e-gate camera at arm's length does (the face filling most of a large frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Variant", "brightness", "closeup", "crop", "flip", "rotate", "variants"]

BgrImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Variant:
    """One augmented image; ``label`` names the transform and its parameter."""

    label: str
    image: BgrImage


def flip(image: BgrImage) -> BgrImage:
    """Mirror left–right."""
    return np.ascontiguousarray(image[:, ::-1])


def rotate(image: BgrImage, degrees: float) -> BgrImage:
    """Rotate about the centre by ``degrees`` (counter-clockwise), same size, edges
    replicated so no black wedges look like an occlusion."""
    import cv2

    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return np.asarray(out, dtype=np.uint8)


def brightness(image: BgrImage, factor: float, offset: float = 0.0) -> BgrImage:
    """``clip(image × factor + offset)``: factor < 1 darkens, > 1 brightens."""
    if factor <= 0:
        raise ValueError("factor must be positive")
    out = image.astype(np.float32) * np.float32(factor) + np.float32(offset)
    return np.asarray(np.clip(out, 0, 255), dtype=np.uint8)


def crop(image: BgrImage, fraction: float, *, dx: float = 0.0, dy: float = 0.0) -> BgrImage:
    """Keep the central ``fraction`` (0 < fraction ≤ 1) of each side, shifted by
    ``dx``/``dy`` in units of the removed border (−1 … 1)."""
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y0 = round((h - ch) / 2 * (1 + max(-1.0, min(1.0, dy))))
    x0 = round((w - cw) / 2 * (1 + max(-1.0, min(1.0, dx))))
    return np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])


def closeup(
    image: BgrImage,
    box: tuple[float, float, float, float],
    *,
    fill: float,
    width: int,
    aspect: float = 4 / 3,
) -> BgrImage:
    """A ``width`` × ``round(width × aspect)`` frame (height/width = ``aspect``) centred
    on the face ``box`` (x, y, w, h in pixels of ``image``) whose box width is ``fill``
    (0 < fill ≤ 1) of the frame width. Where the frame reaches past the photo it is
    grey (mirroring would add faces); resampling is bicubic, so large frames from small
    photos are upscaled, as a camera's digital zoom would."""
    import cv2

    if not 0 < fill <= 1 or width < 16 or aspect <= 0:
        raise ValueError("need 0 < fill <= 1, width >= 16 and a positive aspect")
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    crop_w = w / fill
    crop_h = crop_w * aspect
    x0, y0 = round(cx - crop_w / 2), round(cy - crop_h / 2)
    x1, y1 = round(cx + crop_w / 2), round(cy + crop_h / 2)
    rows, cols = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - cols, y1 - rows)
    grey = (128, 128, 128)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=grey)
    region = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    size = (width, max(1, round(width * aspect)))
    return np.asarray(cv2.resize(region, size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)


def variants(
    image: BgrImage, *, rng: np.random.Generator | None = None, count: int = 6
) -> list[Variant]:
    """``count`` variants: a flip, then random mixes of small rotation (±10°),
    brightness (×0.6 … ×1.4) and crop (85–100 % of each side)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    out = [Variant("flip", flip(image))]
    while len(out) < count:
        deg = float(rng.uniform(-10, 10))
        fac = float(rng.uniform(0.6, 1.4))
        frac = float(rng.uniform(0.85, 1.0))
        img = rotate(image, deg)
        img = brightness(img, fac)
        img = crop(img, frac, dx=float(rng.uniform(-1, 1)), dy=float(rng.uniform(-1, 1)))
        if rng.random() < 0.5:
            img = flip(img)
        out.append(Variant(f"rot{deg:+.1f}_bright{fac:.2f}_crop{frac:.2f}", img))
    return out
