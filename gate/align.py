"""ArcFace 5-point alignment through insightface.

``insightface.utils.face_align.norm_crop`` estimates the least-squares similarity
transform (Umeyama: rotation, uniform scale, translation; no shear, no RANSAC/LMEDS)
from the five detected landmarks to the ArcFace template below and warps the image
with bilinear interpolation. OpenCV's ``FaceRecognizerSF.alignCrop`` does the same with
the same template, so SFace sees the crops it was trained on.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt

__all__ = ["ARCFACE_TEMPLATE_112", "align_face"]

# Landmark positions in a 112×112 crop (right eye, left eye, nose, mouth corners);
# insightface's ``arcface_dst``, also hard-coded in OpenCV's face_recognize.cpp.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def align_face(
    image_bgr: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32], size: int = 112
) -> npt.NDArray[np.uint8]:
    """The ``size``×``size`` aligned crop; ``landmarks`` is (5, 2) in image pixels and
    ``size`` a multiple of 112 (or 128, insightface's other template)."""
    from insightface.utils import face_align

    with warnings.catch_warnings():
        # scikit-image 0.26 deprecates SimilarityTransform.estimate, which insightface uses.
        warnings.simplefilter("ignore", FutureWarning)
        crop = face_align.norm_crop(
            image_bgr, np.asarray(landmarks, dtype=np.float32).reshape(5, 2), image_size=size
        )
    return np.ascontiguousarray(crop, dtype=np.uint8)
