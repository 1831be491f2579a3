"""Faces at every size: close-ups as an e-gate camera takes them are found and embed to
the same identity (``gate.detector.detect_at_scales``).

Before the detection pyramid, a face wider than about 350 px at the detection
resolution (detect_max_side 1280) was not found at all: a face filling half of a
1,000 px frame gave no detection. The frames are made from the shipped photos
(``gate.augment.closeup``): portrait 3:4 frames 640-4,000 px wide whose face box spans
30-95 % of the width, and 4:3 landscape frames whose face spans 30-95 % of the height.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.settings import Settings
from gate.augment import closeup
from gate.detector import detection_scales
from gate.pipeline import FacePipeline

WIDTHS = (640, 1000, 2000, 4000)
FILLS = (0.3, 0.5, 0.7, 0.85, 0.95)
MATCH_THRESHOLD = Settings.model_fields["match_threshold"].default


@pytest.fixture(scope="module")
def subjects(pipeline: FacePipeline, photos):
    """(reference template, image, face box) of two single-person photos."""
    out = {}
    for key in ("grace_hopper", "astronaut"):
        image = pipeline.load(photos[key].read_bytes())
        (face,) = pipeline.detect(image)
        out[key] = (pipeline.embed_one(image), image, face.box)
    return out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("key", ["grace_hopper", "astronaut"])
def test_portrait_closeups_are_found_and_match(pipeline: FacePipeline, subjects, key, width):
    reference, image, box = subjects[key]
    for fill in FILLS:
        frame = closeup(image, box, fill=fill, width=width)
        faces = pipeline.detect(frame)
        assert len(faces) == 1, (fill, width, len(faces))
        assert faces[0].box[2] / width == pytest.approx(fill, abs=0.08)
        cosine = float(pipeline.embed_one(frame) @ reference)
        assert cosine > MATCH_THRESHOLD, (fill, width, cosine)


@pytest.mark.parametrize("fill", [0.3, 0.6, 0.95])
def test_landscape_closeups_by_face_height(pipeline: FacePipeline, subjects, fill):
    reference, image, (x, y, w, h) = subjects["grace_hopper"]
    # face height `fill` of a 4:3 landscape frame: its box width is fill × (h/w) × 3/4
    frame = closeup(image, (x, y, w, h), fill=fill * 0.75 * w / h, width=4000, aspect=0.75)
    assert frame.shape[:2] == (3000, 4000)
    assert float(pipeline.embed_one(frame) @ reference) > MATCH_THRESHOLD


def test_a_group_photo_face_blown_up_is_still_that_person(pipeline: FacePipeline, photos):
    image = pipeline.load(photos["t1"].read_bytes())
    faces = pipeline.detect(image)
    assert len(faces) == 6  # the first pass still finds everyone (no coarser retry)
    face = max(faces, key=lambda d: d.score)
    reference = pipeline.embed_one(closeup(image, face.box, fill=0.3, width=640))
    for width, fill in ((1000, 0.8), (4000, 0.95)):
        frame = closeup(image, face.box, fill=fill, width=width)
        assert float(pipeline.embed_one(frame) @ reference) > MATCH_THRESHOLD


def test_detection_scales():
    assert detection_scales(480, 640, 1280, 160) == [1.0, 0.5, 0.25]
    assert detection_scales(5333, 4000, 1280, 160) == pytest.approx(
        [1280 / 5333, 640 / 5333, 320 / 5333, 160 / 5333]
    )
    assert detection_scales(112, 112, 1280, 160) == [1.0]  # always one pass
    with pytest.raises(ValueError):
        detection_scales(100, 100, 100, 200)
    with pytest.raises(ValueError):
        detection_scales(0, 0, 1280, 160)


def test_blank_frames_cost_every_level_and_find_nothing(pipeline: FacePipeline):
    assert pipeline.detect(np.full((3000, 4000, 3), 128, np.uint8)) == []
