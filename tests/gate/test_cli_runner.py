"""`veilmatch gate …` commands and the frame loop with its pluggable sink."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gate.errors import CaptureError, RefusalCode
from gate.pipeline import FacePipeline
from gate.runner import CameraSource, DirectorySource, FrameOutcome, process_frame, run_frames
from veilmatch.cli import app


@pytest.fixture
def env(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VEILMATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VEILMATCH_MODEL_DIR", str(model_dir))
    monkeypatch.delenv("VEILMATCH_CONFIG", raising=False)
    return tmp_path


def test_embed_json_one_object_per_image(env: Path, photos):
    junk = env / "junk.jpg"
    junk.write_bytes(b"not an image")
    result = CliRunner().invoke(
        app,
        [
            "gate",
            "embed",
            "--json",
            str(photos["t1"].path),
            str(photos["astronaut"].path),
            str(junk),
        ],
    )
    assert result.exit_code == 1  # the junk file has no accepted face
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3
    t1, astronaut, bad = records
    assert len(t1["faces"]) == 6 and t1["dimension"] == 128
    face = astronaut["faces"][0]
    assert face["quality"]["accepted"] is True
    assert len(face["template"]) == 128
    assert abs(np.linalg.norm(face["template"]) - 1) < 1e-5
    assert len(face["landmarks"]) == 5 and len(face["box"]) == 4
    assert bad["faces"] == [] and bad["error"]["code"] == "unreadable_image"


def test_embed_text_output(env: Path, photos):
    result = CliRunner().invoke(app, ["gate", "embed", str(photos["grace_hopper"].path)])
    assert result.exit_code == 0, result.output
    assert "face 0: accepted" in result.stdout
    assert "template (128-d)" in result.stdout


def test_run_from_directory_prints_verdicts_not_templates(env: Path, photos):
    frames = env / "frames"
    frames.mkdir()
    shutil.copy(photos["astronaut"].path, frames / "a.png")
    (frames / "b.jpg").write_bytes(b"garbage")
    (frames / "notes.txt").write_text("ignored")
    result = CliRunner().invoke(app, ["gate", "run", "--source", str(frames), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("frame") for line in lines[:2]] == ["a.png", "b.jpg"]
    assert lines[0]["accepted"] is True
    assert lines[1]["refusal"] == "unreadable_image"
    assert lines[2]["summary"] == {"frames": 2, "accepted": 1, "unreadable_image": 1}
    assert "template" not in result.stdout


def test_run_needs_exactly_one_source(env: Path):
    assert CliRunner().invoke(app, ["gate", "run"]).exit_code != 0


def test_models_command_reports_digests_and_licences(env: Path):
    result = CliRunner().invoke(app, ["gate", "models"])
    assert result.exit_code == 0, result.output
    assert "Apache-2.0" in result.stdout
    assert "49f000ec501fef24" in result.stdout and "fb143eea07838aa5" in result.stdout


def test_run_frames_with_a_custom_sink(pipeline: FacePipeline, photos, tmp_path: Path):
    shutil.copy(photos["t1"].path, tmp_path / "1.jpg")
    shutil.copy(photos["grace_hopper"].path, tmp_path / "2.jpg")

    class Collect:
        def __init__(self) -> None:
            self.outcomes: list[FrameOutcome] = []

        def handle(self, outcome: FrameOutcome) -> None:
            self.outcomes.append(outcome)

    sink = Collect()
    summary = run_frames(DirectorySource(tmp_path), pipeline, sink, max_frames=1)
    assert summary.frames == 1 and len(sink.outcomes) == 1
    outcome = sink.outcomes[0]
    assert outcome.subject is not None and outcome.subject.template is not None
    assert len(outcome.faces) == 6
    assert "template" not in json.dumps(outcome.public_dict())


def test_process_frame_turns_refusals_into_outcomes(pipeline: FacePipeline):
    outcome = process_frame(pipeline, "blank", np.full((480, 640, 3), 200, np.uint8))
    assert outcome.subject is None and outcome.refusal is RefusalCode.NO_FACE


def test_sources_fail_with_capture_errors(tmp_path: Path):
    with pytest.raises(CaptureError):
        list(DirectorySource(tmp_path / "missing").frames())
    with pytest.raises(CaptureError):
        list(CameraSource(97).frames())  # no such camera on any test machine
