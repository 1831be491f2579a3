"""Model conversion and the verified cache (gate.models)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from gate._ort import make_session
from gate.errors import ModelError, ModelIntegrityError
from gate.models import (
    DETECTOR,
    RECOGNISER,
    _dequantize,
    bundled_model_path,
    convert_to_float32,
    ensure_converted,
    sha256_file,
)


def _reference_dequantize(x, scale, zero, **attrs):
    """Known answer: the ONNX project's own reference implementation (opset 21)."""
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.INT8, x.shape),
        helper.make_tensor_value_info("s", TensorProto.FLOAT, scale.shape),
        helper.make_tensor_value_info("z", TensorProto.INT8, zero.shape),
    ]
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], **attrs)
    graph = helper.make_graph(
        [node], "dq", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    outputs = ReferenceEvaluator(model).run(["y"], {"x": x, "s": scale, "z": zero})
    assert isinstance(outputs, list)
    return np.asarray(outputs[0])


@pytest.mark.parametrize(
    ("xshape", "sshape", "attrs"),
    [
        ((7, 5), (), {"axis": 0, "block_size": 64}),  # per-tensor with a stray block_size
        ((6, 4), (6,), {"axis": 0}),  # per-axis
        ((4, 10), (4, 3), {"axis": 1, "block_size": 4}),  # blocked, last block partial
        ((128,), (2,), {"axis": 0, "block_size": 64}),  # blocked 1-D bias, as in SFace
    ],
)
def test_dequantize_matches_onnx_reference(xshape, sshape, attrs):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 127, size=xshape, dtype=np.int8)
    scale = rng.uniform(0.001, 0.1, size=sshape).astype(np.float32)
    zero = rng.integers(-5, 5, size=sshape, dtype=np.int8)
    expected = _reference_dequantize(x, scale, zero, **attrs)
    got = _dequantize(x, scale, zero, attrs)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_dequantize_rejects_mismatched_scales():
    x = np.zeros((4, 10), dtype=np.int8)
    with pytest.raises(ModelError):
        _dequantize(x, np.ones((4, 2), np.float32), None, {"axis": 1, "block_size": 4})
    with pytest.raises(ModelError):
        _dequantize(x, np.ones((3,), np.float32), None, {"axis": 0})


def test_bundled_files_match_pinned_digests():
    for model in (DETECTOR, RECOGNISER):
        assert sha256_file(bundled_model_path(model)) == model.sha256


def test_converted_models_have_no_quantised_nodes_and_run(model_dir: Path):
    det = ensure_converted(DETECTOR, model_dir)
    rec = ensure_converted(RECOGNISER, model_dir)
    for converted in (det, rec):
        graph = onnx.load(str(converted.path)).graph
        assert not [n for n in graph.node if n.op_type == "DequantizeLinear"]
        assert len(graph.input) == 1
        assert not [i for i in graph.initializer if i.data_type == TensorProto.INT8]
    # The detector accepts any size (symbolic H, W); the recogniser is fixed 112×112.
    session = make_session(det.path)
    outs = session.run(["cls_8"], {"input": np.zeros((1, 3, 480, 640), np.float32)})
    assert outs[0].shape == (1, 60 * 80, 1)
    session = make_session(rec.path)
    (feat,) = session.run(
        None, {session.get_inputs()[0].name: np.zeros((1, 3, 112, 112), np.float32)}
    )
    assert feat.shape == (1, 128)


def test_cache_is_reused_not_rebuilt(model_dir: Path):
    first = ensure_converted(DETECTOR, model_dir)
    mtime = first.path.stat().st_mtime_ns
    again = ensure_converted(DETECTOR, model_dir)
    assert again == first
    assert again.path.stat().st_mtime_ns == mtime
    assert DETECTOR.sha256[:16] in first.path.name  # keyed by the source digest


def test_tampered_cache_is_refused_then_rebuilt_on_request(tmp_path: Path):
    converted = ensure_converted(RECOGNISER, tmp_path)
    data = bytearray(converted.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    converted.path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as info:
        ensure_converted(RECOGNISER, tmp_path)
    assert info.value.expected == converted.sha256
    assert info.value.actual != converted.sha256
    assert ensure_converted(RECOGNISER, tmp_path, rebuild=True).sha256 == converted.sha256


def test_manifest_from_another_source_is_refused(tmp_path: Path):
    converted = ensure_converted(RECOGNISER, tmp_path)
    manifest = converted.path.with_suffix(".json")
    data = json.loads(manifest.read_text())
    data["source_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelIntegrityError):
        ensure_converted(RECOGNISER, tmp_path)


def test_source_not_matching_the_pin_is_refused(tmp_path: Path):
    wrong_pin = dataclasses.replace(DETECTOR, sha256="f" * 64)
    with pytest.raises(ModelIntegrityError) as info:
        ensure_converted(wrong_pin, tmp_path)
    assert info.value.actual == DETECTOR.sha256
    assert not (tmp_path / "converted").exists()  # refused before converting anything


def test_not_a_model_is_a_model_error(tmp_path: Path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx at all")
    with pytest.raises(ModelError):
        convert_to_float32(junk, tmp_path / "out.onnx", dynamic_hw=False)
    with pytest.raises(ModelError):
        make_session(junk)


def test_missing_package_is_a_model_error():
    ghost = dataclasses.replace(DETECTOR, package="no_such_package_veilmatch")
    with pytest.raises(ModelError):
        bundled_model_path(ghost)


def test_numpy_helper_roundtrip_of_converted_weights(model_dir: Path):
    # A converted initializer equals the dequantised source tensor computed independently.
    src = onnx.load(str(bundled_model_path(RECOGNISER)))
    consts = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    node = next(n for n in src.graph.node if n.output[0] == "pre_fc1_bias_dequantized")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    expected = _reference_dequantize(*(consts[i] for i in node.input), **attrs)
    converted = onnx.load(str(ensure_converted(RECOGNISER, model_dir).path))
    weights = {i.name: numpy_helper.to_array(i) for i in converted.graph.initializer}
    reshaped = [n for n in src.graph.node if n.input and n.input[0] == node.output[0]]
    name = reshaped[0].output[0] if reshaped else node.output[0]
    np.testing.assert_allclose(weights[name].reshape(-1), expected.reshape(-1), rtol=1e-6)
