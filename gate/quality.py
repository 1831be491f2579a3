"""The quality gate: measurements of one detected face and the checks that refuse it.

Every measurement is computed from the detector's five landmarks (in pixels of the
input image) or from the aligned crop, so it costs well under a millisecond:

* ``inter_eye_px`` — distance between the eye centres. ISO/IEC 19794-5 asks 90 px for
  passport photos (60 px minimum); a gate camera at 640×480 gives 50–100 px.
* ``face_width_px`` — width of the detector's box. A frontal face's eyes are about
  0.45 box widths apart, so a face counts as too small only when the box is small too
  (``FRONTAL_EYE_TO_WIDTH`` × width below the minimum); a head turned in profile has
  close-set eyes in a large box and is refused for its pose instead.
* ``sharpness`` — variance of the Laplacian of the aligned grey crop (112×112), a
  standard focus measure; motion blur and defocus drive it towards 0.
* ``roll_deg`` — angle of the eye line to the horizontal.
* ``yaw_ratio`` — after undoing the roll, the nose tip's horizontal offset from the eye
  midpoint divided by the inter-eye distance: 0 for a frontal face, about ±0.5 when the
  nose reaches the eye line of a half-profile.
* ``pitch_ratio`` — after undoing the roll, the nose tip's height between the eye line
  (0) and the mouth line (1): about 0.5 frontal, lower looking up, higher looking down.

``check_face`` applies ``QualityThresholds`` in a fixed order and raises the matching
``QualityError``; it never returns a boolean.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from gate.errors import FaceTooSmallError, PoseError, TooBlurredError

__all__ = [
    "QualityMetrics",
    "QualityThresholds",
    "check_face",
    "measure_face",
    "pose_from_landmarks",
    "sharpness",
]

MultipleFacesPolicy = Literal["largest", "refuse"]
# Inter-eye distance of a frontal face as a fraction of YuNet's box width (measured on
# the shipped photos: 0.45–0.52).
FRONTAL_EYE_TO_WIDTH = 0.45


@dataclass(frozen=True)
class QualityThresholds:
    """Configurable limits of the quality gate (defaults calibrated in docs/gate.md).

    Units: pixels of the input image, Laplacian variance on a 0–255 grey crop, degrees,
    and the dimensionless landmark ratios described in the module docstring. Byte and
    pixel limits apply to the whole image before it is decoded.
    """

    min_inter_eye_px: float = 32.0
    min_sharpness: float = 40.0
    max_roll_deg: float = 25.0
    max_abs_yaw_ratio: float = 0.35
    min_pitch_ratio: float = 0.30
    max_pitch_ratio: float = 0.85
    multiple_faces: MultipleFacesPolicy = "largest"
    max_image_bytes: int = 20_000_000
    max_image_pixels: int = 25_000_000

    def __post_init__(self) -> None:
        if self.min_inter_eye_px < 0 or self.min_sharpness < 0:
            raise ValueError("minimums must be non-negative")
        if not 0 < self.max_roll_deg <= 180:
            raise ValueError("max_roll_deg must be in (0, 180]")
        if not self.min_pitch_ratio < self.max_pitch_ratio:
            raise ValueError("min_pitch_ratio must be below max_pitch_ratio")
        if self.multiple_faces not in ("largest", "refuse"):
            raise ValueError("multiple_faces must be 'largest' or 'refuse'")
        if self.max_image_bytes <= 0 or self.max_image_pixels <= 0:
            raise ValueError("image limits must be positive")


@dataclass(frozen=True)
class QualityMetrics:
    """Measurements of one face (see the module docstring for definitions and units)."""

    inter_eye_px: float
    face_width_px: float
    sharpness: float
    roll_deg: float
    yaw_ratio: float
    pitch_ratio: float

    def as_dict(self) -> dict[str, float]:
        """Rounded values for JSON output and audit records (no biometric content)."""
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def pose_from_landmarks(landmarks: npt.NDArray[np.float32]) -> tuple[float, float, float]:
    """``(roll_deg, yaw_ratio, pitch_ratio)`` from five landmarks (right eye, left eye,
    nose, right mouth, left mouth; image coordinates). Degenerate landmarks (eyes on
    top of each other, mouth on the eye line) give ratios of ±inf, which every
    threshold refuses."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_r, eye_l, nose = lm[0], lm[1], lm[2]
    mouth = (lm[3] + lm[4]) / 2
    dx, dy = eye_l - eye_r
    roll = math.degrees(math.atan2(dy, dx))
    inter_eye = math.hypot(dx, dy)
    if inter_eye == 0:
        return roll, math.inf, math.inf
    # Rotate into the eye-line frame: x along the eyes, y perpendicular (down).
    ux, uy = dx / inter_eye, dy / inter_eye
    mid = (eye_r + eye_l) / 2

    def frame(p: npt.NDArray[np.float64]) -> tuple[float, float]:
        vx, vy = p - mid
        return float(vx * ux + vy * uy), float(-vx * uy + vy * ux)

    nose_x, nose_y = frame(nose)
    _, mouth_y = frame(mouth)
    yaw = nose_x / inter_eye
    pitch = nose_y / mouth_y if mouth_y > 0 else math.inf
    return roll, yaw, pitch


