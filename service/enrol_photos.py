"""Enrolment from photos: the gate's face pipeline, run on the service, built lazily.

Photos are decoded, embedded and dropped; only the template continues (to be sealed).
Quality refusals (no face, several faces, blur…) become a 422 with the gate's refusal
code, so the officer knows to supply a better photo.
"""

from __future__ import annotations

import threading
from typing import Any

from core.errors import VeilmatchError
from core.settings import Settings
from service.errors import ServiceError

__all__ = ["PhotoEmbedder", "PhotoRefusedError"]


class PhotoRefusedError(ServiceError):
    """A photo failed the gate pipeline's decoding or quality checks."""

    status = 422
    code = "photo-refused"


class PhotoEmbedder:
    """Callable ``photo bytes -> template`` (list of floats, unit norm)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._pipeline is None:
                from gate.pipeline import FacePipeline

                self._pipeline = FacePipeline.from_settings(self.settings)
            return self._pipeline

    def __call__(self, photo: bytes) -> list[float]:
        try:
            template = self._get().embed_one(photo)
        except VeilmatchError as exc:
            code = getattr(exc, "code", None)
            label = getattr(code, "value", code) or type(exc).__name__
            raise PhotoRefusedError(f"photo refused: {label}") from None
        return [float(x) for x in template]
