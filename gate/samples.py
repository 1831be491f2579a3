"""Real face photos that ship inside installed packages, and crops of the people in them.

Tests, calibration and the demo need real faces without downloading anything and
without committing photos. These files come with packages already in the lock:

==========================================  =====================================  ======
file (package-relative)                     who                                    people
==========================================  =====================================  ======
insightface ``data/images/t1.jpg``          six people in one group photo          6
insightface ``data/images/Tom_Hanks_54745.png``  an aligned 112×112 portrait       1
matplotlib ``mpl-data/sample_data/grace_hopper.jpg``  Rear Admiral Grace Hopper    1
scikit-image ``data/astronaut.png``         astronaut Eileen Collins (NASA)        1
==========================================  =====================================  ======

Nine distinct people in all. Licences: the Grace Hopper and Eileen Collins portraits
are US Navy and NASA photographs (public domain); ``t1.jpg`` and the Tom Hanks crop are
insightface's own test images (distributed with insightface under its MIT licence, with
no separate statement about the photos), so use them for testing only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from gate.pipeline import FacePipeline

__all__ = ["FaceCrop", "SamplePhoto", "face_crops", "sample_photos"]

BgrImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SamplePhoto:
    """A photo shipped in an installed package; ``people`` is how many faces it shows."""

    key: str
    path: Path
    package: str
    people: int
    licence: str

    def read_bytes(self) -> bytes:
        """The encoded file."""
        return self.path.read_bytes()


_KNOWN: tuple[tuple[str, str, str, int, str], ...] = (
    ("t1", "insightface", "data/images/t1.jpg", 6, "insightface test image (MIT package)"),
    (
        "tom_hanks",
        "insightface",
        "data/images/Tom_Hanks_54745.png",
        1,
        "insightface test image (MIT package)",
    ),
    (
        "grace_hopper",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        1,
        "US Navy photograph, public domain",
    ),
    ("astronaut", "skimage", "data/astronaut.png", 1, "NASA photograph, public domain"),
)


def _package_dir(package: str) -> Path | None:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sample_photos() -> list[SamplePhoto]:
    """The known sample photos present in this environment (missing packages skipped)."""
    out = []
    for key, package, rel, people, licence in _KNOWN:
        base = _package_dir(package)
        if base is not None and (base / rel).is_file():
            out.append(SamplePhoto(key, base / rel, package, people, licence))
    return out


@dataclass(frozen=True)
class FaceCrop:
    """One person's face cut from a sample photo with a margin around the box.

    ``person`` is unique per distinct person (``"<photo>#<index>"``, index in
    left-to-right order); ``image`` is BGR uint8.
    """

    person: str
    source: Path
    box: tuple[int, int, int, int]
    image: BgrImage


def _crop_with_margin(
    image: BgrImage, box: tuple[float, float, float, float], margin: float
) -> tuple[tuple[int, int, int, int], BgrImage]:
    h, w = image.shape[:2]
    x, y, bw, bh = box
    side = max(bw, bh) * (1 + 2 * margin)
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(w, round(cx + side / 2)), min(h, round(cy + side / 2))
    return (x0, y0, x1 - x0, y1 - y0), np.ascontiguousarray(image[y0:y1, x0:x1])


def face_crops(pipeline: FacePipeline, *, margin: float = 0.4) -> Iterator[FaceCrop]:
    """Crops of every distinct person in ``sample_photos()``, found with ``pipeline``'s
    detector; ``margin`` is the fraction of the box side added on each side (the crop
    is square where the photo allows). Photos already tightly cropped (smaller than the
    margin allows) are returned whole."""
    if margin < 0:
        raise ValueError("margin must be non-negative")
    for photo in sample_photos():
        image = pipeline.load(photo.read_bytes())
        detections = pipeline.detect(image)
        detections = sorted(detections, key=lambda d: -d.score)[: photo.people]
        detections.sort(key=lambda d: d.box[0])
        for index, det in enumerate(detections):
            box, crop = _crop_with_margin(image, det.box, margin)
            person = photo.key if photo.people == 1 else f"{photo.key}#{index}"
            yield FaceCrop(person=person, source=photo.path, box=box, image=crop)
