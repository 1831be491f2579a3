"""The face pipeline on real photos: faces found, templates, quality refusals."""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.errors import VeilmatchError
from core.settings import load_settings
from gate.augment import brightness, crop, flip
from gate.errors import (
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
    OversizedImageError,
    PoseError,
    QualityError,
    RefusalCode,
    TooBlurredError,
    UnreadableImageError,
)
from gate.pipeline import FacePipeline
from gate.quality import QualityThresholds


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _with(pipeline: FacePipeline, model_dir: Path, **changes) -> FacePipeline:
    import dataclasses

    p = FacePipeline(model_dir, thresholds=dataclasses.replace(pipeline.thresholds, **changes))
    return p


def test_finds_all_six_people_in_t1(pipeline: FacePipeline, photos):
    faces = pipeline.process(photos["t1"].read_bytes())
    assert len(faces) == 6
    accepted = [f for f in faces if f.template is not None]
    assert len(accepted) >= 4
    for face in accepted:
        assert face.template is not None
        assert face.template.dtype == np.float32
        assert face.template.shape == (pipeline.dimension,) == (128,)
        assert abs(float(np.linalg.norm(face.template)) - 1.0) < 1e-5
    # Largest first; refused faces carry a code and no template.
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
    for face in faces:
        assert (face.template is None) == (face.quality.code is not None)


def test_different_people_score_clearly_below_the_same_face_augmented(
    pipeline: FacePipeline, t1_bgr
):
    # The faces of t1 the quality gate accepts (the turned, small one is refused).
    faces = [f for f in pipeline.process(t1_bgr) if f.template is not None]
    assert len(faces) >= 4
    same: list[float] = []
    different: list[float] = []
    compared = 0
    for face in faces:
        assert face.template is not None
        x, y, w, h = (int(v) for v in face.box)
        m = max(w, h)
        crop_img = np.ascontiguousarray(
            t1_bgr[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m]
        )
        variants = [
            flip(crop_img),
            crop(crop_img, 0.85, dx=0.5, dy=-0.5),
            brightness(crop_img, 1.3),
            brightness(crop_img, 0.7),
        ]
        if not all(pipeline.detect(v) for v in variants):
            # One t1 face scores 0.905 against YuNet's 0.9 threshold; out of the group
            # photo it drops below, so it has no augmented variants to compare.
            continue
        compared += 1
        same.extend(float(face.template @ pipeline.embed_one(v)) for v in variants)
    for i, a in enumerate(faces):
        for b in faces[i + 1 :]:
            assert a.template is not None and b.template is not None
            different.append(float(a.template @ b.template))
    assert compared >= 4
    assert min(same) > 0.6
    assert max(different) < 0.4
    assert min(same) - max(different) > 0.25


def test_embed_one_returns_the_largest_face(pipeline: FacePipeline, photos):
    data = photos["t1"].read_bytes()
    template = pipeline.embed_one(data)
    largest = pipeline.process(data)[0]
    assert largest.template is not None
    np.testing.assert_array_equal(template, largest.template)


def test_array_inputs_grey_bgr_bgra_agree(pipeline: FacePipeline, astronaut_bgr):
    base = pipeline.embed_one(astronaut_bgr)
    bgra = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA)
    assert float(base @ pipeline.embed_one(bgra)) > 0.9999
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    assert float(base @ pipeline.embed_one(grey)) > 0.5
    assert float(base @ pipeline.embed_one(_png(astronaut_bgr))) > 0.9999


# --- quality refusals, each from a constructed input -----------------------------------


def test_no_face(pipeline: FacePipeline):
    rng = np.random.default_rng(3)
    for image in (
        np.full((480, 640, 3), 127, np.uint8),
        rng.integers(0, 255, (480, 640, 3), np.uint8),
    ):
        assert pipeline.process(image) == []
        with pytest.raises(NoFaceError) as info:
            pipeline.embed_one(_png(image))
        assert info.value.code is RefusalCode.NO_FACE


def test_several_faces_refused_when_configured(pipeline, model_dir, photos):
    strict = _with(pipeline, model_dir, multiple_faces="refuse")
    with pytest.raises(MultipleFacesError) as info:
        strict.embed_one(photos["t1"].read_bytes())
    assert info.value.code is RefusalCode.MULTIPLE_FACES
    # … and one face is still fine under the strict policy.
    assert strict.embed_one(photos["grace_hopper"].read_bytes()).shape == (128,)


