"""The gate's frame loop: a frame source, the face pipeline, and a pluggable sink.

``run_frames(source, pipeline, sink)`` takes frames from a ``FrameSource`` (a directory
of images, or an OpenCV camera), applies ``FacePipeline.process`` and the single-subject
``select`` policy, and hands each ``FrameOutcome`` to a ``FrameSink``. Today's sink
prints verdicts (``PrintSink``); the service integration adds a sink that encrypts the
template and sends it, queueing it offline when the link is down.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gate.errors import CaptureError, QualityError, RefusalCode
from gate.pipeline import FacePipeline, FaceResult

__all__ = [
    "CameraSource",
    "DirectorySource",
    "FrameOutcome",
    "FrameSink",
    "FrameSource",
    "PrintSink",
    "RunSummary",
    "run_frames",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
Frame = bytes | npt.NDArray[np.uint8]


class FrameSource(Protocol):
    """Yields ``(frame_id, frame)``; ``frame`` is encoded bytes or a BGR array."""

    def frames(self) -> Iterator[tuple[str, Frame]]:
        """Frames in capture order."""
        ...


@dataclass(frozen=True)
class DirectorySource:
    """Every image file directly in ``directory``, in name order (encoded bytes)."""

    directory: Path

    def frames(self) -> Iterator[tuple[str, Frame]]:
        """``(file name, bytes)`` per image file; raises ``CaptureError`` if unreadable."""
        if not self.directory.is_dir():
            raise CaptureError(f"{self.directory} is not a directory")
        for path in sorted(self.directory.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                try:
                    yield path.name, path.read_bytes()
                except OSError as exc:
                    raise CaptureError(f"cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class CameraSource:
    """Frames from OpenCV ``VideoCapture(index)`` until it stops or ``max_frames``."""

    index: int
    max_frames: int | None = None

    def frames(self) -> Iterator[tuple[str, Frame]]:
        """``(frame number, BGR array)``; raises ``CaptureError`` if the camera fails."""
        import cv2

        capture = cv2.VideoCapture(self.index)
        if not capture.isOpened():
            raise CaptureError(f"camera {self.index} cannot be opened")
        try:
            count = 0
            while self.max_frames is None or count < self.max_frames:
                ok, frame = capture.read()
                if not ok:
                    if count == 0:
                        raise CaptureError(f"camera {self.index} returned no frame")
                    return
                yield f"frame-{count:06d}", np.asarray(frame, dtype=np.uint8)
                count += 1
        finally:
            capture.release()


@dataclass(frozen=True)
class FrameOutcome:
    """What the pipeline made of one frame.

    ``subject`` is the face whose template may leave the gate (None if refused);
    ``refusal`` is the reason otherwise; ``faces`` lists every detected face;
    ``elapsed_ms`` is the wall time of decode + detect + align + check + embed.
    """

    frame_id: str
    faces: list[FaceResult]
    subject: FaceResult | None
    refusal: RefusalCode | None
    detail: str
    elapsed_ms: float

    def public_dict(self) -> dict[str, object]:
        """Loggable summary: ids, codes, counts, timings; never pixels or templates."""
        return {
            "frame": self.frame_id,
            "faces": len(self.faces),
            "accepted": self.subject is not None,
            "refusal": self.refusal.value if self.refusal else None,
            "detail": self.detail,
            "elapsed_ms": round(self.elapsed_ms, 2),
        }


class FrameSink(Protocol):
    """Receives every frame outcome, in order."""

    def handle(self, outcome: FrameOutcome) -> None:
        """Do something with the outcome (print, encrypt and send, queue…)."""
        ...


@dataclass
class PrintSink:
    """Prints one line per frame (JSON with ``as_json``) through ``echo``."""

    echo: Callable[[str], None] = print
    as_json: bool = False

    def handle(self, outcome: FrameOutcome) -> None:
        """Print the outcome's public summary."""
        data = outcome.public_dict()
        if self.as_json:
            self.echo(json.dumps(data, sort_keys=True))
        else:
            verdict = "accepted" if outcome.subject else f"refused ({data['refusal']})"
            self.echo(
                f"{outcome.frame_id}: {verdict}, {data['faces']} face(s), "
                f"{data['elapsed_ms']} ms — {outcome.detail}"
            )


@dataclass
class RunSummary:
    """Counts over a run: frames seen, accepted, and refusals by code."""

    frames: int = 0
    accepted: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


def process_frame(
    pipeline: FacePipeline,
    frame_id: str,
    frame: Frame,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> FrameOutcome:
    """Run the pipeline and the selection policy on one frame; refusals are outcomes."""
    start = clock()
    faces: list[FaceResult] = []
    try:
        faces = pipeline.process(frame)
        subject: FaceResult | None = pipeline.select(faces)
        refusal, detail = None, "accepted"
    except QualityError as exc:
        subject, refusal, detail = None, exc.code, exc.detail
    return FrameOutcome(
        frame_id=frame_id,
        faces=faces,
        subject=subject,
        refusal=refusal,
        detail=detail,
        elapsed_ms=(clock() - start) * 1000,
    )


def run_frames(
    source: FrameSource,
    pipeline: FacePipeline,
    sink: FrameSink,
    *,
    max_frames: int | None = None,
) -> RunSummary:
    """Process frames from ``source`` until it ends or ``max_frames``; return counts."""
    summary = RunSummary()
    for frame_id, frame in source.frames():
        if max_frames is not None and summary.frames >= max_frames:
            break
        outcome = process_frame(pipeline, frame_id, frame)
        sink.handle(outcome)
        summary.frames += 1
        if outcome.subject is not None:
            summary.accepted += 1
        elif outcome.refusal is not None:
            summary.refusals[outcome.refusal.value] += 1
    return summary
