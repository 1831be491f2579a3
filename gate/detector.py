"""Face detectors: YuNet on onnxruntime (default) and insightface's SCRFD (licensed packs).

Both return ``Detection`` objects in the pixel coordinates of the image they were given.

YuNet preprocessing and decoding, as in OpenCV's ``FaceDetectorYN`` (the reference
our tests reproduce):

* input: the BGR image as float32 0–255 (no mean, no scaling, no channel swap), NCHW,
  zero-padded at the bottom and right to a multiple of 32 in both dimensions;
* outputs per stride s in (8, 16, 32), for anchor (row r, column c) on a grid of
  ``padded_w / s`` columns: ``score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1))``,
  box centre ``((c + dx) * s, (r + dy) * s)``, size ``(exp(dw) * s, exp(dh) * s)``,
  landmark k ``((kx_k + c) * s, (ky_k + r) * s)``;
* non-maximum suppression over boxes truncated to integers (``cv2.dnn.NMSBoxes``),
  score threshold 0.9 and IoU 0.3 by default, as OpenCV.

Faces at every size (:func:`detect_at_scales`): YuNet's anchors at strides 8-32 find
faces from about 10 px to about 350 px wide *at the resolution it runs at*; a close-up
whose face is larger (an e-gate camera at arm's length: 1,000-4,000 px frames, the face
filling most of it) gives no detection at all, not a bad one. So detection runs first
on the frame scaled to a longer side of at most ``max_side`` (small faces in a wide
frame keep their pixels), and, only when that finds nothing, again at half that size,
a quarter and so on down to ``min_side``: a face filling 95 % of a 4,000 px frame is
about 230 px at the 320 px level. Frames with a face pay for one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gate._ort import make_session
from gate.errors import ModelError

__all__ = [
    "Detection",
    "FaceDetector",
    "ScrfdDetector",
    "YuNetDetector",
    "detect_at_scales",
    "detection_scales",
]

FloatArray = npt.NDArray[np.float32]
_STRIDES = (8, 16, 32)
_DIVISOR = 32


@dataclass(frozen=True)
class Detection:
    """One detected face. ``box`` is (x, y, width, height) in pixels; ``landmarks`` is a
    (5, 2) float32 array: right eye, left eye (of the subject, i.e. image left then
    right), nose tip, right and left mouth corners; ``score`` is in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: FloatArray
    score: float

    def scaled(self, factor: float) -> Detection:
        """The same detection with coordinates multiplied by ``factor``."""
        x, y, w, h = self.box
        return Detection(
            box=(x * factor, y * factor, w * factor, h * factor),
            landmarks=(self.landmarks * np.float32(factor)).astype(np.float32),
            score=self.score,
        )


class FaceDetector(Protocol):
    """Anything that finds faces with five landmarks in a BGR uint8 image."""

    name: str

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """Faces sorted by decreasing score."""
        ...


def detection_scales(height: int, width: int, max_side: int, min_side: int) -> list[float]:
    """Scale factors (≤ 1, decreasing) for :func:`detect_at_scales`: the first brings the
    longer side to at most ``max_side`` pixels; each next one halves it while the longer
    side stays at least ``min_side`` (the first is always included).

    Requires ``0 < min_side <= max_side`` and a non-empty image.
    """
    if not 0 < min_side <= max_side:
        raise ValueError("detection sides must satisfy 0 < min_side <= max_side")
    longer = max(height, width)
    if longer <= 0:
        raise ValueError("the image is empty")
    scales = [min(1.0, max_side / longer)]
    while longer * scales[-1] / 2 >= min_side:
        scales.append(scales[-1] / 2)
    return scales