def test_face_too_small(pipeline: FacePipeline, astronaut_bgr):
    # Astronaut's inter-eye distance is ~47 px at 512×512; at half size it is ~23 px.
    small = cv2.resize(astronaut_bgr, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[100:356, 200:456] = small
    with pytest.raises(FaceTooSmallError) as info:
        pipeline.embed_one(canvas)
    assert info.value.code is RefusalCode.FACE_TOO_SMALL


def test_too_blurred(pipeline: FacePipeline, astronaut_bgr):
    blurred = cv2.GaussianBlur(astronaut_bgr, (0, 0), 3.0)
    with pytest.raises(TooBlurredError) as info:
        pipeline.embed_one(blurred)
    assert info.value.code is RefusalCode.TOO_BLURRED
    assert pipeline.embed_one(astronaut_bgr).shape == (128,)  # the sharp original passes


def test_pose_from_constructed_landmarks(pipeline: FacePipeline, astronaut_bgr):
    # YuNet's landmarks follow in-plane rotation only partly (a 25° rotated photo reads
    # as ~2° of roll), so rolled, turned and raised heads are constructed at the landmark
    # level from the astronaut's real landmarks and checked by the same code the
    # pipeline uses.
    from gate.quality import check_face, measure_face

    det = pipeline.detect(astronaut_bgr)[0]
    aligned = pipeline.align(astronaut_bgr, det)
    check_face(measure_face(det.landmarks, aligned), pipeline.thresholds)  # frontal: passes
    centre = det.landmarks.mean(axis=0)
    angle = np.radians(40)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = ((det.landmarks - centre) @ rot.T + centre).astype(np.float32)
    turned = det.landmarks.copy()
    turned[2, 0] += 0.5 * np.linalg.norm(det.landmarks[1] - det.landmarks[0])
    raised = det.landmarks.copy()
    raised[2, 1] = det.landmarks[:2, 1].mean() + 2.0  # nose tip level with the eyes
    for landmarks in (rolled, turned, raised):
        metrics = measure_face(landmarks, aligned)
        with pytest.raises(PoseError) as info:
            check_face(metrics, pipeline.thresholds)
        assert info.value.code is RefusalCode.POSE


def test_pose_turned_head_in_t1(pipeline: FacePipeline, t1_bgr):
    # One person in t1 looks sideways (yaw ratio ≈ 0.7). Their eyes are closer than the
    # size minimum, but their box is as large as everyone else's: the refusal must say
    # "pose" (look at the camera), not "too small" (step closer).
    verdicts = [f.quality for f in pipeline.process(t1_bgr)]
    assert sum(v.accepted for v in verdicts) == 5
    (turned,) = [v for v in verdicts if not v.accepted]
    assert turned.code is RefusalCode.POSE
    assert abs(turned.metrics.yaw_ratio) > pipeline.thresholds.max_abs_yaw_ratio
    assert turned.metrics.inter_eye_px < pipeline.thresholds.min_inter_eye_px


def test_unreadable_inputs(pipeline: FacePipeline, photos):
    jpeg = photos["t1"].read_bytes()
    cases = [
        b"",
        b"\x00" * 1000,
        b"this is not an image",
        jpeg[: len(jpeg) // 2],  # truncated: OpenCV would return a half-grey image
        jpeg[:200] + bytes(np.random.default_rng(0).integers(0, 255, 5000, np.uint8)),
        np.zeros((480, 640, 3), np.float32),  # wrong dtype
        np.zeros((480, 640, 2), np.uint8),  # wrong channels
        np.zeros((8, 8, 3), np.uint8),  # too small to be a frame
        "t1.jpg",  # a path is not an image
    ]
    for case in cases:
        start = time.perf_counter()
        with pytest.raises(UnreadableImageError) as info:
            pipeline.process(case)  # type: ignore[arg-type]
        assert info.value.code is RefusalCode.UNREADABLE_IMAGE
        assert time.perf_counter() - start < 0.5


def test_fifty_megapixel_image_is_refused_fast(pipeline: FacePipeline):
    big = np.zeros((6250, 8000), np.uint8)  # 50 MP, grey, compresses to ~50 kB as PNG
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    assert len(data) < pipeline.thresholds.max_image_bytes
    start = time.perf_counter()
    with pytest.raises(OversizedImageError) as info:
        pipeline.process(data)
    assert time.perf_counter() - start < 0.1  # header only: never decodes 150 MB
    assert info.value.code is RefusalCode.OVERSIZED_IMAGE
    with pytest.raises(OversizedImageError):
        pipeline.process(np.zeros((6250, 8000, 3), np.uint8))


def test_too_many_bytes_is_refused_before_parsing(pipeline, model_dir):
    tight = _with(pipeline, model_dir, max_image_bytes=1000)
    with pytest.raises(OversizedImageError):
        tight.process(b"\xff\xd8" + b"\x00" * 2000)


def test_every_refusal_is_a_gate_error_with_a_code():
    for cls in (
        NoFaceError,
        MultipleFacesError,
        FaceTooSmallError,
        TooBlurredError,
        PoseError,
        UnreadableImageError,
        OversizedImageError,
    ):
        err = cls("detail")
        assert isinstance(err, QualityError)
        assert isinstance(err, VeilmatchError)
        assert str(err).startswith(err.code.value)


def test_from_settings_uses_gate_settings(tmp_path: Path, model_dir: Path):
    settings = load_settings(
        data_dir=tmp_path,
        model_dir=model_dir,
        gate_multiple_faces="refuse",
        gate_min_inter_eye_px=50,
        gate_max_image_pixels=1_000_000,
    )
    p = FacePipeline.from_settings(settings)
    assert p.thresholds.multiple_faces == "refuse"
    assert p.thresholds.min_inter_eye_px == 50
    assert p.thresholds.max_image_pixels == 1_000_000
    assert p.model_info.dimension == 128 and len(p.model_info.model_id) == 16


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        QualityThresholds(multiple_faces="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        QualityThresholds(min_pitch_ratio=0.9, max_pitch_ratio=0.5)
