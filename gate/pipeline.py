"""The gate's face pipeline: image → faces → quality gate → L2-normalised templates.

Usage::

    from gate.pipeline import FacePipeline
    from gate.errors import QualityError

    pipeline = FacePipeline.from_settings(load_settings())
    try:
        template = pipeline.embed_one(jpeg_bytes)      # float32, unit norm
    except QualityError as refusal:
        show_on_lane(refusal.code)                      # e.g. RefusalCode.TOO_BLURRED

Stages (each a method, so the benchmark can time them): ``load`` (decode and size
checks, ``gate.imageio``), ``detect`` (YuNet, or SCRFD from a licensed pack, on a copy
scaled so its longer side is at most ``detect_max_side``, and when that finds nothing on
coarser copies down to ``detect_min_side``, so close-ups are found too:
``gate.detector.detect_at_scales``; coordinates are mapped back to the full image),
``align`` (insightface ``norm_crop`` on the full-resolution image),
quality measurements (``gate.quality``) and ``embed`` (SFace, or ArcFace from a pack).

Models: the bundled Apache-2.0 YuNet/SFace pair, converted and verified by
``gate.models``; or, when ``model_pack`` names a directory under ``model_dir`` holding
insightface ONNX files (e.g. ``buffalo_l``: SCRFD ``det_10g.onnx`` and ArcFace
``w600k_r50.onnx``), those through ``insightface.model_zoo``. insightface's packs are
licensed for non-commercial research only; installing one is the operator's decision.
A pack may provide only one of the two; the bundled model fills the other role.

Nothing here logs or prints pixels, landmarks or templates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gate.align import align_face
from gate.detector import (
    Detection,
    FaceDetector,
    ScrfdDetector,
    YuNetDetector,
    detect_at_scales,
)
from gate.embedder import ArcFaceEmbedder, FaceEmbedder, SFaceEmbedder
from gate.errors import ModelError, MultipleFacesError, NoFaceError, QualityError, RefusalCode
from gate.imageio import ImageInput, load_image
from gate.models import DETECTOR, RECOGNISER, ensure_converted, sha256_file
from gate.quality import QualityMetrics, QualityThresholds, check_face, measure_face

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["FacePipeline", "FaceResult", "ModelInfo", "QualityVerdict"]

FloatArray = npt.NDArray[np.float32]
BgrImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class QualityVerdict:
    """Outcome of the quality gate for one face: ``code`` is None when accepted."""

    code: RefusalCode | None
    detail: str
    metrics: QualityMetrics

    @property
    def accepted(self) -> bool:
        """True when every check passed."""
        return self.code is None


@dataclass(frozen=True)
class FaceResult:
    """One face of an image.

    ``box`` (x, y, w, h) and ``landmarks`` (5, 2) are in pixels of the input image.
    ``template`` is the unit-norm float32 embedding, present only when the quality gate
    accepted the face (a refused face never yields a template).
    """

    box: tuple[float, float, float, float]
    landmarks: FloatArray
    score: float
    quality: QualityVerdict
    template: FloatArray | None = field(repr=False)

    @property
    def area(self) -> float:
        """Box area in square pixels (used to pick the largest face)."""
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class ModelInfo:
    """Which models a pipeline runs, for the audit log: names and file digests."""

    detector: str
    detector_sha256: str
    recogniser: str
    recogniser_sha256: str
    dimension: int
    licence: str

    @property
    def model_id(self) -> str:
        """Short stable id of the (detector, recogniser) pair: 16 hex digits."""
        joined = f"{self.detector_sha256}:{self.recogniser_sha256}".encode()
        return hashlib.sha256(joined).hexdigest()[:16]


def _pack_models(pack_dir: Path) -> tuple[Path | None, Path | None]:
    """(detector, recogniser) ONNX files of an insightface pack, routed by insightface."""
    from insightface.model_zoo import model_zoo

    if not pack_dir.is_dir():
        raise ModelError(f"model pack directory {pack_dir} does not exist")
    detector = recogniser = None
    for path in sorted(pack_dir.glob("*.onnx")):
        try:
            model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: S112 - landmark/attribute models or broken files: skipped
            continue
        task = getattr(model, "taskname", "")
        if task == "detection" and detector is None:
            detector = path
        elif task == "recognition" and recogniser is None:
            recogniser = path
    if detector is None and recogniser is None:
        raise ModelError(f"model pack {pack_dir} has no insightface detector or recogniser")
    return detector, recogniser


class FacePipeline:
    """Detect, align, check and embed faces. Build once; ``process`` is re-entrant per
    thread only if onnxruntime sessions are (they are for CPU inference)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        thresholds: QualityThresholds | None = None,
        model_pack: str | None = None,
        detect_max_side: int = 1280,
        detect_min_side: int = 160,
        threads: int = 0,
    ) -> None:
        if not 64 <= detect_min_side <= detect_max_side:
            raise ValueError("need 64 <= detect_min_side <= detect_max_side")
        self.thresholds = thresholds or QualityThresholds()
        self.detect_max_side = detect_max_side
        self.detect_min_side = detect_min_side
        pack_det: Path | None = None
        pack_rec: Path | None = None
        if model_pack:
            pack_det, pack_rec = _pack_models(Path(model_dir) / model_pack)
        licences: list[str] = []
        self.detector: FaceDetector
        if pack_det is not None:
            self.detector = ScrfdDetector(pack_det)
            det_sha = sha256_file(pack_det)
            licences.append(f"{pack_det.name}: insightface pack, non-commercial research only")
        else:
            det = ensure_converted(DETECTOR, Path(model_dir))
            self.detector = YuNetDetector(det.path, threads=threads)
            det_sha = det.source_sha256
            licences.append(f"{DETECTOR.name}: {DETECTOR.licence}")
        self.embedder: FaceEmbedder
        if pack_rec is not None:
            self.embedder = ArcFaceEmbedder(pack_rec)
            rec_sha = sha256_file(pack_rec)
            licences.append(f"{pack_rec.name}: insightface pack, non-commercial research only")
        else:
            rec = ensure_converted(RECOGNISER, Path(model_dir))
            self.embedder = SFaceEmbedder(rec.path, threads=threads)
            rec_sha = rec.source_sha256
            licences.append(f"{RECOGNISER.name}: {RECOGNISER.licence}")
        self.model_info = ModelInfo(
            detector=self.detector.name,
            detector_sha256=det_sha,
            recogniser=self.embedder.name,
            recogniser_sha256=rec_sha,
            dimension=self.embedder.dimension,
            licence="; ".join(licences),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FacePipeline:
        """A pipeline configured by the ``gate_*`` settings and ``settings.model_dir``."""
        assert settings.model_dir is not None  # filled in by Settings' validator
        thresholds = QualityThresholds(
            min_inter_eye_px=settings.gate_min_inter_eye_px,
            min_sharpness=settings.gate_min_sharpness,
            max_roll_deg=settings.gate_max_roll_deg,
            max_abs_yaw_ratio=settings.gate_max_yaw_ratio,
            multiple_faces=settings.gate_multiple_faces,
            max_image_pixels=settings.gate_max_image_pixels,
        )
        kwargs: dict[str, Any] = {
            "thresholds": thresholds,
            "model_pack": settings.gate_model_pack,
        }
        kwargs.update(overrides)
        return cls(Path(settings.model_dir), **kwargs)

    @property
    def dimension(self) -> int:
        """Length of every template this pipeline produces (128 for SFace)."""
        return self.embedder.dimension

    # -- stages ---------------------------------------------------------------------

    def load(self, image: ImageInput) -> BgrImage:
        """Decode and size-check ``image`` (see ``gate.imageio``)."""
        t = self.thresholds
        return load_image(image, max_bytes=t.max_image_bytes, max_pixels=t.max_image_pixels)

    def detect(self, image_bgr: BgrImage) -> list[Detection]:
        """Faces in full-image coordinates, detected on a copy whose longer side is at
        most ``detect_max_side`` (area interpolation when shrinking), then, if none was
        found, on halved copies down to ``detect_min_side`` (``detect_at_scales``)."""
        return detect_at_scales(
            self.detector,
            image_bgr,
            max_side=self.detect_max_side,
            min_side=self.detect_min_side,
        )

    def align(self, image_bgr: BgrImage, detection: Detection) -> BgrImage:
        """The aligned crop the recogniser expects (``embedder.input_size`` square)."""
        return align_face(image_bgr, detection.landmarks, self.embedder.input_size)

    def assess(self, detection: Detection, aligned: BgrImage) -> QualityVerdict:
        """Measure one face and apply the thresholds (never raises a QualityError)."""
        metrics = measure_face(detection.landmarks, aligned, detection.box[2])
        try:
            check_face(metrics, self.thresholds)
        except QualityError as refusal:
            return QualityVerdict(code=refusal.code, detail=refusal.detail, metrics=metrics)
        return QualityVerdict(code=None, detail="accepted", metrics=metrics)

    def warmup(self) -> None:
        """Run each model once on a blank 640×480 frame so the first traveller does not
        pay onnxruntime's first-run allocation cost (a few hundred ms)."""
        side = self.embedder.input_size
        self.detector.detect(np.zeros((480, 640, 3), dtype=np.uint8))
        self.embedder.embed(np.full((side, side, 3), 128, dtype=np.uint8))

    # -- public API -----------------------------------------------------------------

    def process(self, image: ImageInput) -> list[FaceResult]:
        """Every detected face, largest first, each with its quality verdict and, when
        accepted, its template. An unreadable or oversized image raises its
        ``QualityError``; an image without faces returns ``[]``."""
        image_bgr = self.load(image)
        results = []
        for det in self.detect(image_bgr):
            aligned = self.align(image_bgr, det)
            verdict = self.assess(det, aligned)
            template = self.embedder.embed(aligned) if verdict.accepted else None
            results.append(
                FaceResult(
                    box=det.box,
                    landmarks=det.landmarks,
                    score=det.score,
                    quality=verdict,
                    template=template,
                )
            )
        results.sort(key=lambda r: -r.area)
        return results

    def select(self, results: Sequence[FaceResult]) -> FaceResult:
        """Apply the several-faces policy and the quality verdict to ``process`` output:
        the one face whose template may leave the gate, or the refusal as an exception."""
        if not results:
            raise NoFaceError("no face found")
        if len(results) > 1 and self.thresholds.multiple_faces == "refuse":
            raise MultipleFacesError(f"{len(results)} faces in the image")
        chosen = max(results, key=lambda r: r.area)
        if chosen.template is None:
            code = chosen.quality.code
            assert code is not None
            raise _ERRORS[code](chosen.quality.detail)
        return chosen

    def embed_one(self, image: ImageInput) -> FloatArray:
        """The template of the single subject of ``image`` (unit norm, float32, length
        ``dimension``), or a ``QualityError`` subclass whose ``code`` says why not."""
        template = self.select(self.process(image)).template
        assert template is not None
        return template


def _error_classes() -> dict[RefusalCode, type[QualityError]]:
    out: dict[RefusalCode, type[QualityError]] = {}
    stack: list[type[QualityError]] = list(QualityError.__subclasses__())
    while stack:
        cls = stack.pop()
        out[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return out


_ERRORS = _error_classes()