def detect_at_scales(
    detector: FaceDetector,
    image_bgr: npt.NDArray[np.uint8],
    *,
    max_side: int,
    min_side: int = 160,
) -> list[Detection]:
    """Faces in ``image_bgr``'s pixel coordinates, from the first scale of
    :func:`detection_scales` that finds any (see the module docstring). Each level is
    resized from the full frame with area interpolation (no aliasing from repeated
    halving); coordinates are mapped back to the full frame."""
    import cv2

    h, w = image_bgr.shape[:2]
    for scale in detection_scales(h, w, max_side, min_side):
        if scale >= 1.0:
            found = detector.detect(image_bgr)
        else:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.asarray(
                cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
            factor = w / small.shape[1]
            found = [d.scaled(factor) for d in detector.detect(small)]
        if found:
            return found
    return []


class YuNetDetector:
    """YuNet 2023mar on onnxruntime; the model must be the float32 conversion with a
    symbolic input size (``gate.models.ensure_converted``)."""

    name = "yunet-2023mar"

    def __init__(
        self,
        model_path: Path,
        *,
        score_threshold: float = 0.9,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        threads: int = 0,
    ) -> None:
        self._session = make_session(model_path, threads)
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        self._outputs = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in _STRIDES]
        missing = set(self._outputs) - set(names)
        if missing:
            raise ModelError(f"{model_path} is not a YuNet model (missing {sorted(missing)})")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """Run YuNet on the whole image at its own size (see the module docstring)."""
        h, w = image_bgr.shape[:2]
        pad_h = ((h - 1) // _DIVISOR + 1) * _DIVISOR
        pad_w = ((w - 1) // _DIVISOR + 1) * _DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :h, :w] = image_bgr.transpose(2, 0, 1)
        values = self._session.run(self._outputs, {self._input: blob})
        outs = dict(zip(self._outputs, values, strict=True))
        rows: list[FloatArray] = []
        for s in _STRIDES:
            cols, nrows = pad_w // s, pad_h // s
            cls = np.clip(outs[f"cls_{s}"].reshape(-1), 0.0, 1.0)
            obj = np.clip(outs[f"obj_{s}"].reshape(-1), 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score >= self.score_threshold)
            if keep.size == 0:
                continue
            assert score.size == cols * nrows
            c = (keep % cols).astype(np.float32)
            r = (keep // cols).astype(np.float32)
            bbox = outs[f"bbox_{s}"].reshape(-1, 4)[keep]
            kps = outs[f"kps_{s}"].reshape(-1, 10)[keep]
            cx = (c + bbox[:, 0]) * s
            cy = (r + bbox[:, 1]) * s
            bw = np.exp(bbox[:, 2]) * s
            bh = np.exp(bbox[:, 3]) * s
            lm = np.empty((keep.size, 10), dtype=np.float32)
            lm[:, 0::2] = (kps[:, 0::2] + c[:, None]) * s
            lm[:, 1::2] = (kps[:, 1::2] + r[:, None]) * s
            rows.append(
                np.column_stack([cx - bw / 2, cy - bh / 2, bw, bh, lm, score[keep]]).astype(
                    np.float32
                )
            )
        if not rows:
            return []
        faces = np.concatenate(rows)
        if len(faces) > 1:
            faces = faces[self._nms(faces)]
        order = np.argsort(-faces[:, 14], kind="stable")
        return [
            Detection(
                box=(float(f[0]), float(f[1]), float(f[2]), float(f[3])),
                landmarks=f[4:14].reshape(5, 2).copy(),
                score=float(f[14]),
            )
            for f in faces[order]
        ]

    def _nms(self, faces: FloatArray) -> list[int]:
        import cv2

        boxes = [[int(v) for v in f[:4]] for f in faces]
        keep = cv2.dnn.NMSBoxes(
            boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_threshold, top_k=self.top_k
        )
        return [int(i) for i in np.asarray(keep).reshape(-1)]


class ScrfdDetector:
    """insightface's SCRFD from an operator-installed model pack (e.g. buffalo_l's
    ``det_10g.onnx``), through ``insightface.model_zoo``. Runs at ``input_size`` with
    insightface's own letterboxing and decoding; threshold 0.5 as insightface."""

    name = "scrfd"

    def __init__(
        self, model_path: Path, *, input_size: tuple[int, int] = (640, 640), threshold: float = 0.5
    ) -> None:
        from insightface.model_zoo import model_zoo

        try:
            model = model_zoo.get_model(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # insightface raises assertions and ORT errors
            reason = type(exc).__name__
            raise ModelError(f"insightface cannot load {model_path}: {reason}") from None
        if model is None or getattr(model, "taskname", "") != "detection":
            raise ModelError(f"{model_path} is not an insightface detection model")
        try:
            model.prepare(-1, input_size=input_size, det_thresh=threshold)
        except Exception as exc:  # e.g. a non-SCRFD detector routed here by its outputs
            reason = type(exc).__name__
            raise ModelError(f"insightface cannot prepare {model_path}: {reason}") from None
        self._model = model
        self._input_size = input_size
        self.name = f"scrfd:{model_path.name}"

    def detect(self, image_bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """Faces sorted by decreasing score; landmarks are insightface's ``kps``."""
        det, kpss = self._model.detect(image_bgr, input_size=self._input_size)
        if kpss is None:
            raise ModelError("the insightface detector gives no landmarks; alignment needs them")
        out = [
            Detection(
                box=(float(d[0]), float(d[1]), float(d[2] - d[0]), float(d[3] - d[1])),
                landmarks=np.asarray(k, dtype=np.float32).reshape(5, 2),
                score=float(d[4]),
            )
            for d, k in zip(det, kpss, strict=True)
        ]
        return sorted(out, key=lambda d: -d.score)
