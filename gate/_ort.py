"""The one place the gate builds onnxruntime sessions (CPU, quiet, bounded threads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gate.errors import ModelError


def make_session(path: Path, threads: int = 0) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU; ``threads=0`` lets ORT choose.

    Raises ``ModelError`` (never onnxruntime's own exception types) if it cannot load.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT warns about harmless graph details on every load
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        raise ModelError(f"onnxruntime cannot load {path}: {type(exc).__name__}") from None
