"""An operator-installed insightface pack is used through insightface's model zoo.

No insightface weights ship here (their packs are non-commercial), so the pack is built
from the bundled SFace in two forms that exercise insightface's two input conventions:

* ``raw/``: the float32 SFace itself. Its graph starts with ``_minusscalar``/``_mulscalar``
  nodes, so insightface feeds raw 0–255 RGB (mean 0, std 1), like OpenCV.
* ``arcface_style/``: SFace behind a prefix that computes ``x * 127.5 + 127.5`` (nodes
  renamed so insightface's heuristic sees an ArcFace-style model). insightface must then
  feed ``(x − 127.5) / 127.5``; only if it does are the templates equal to SFace's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from gate.errors import ModelError
from gate.models import RECOGNISER, ensure_converted
from gate.pipeline import FacePipeline


def _arcface_style(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    graph = model.graph
    original_input = graph.input[0].name
    inner = "denormalised_input"
    for node in graph.node:
        node.input[:] = [inner if name == original_input else name for name in node.input]
        if node.name.startswith(("_minus", "Sub", "_mul", "Mul")):
            node.name = "inner_" + node.name
    prefix = [
        helper.make_node("Mul", [original_input, "k_scale"], ["scaled"], name="denorm_scale"),
        helper.make_node("Add", ["scaled", "k_shift"], [inner], name="denorm_shift"),
    ]
    graph.initializer.extend(
        [
            helper.make_tensor("k_scale", TensorProto.FLOAT, [], [127.5]),
            helper.make_tensor("k_shift", TensorProto.FLOAT, [], [127.5]),
        ]
    )
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("packs")
    sface = ensure_converted(RECOGNISER, model_dir).path
    (root / "raw").mkdir()
    (root / "raw" / "rec.onnx").write_bytes(sface.read_bytes())
    (root / "arcface_style").mkdir()
    _arcface_style(sface, root / "arcface_style" / "rec.onnx")
    # The bundled models fill the roles the pack leaves open: convert them here too.
    ensure_converted(RECOGNISER, root)
    (root / "empty").mkdir()
    return root


@pytest.mark.parametrize(("pack", "mean"), [("raw", 0.0), ("arcface_style", 127.5)])
def test_pack_recogniser_runs_through_insightface(
    pack_root: Path, pipeline: FacePipeline, photos, pack: str, mean: float
):
    packed = FacePipeline(pack_root, model_pack=pack)
    assert packed.model_info.recogniser == "arcface:rec.onnx"
    assert packed.model_info.detector == "yunet-2023mar"  # bundled detector fills in
    assert "non-commercial" in packed.model_info.licence
    assert packed.model_info.model_id != pipeline.model_info.model_id
    from gate.embedder import ArcFaceEmbedder

    assert isinstance(packed.embedder, ArcFaceEmbedder)
    assert packed.embedder.input_mean == mean
    assert packed.dimension == 128  # a property of the model (512 for buffalo_l)
    for key in ("astronaut", "grace_hopper"):
        data = photos[key].read_bytes()
        cosine = float(packed.embed_one(data) @ pipeline.embed_one(data))
        assert cosine > 0.9999


def test_pack_without_models_is_refused(pack_root: Path):
    with pytest.raises(ModelError):
        FacePipeline(pack_root, model_pack="empty")
    with pytest.raises(ModelError):
        FacePipeline(pack_root, model_pack="missing")


def test_arcface_style_model_really_differs_on_raw_input(pack_root: Path):
    # Guard for the test above: feeding raw pixels to the wrapped model is wrong, so a
    # pipeline that ignored insightface's normalisation would not reach cosine 0.9999.
    from gate._ort import make_session

    session = make_session(pack_root / "arcface_style" / "rec.onnx")
    raw = make_session(pack_root / "raw" / "rec.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    a = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)
    b = raw.run(None, {raw.get_inputs()[0].name: x})[0].reshape(-1)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) < 0.99
