"""Export the log to a directory laid out exactly like its HTTPS tile endpoints.

The export is taken at the latest checkpoint's size ``n``: ``checkpoint``, every hash
tile and entry bundle for ``n`` (full and partial), payload bundles and the list of
checkpoints up to ``n``. The exporter copies bytes and checks nothing — checking is
the verifier's job, so a tampered database yields a tampered export that fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audit.log import AuditLog
from audit.tiles import CHECKPOINT_PATH, CHECKPOINTS_PATH, tiles_for_size

__all__ = ["ExportSummary", "export_log"]


@dataclass(frozen=True)
class ExportSummary:
    """What was written: tree size and number of files."""

    size: int
    files: int


def _write(root: Path, rel: str, data: bytes) -> None:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def export_log(log: AuditLog, dest: Path) -> ExportSummary:
    """Write the log at its latest checkpoint into ``dest`` (created if needed).

    ``checkpoint`` is written last, so a reader never sees a checkpoint whose tiles are
    not there yet.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    latest = log.latest_checkpoint()
    n = latest.checkpoint.size
    files = 0
    for kind in ("hash", "entries", "payloads"):
        for tile in tiles_for_size(n, kind):
            _write(dest, tile.to_path(), log.read_tile(tile))
            files += 1
    _write(dest, CHECKPOINTS_PATH, log.checkpoints_bundle(max_size=n))
    _write(dest, CHECKPOINT_PATH, latest.to_bytes())
    return ExportSummary(n, files + 2)
