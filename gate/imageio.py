"""Turn untrusted image input (encoded bytes or an array) into a BGR uint8 array, safely.

Bytes are checked in this order, each check raising before any costly work:

1. length ≤ ``max_bytes`` (``OversizedImageError``), before parsing anything;
2. the header is parsed by Pillow without decoding pixels; unknown formats and broken
   headers raise ``UnreadableImageError``;
3. width × height ≤ ``max_pixels`` (``OversizedImageError``), still before decoding, so
   a 50-megapixel photo or a decompression bomb costs microseconds, not seconds;
4. the pixels are decoded; truncated or corrupt data raises ``UnreadableImageError``
   (Pillow refuses truncated files, where OpenCV would return a half-grey image);
5. the EXIF orientation is applied (phone photos used for enrolment) and the result is
   converted to 3-channel BGR, OpenCV's and YuNet's channel order.

Arrays must be uint8 with shape (h, w), (h, w, 3) (BGR) or (h, w, 4) (BGRA).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import numpy.typing as npt

from gate.errors import OversizedImageError, UnreadableImageError

__all__ = ["ImageInput", "load_image"]

ImageInput = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
BgrImage = npt.NDArray[np.uint8]
_MIN_SIDE = 16


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < _MIN_SIDE or height < _MIN_SIDE:
        raise UnreadableImageError(f"image is {width}×{height}, smaller than {_MIN_SIDE} px")
    if width * height > max_pixels:
        raise OversizedImageError(
            f"image is {width}×{height} = {width * height / 1e6:.1f} MP "
            f"(limit {max_pixels / 1e6:.1f} MP)"
        )


def _from_array(array: npt.NDArray[np.uint8], max_pixels: int) -> BgrImage:
    import cv2

    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise UnreadableImageError("image array must be numpy uint8")
    if array.ndim == 2:
        _check_pixels(array.shape[1], array.shape[0], max_pixels)
        return np.ascontiguousarray(cv2.cvtColor(array, cv2.COLOR_GRAY2BGR))
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise UnreadableImageError(f"image array has shape {array.shape}; need h×w, h×w×3 or h×w×4")
    _check_pixels(array.shape[1], array.shape[0], max_pixels)
    if array.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(array, cv2.COLOR_BGRA2BGR))
    return np.ascontiguousarray(array)


def load_image(data: ImageInput, *, max_bytes: int, max_pixels: int) -> BgrImage:
    """A contiguous (h, w, 3) BGR uint8 image, or a typed ``QualityError``."""
    if isinstance(data, np.ndarray):
        return _from_array(data, max_pixels)
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UnreadableImageError(f"unsupported image input type {type(data).__name__}")
    if len(data) > max_bytes:
        raise OversizedImageError(f"image is {len(data)} bytes (limit {max_bytes})")
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns (DecompressionBombWarning) above its own limit; ours is stricter.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(bytes(data)))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise UnreadableImageError("not a recognised image format") from None
        with img:
            width, height = img.size
            _check_pixels(width, height, max_pixels)
            try:
                img.load()
                upright = ImageOps.exif_transpose(img) or img
                rgb = upright.convert("RGB")
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                raise UnreadableImageError("image data is truncated or corrupt") from None
    array = np.asarray(rgb, dtype=np.uint8)
    return np.ascontiguousarray(array[:, :, ::-1])
