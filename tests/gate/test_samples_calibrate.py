"""Sample photos, face crops, augmentation helpers and threshold calibration."""

from __future__ import annotations

import numpy as np
import pytest

from gate import augment
from gate.calibrate import calibrate, recommend_threshold
from gate.pipeline import FacePipeline
from gate.samples import face_crops, sample_photos


def test_sample_photos_are_real_files_with_licences():
    photos = sample_photos()
    assert sum(p.people for p in photos) == 9
    for photo in photos:
        assert photo.path.is_file() and photo.licence


def test_face_crops_give_nine_distinct_people(pipeline: FacePipeline):
    crops = list(face_crops(pipeline, margin=0.4))
    assert len({c.person for c in crops}) == len(crops) == 9
    for c in crops:
        assert c.image.ndim == 3 and c.image.shape[0] >= 64 and c.image.shape[1] >= 64
        # Each crop still contains its person's face.
        assert pipeline.detect(c.image), c.person
    with pytest.raises(ValueError):
        list(face_crops(pipeline, margin=-1))


def test_augmentations(astronaut_bgr):
    img = astronaut_bgr
    assert np.array_equal(augment.flip(augment.flip(img)), img)
    assert augment.rotate(img, 7).shape == img.shape
    assert augment.brightness(img, 1.5).mean() > img.mean()
    assert augment.brightness(img, 0.5).mean() < img.mean()
    assert augment.crop(img, 0.5).shape == (256, 256, 3)
    with pytest.raises(ValueError):
        augment.crop(img, 0)
    with pytest.raises(ValueError):
        augment.brightness(img, 0)
    a = augment.variants(img, rng=np.random.default_rng(5), count=5)
    b = augment.variants(img, rng=np.random.default_rng(5), count=5)
    assert [v.label for v in a] == [v.label for v in b] and len(a) == 5
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))


def test_recommend_threshold_rule():
    g = np.array([0.7, 0.9], np.float32)
    assert recommend_threshold(g, np.array([0.2, 0.31], np.float32)) == pytest.approx(0.40)
    assert recommend_threshold(g, np.array([0.2, 0.376], np.float32)) == pytest.approx(0.45)
    assert recommend_threshold(g, np.array([0.2, 0.40], np.float32)) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        recommend_threshold(g, np.array([], np.float32))


def test_calibration_separates_people(pipeline: FacePipeline):
    report = calibrate(pipeline, per_person=4, rng=np.random.default_rng(7))
    summary = report.summary()
    assert summary["people"] == 9
    assert summary["impostor_max"] < summary["genuine_p05"]
    assert summary["impostor_accept_rate"] == 0.0
    assert 0.40 <= report.threshold <= 0.55
