"""Travellers from a directory (``veilmatch gate run --frames DIR``): the contract with
the document reader and camera software that fill it.

One traveller is a set of files with a common name ``NAME`` (any name without dots):

* ``NAME.mrz`` — the MRZ lines as the document reader delivers them (text, UTF-8);
  **written last**: its presence says the traveller is complete (write it under another
  name and rename it, so it never appears half-written);
* ``NAME.jpg`` / ``.jpeg`` / ``.png`` — the camera frame;
* ``NAME.portrait.jpg`` / ``.portrait.jp2`` — optional, the chip portrait (ICAO 9303
  DG2 image as reader SDKs deliver it), for the 1:1 holder check.

Travellers are taken in name order (use a zero-padded counter or a timestamp). After
its verdict, a traveller's files are moved to ``DIR/done/`` (so a restarted agent does
not see them again) — or deleted with ``keep=False``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gate.errors import CaptureError

__all__ = ["FrameDirectory", "Traveller"]

_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_PORTRAIT_SUFFIXES = (".portrait.jpg", ".portrait.jpeg", ".portrait.jp2", ".portrait.png")
MAX_FILE_BYTES = 20_000_000


@dataclass(frozen=True)
class Traveller:
    """The files of one traveller (``frame`` or ``portrait`` None when absent)."""

    name: str
    mrz: Path
    frame: Path | None
    portrait: Path | None

    def files(self) -> list[Path]:
        return [p for p in (self.mrz, self.frame, self.portrait) if p is not None]


def _first(directory: Path, name: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        path = directory / (name + suffix)
        if path.is_file():
            return path
    return None


@dataclass(frozen=True)
class FrameDirectory:
    """The directory the reader and camera fill (see the module docstring)."""

    directory: Path
    keep: bool = True

    def pending(self) -> Iterator[Traveller]:
        """Complete travellers now in the directory, in name order."""
        if not self.directory.is_dir():
            raise CaptureError(f"{self.directory} is not a directory")
        names = sorted(p.name[:-4] for p in self.directory.glob("*.mrz") if "." not in p.name[:-4])
        for name in names:
            yield Traveller(
                name,
                self.directory / f"{name}.mrz",
                _first(self.directory, name, _FRAME_SUFFIXES),
                _first(self.directory, name, _PORTRAIT_SUFFIXES),
            )

    def finish(self, traveller: Traveller) -> None:
        """Move (or delete) a traveller's files once its verdict is out."""
        done = self.directory / "done"
        if self.keep:
            done.mkdir(exist_ok=True)
        for path in traveller.files():
            with contextlib.suppress(FileNotFoundError):
                if self.keep:
                    shutil.move(str(path), done / path.name)
                else:
                    path.unlink()


def read_limited(path: Path) -> bytes:
    """A traveller's file, refused above :data:`MAX_FILE_BYTES` (``OSError``)."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise OSError(f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes()
