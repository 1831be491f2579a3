"""Fixtures for the gate tests: the real bundled models, converted once per session.

Models are converted into a session temporary directory (about 0.5 s) and every test
module shares one ``FacePipeline``. Photos are the real ones shipped in installed
packages (``gate.samples``); nothing is downloaded and no photo is committed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gate.pipeline import FacePipeline
from gate.samples import SamplePhoto, sample_photos


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def pipeline(model_dir: Path) -> FacePipeline:
    return FacePipeline(model_dir)


@pytest.fixture(scope="session")
def photos() -> dict[str, SamplePhoto]:
    found = {p.key: p for p in sample_photos()}
    # These packages are in the lock; their photos are part of the test fixture set.
    assert {"t1", "astronaut", "grace_hopper", "tom_hanks"} <= set(found)
    return found


@pytest.fixture(scope="session")
def t1_bgr(photos: dict[str, SamplePhoto]) -> np.ndarray:
    image = cv2.imread(str(photos["t1"].path))
    assert image is not None
    return image


@pytest.fixture(scope="session")
def astronaut_bgr(photos: dict[str, SamplePhoto]) -> np.ndarray:
    image = cv2.imread(str(photos["astronaut"].path))
    assert image is not None
    return image
