"""Face recognisers: aligned 112×112 BGR crop in, L2-normalised float32 template out.

Input conventions differ between model families and are easy to get wrong:

* SFace 2021dec (default) takes **raw 0–255 RGB**: its graph starts with its own
  ``Sub``/``Mul`` normalisation. OpenCV's ``FaceRecognizerSF.feature`` feeds it
  ``blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True)``; we do the same.
* insightface ArcFace models (buffalo_l's ``w600k_r50.onnx`` …) take
  **(x − 127.5) / 127.5 RGB**; insightface's ``ArcFaceONNX`` decides this from the
  graph (MXNet exports that normalise inside get raw input) and we let it.

The template dimension is a property of the model (128 for SFace, 512 for ArcFace R50).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gate._ort import make_session
from gate.errors import ModelError

__all__ = ["ArcFaceEmbedder", "FaceEmbedder", "SFaceEmbedder", "l2_normalise"]

FloatArray = npt.NDArray[np.float32]
ALIGNED_SIZE = 112


def l2_normalise(vector: npt.NDArray[np.floating]) -> FloatArray:
    """``vector / ||vector||`` as float32; raises ``ModelError`` on a zero or NaN vector."""
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ModelError("the recogniser produced a zero or non-finite embedding")
    return (v / norm).astype(np.float32)


class FaceEmbedder(Protocol):
    """Turns an aligned BGR uint8 crop of ``input_size`` into a unit-norm template."""

    name: str
    dimension: int
    input_size: int

    def embed(self, aligned_bgr: npt.NDArray[np.uint8]) -> FloatArray:
        """Unit-norm float32 vector of length ``dimension``."""
        ...


class SFaceEmbedder:
    """SFace 2021dec on onnxruntime (float32 conversion of the bundled file)."""

    name = "sface-2021dec"
    input_size = ALIGNED_SIZE

    def __init__(self, model_path: Path, *, threads: int = 0) -> None:
        self._session = make_session(model_path, threads)
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [3, 112, 112]:
            raise ModelError(f"{model_path} does not take one 3×112×112 input")
        self._input = inputs[0].name
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    def raw(self, aligned_bgr: npt.NDArray[np.uint8]) -> FloatArray:
        """The un-normalised network output (what ``FaceRecognizerSF.feature`` returns)."""
        if aligned_bgr.shape != (ALIGNED_SIZE, ALIGNED_SIZE, 3):
            raise ModelError(f"SFace needs a 112×112×3 crop, got {aligned_bgr.shape}")
        # Raw 0–255 RGB, NCHW: reverse the channel axis (BGR→RGB), no mean, no scale.
        blob = aligned_bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        out = self._session.run(None, {self._input: blob})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def embed(self, aligned_bgr: npt.NDArray[np.uint8]) -> FloatArray:
        """Unit-norm SFace template (128 float32)."""
        return l2_normalise(self.raw(aligned_bgr))


class ArcFaceEmbedder:
    """An insightface recognition model (e.g. from buffalo_l) via ``insightface.model_zoo``;
    insightface applies the model's own input normalisation."""

    def __init__(self, model_path: Path) -> None:
        from insightface.model_zoo import model_zoo

        try:
            model = model_zoo.get_model(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # insightface raises assertions and ORT errors
            reason = type(exc).__name__
            raise ModelError(f"insightface cannot load {model_path}: {reason}") from None
        if model is None or getattr(model, "taskname", "") != "recognition":
            raise ModelError(f"{model_path} is not an insightface recognition model")
        model.prepare(-1)
        self._model = model
        self.name = f"arcface:{model_path.name}"
        self.input_size = int(model.input_size[0])
        self.dimension = int(model.output_shape[-1])
        # Recorded for the documentation/tests: 127.5/127.5 for ArcFace, 0/1 for raw models.
        self.input_mean = float(model.input_mean)
        self.input_std = float(model.input_std)

    def embed(self, aligned_bgr: npt.NDArray[np.uint8]) -> FloatArray:
        """Unit-norm template of the model's own dimension."""
        side = self.input_size
        if aligned_bgr.shape != (side, side, 3):
            raise ModelError(f"model needs a {side}×{side}×3 crop, got {aligned_bgr.shape}")
        return l2_normalise(self._model.get_feat(aligned_bgr))