def sharpness(aligned_bgr: npt.NDArray[np.uint8]) -> float:
    """Variance of the 3×3 Laplacian of the grey aligned crop (0–255 scale)."""
    import cv2

    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var())


def measure_face(
    landmarks: npt.NDArray[np.float32],
    aligned_bgr: npt.NDArray[np.uint8],
    face_width_px: float | None = None,
) -> QualityMetrics:
    """All measurements of one face; ``landmarks`` and ``face_width_px`` (the box
    width; default: inferred from the inter-eye distance) in pixels of the image."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    roll, yaw, pitch = pose_from_landmarks(landmarks)
    inter_eye = float(np.linalg.norm(lm[1] - lm[0]))
    return QualityMetrics(
        inter_eye_px=inter_eye,
        face_width_px=(
            float(face_width_px) if face_width_px is not None else inter_eye / FRONTAL_EYE_TO_WIDTH
        ),
        sharpness=sharpness(aligned_bgr),
        roll_deg=roll,
        yaw_ratio=yaw,
        pitch_ratio=pitch,
    )


def check_face(metrics: QualityMetrics, thresholds: QualityThresholds) -> None:
    """Raise the first failing check, in this order: size, pose, blur.

    Size comes first because a tiny face's landmarks and sharpness are unreliable (a
    face is tiny when both its eye distance and its box say so, see ``face_width_px``);
    pose
    before blur because a turned face is the more actionable instruction on the lane.
    """
    t = thresholds
    if (
        metrics.inter_eye_px < t.min_inter_eye_px
        and metrics.face_width_px * FRONTAL_EYE_TO_WIDTH < t.min_inter_eye_px
    ):
        raise FaceTooSmallError(
            f"inter-eye distance {metrics.inter_eye_px:.1f} px < {t.min_inter_eye_px:g} px"
        )
    if abs(metrics.roll_deg) > t.max_roll_deg:
        raise PoseError(f"head tilted {metrics.roll_deg:.1f}° (limit ±{t.max_roll_deg:g}°)")
    if not abs(metrics.yaw_ratio) <= t.max_abs_yaw_ratio:
        raise PoseError(
            f"head turned: yaw ratio {metrics.yaw_ratio:.2f} (limit ±{t.max_abs_yaw_ratio:g})"
        )
    if not t.min_pitch_ratio <= metrics.pitch_ratio <= t.max_pitch_ratio:
        raise PoseError(
            f"head raised or lowered: pitch ratio {metrics.pitch_ratio:.2f} "
            f"(limits {t.min_pitch_ratio:g}..{t.max_pitch_ratio:g})"
        )
    if metrics.sharpness < t.min_sharpness:
        raise TooBlurredError(f"sharpness {metrics.sharpness:.1f} < {t.min_sharpness:g}")
