"""C2SP ``tlog-tiles`` paths and bundles, plus veilmatch's payload bundles.

Paths (relative to the log's URL prefix or an export directory):

- ``checkpoint`` — the latest signed checkpoint (mutable).
- ``tile/<L>/<N>[.p/<W>]`` — hash tiles: the ``i``-th hash of tile ``N`` at level
  ``L`` is ``MTH(D[(N*256+i)*256**L : (N*256+i+1)*256**L])``; full tiles hold 256.
- ``tile/entries/<N>[.p/<W>]`` — entry bundles: uint16 big-endian length-prefixed leaves.
- ``veilmatch/payloads/<N>[.p/<W>]`` — payload bundles (veilmatch extension, same
  indexing as entry bundles): uint32 big-endian length-prefixed payload blobs, length 0
  for a payload deleted under retention.
- ``veilmatch/checkpoints`` — every checkpoint the log issued, oldest first, each a
  uint32 length-prefixed signed note (veilmatch extension, mutable).

``<N>`` is written as zero-padded 3-digit groups, all but the last prefixed ``x``
(1234067 → ``x001/x234/067``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from audit.errors import MalformedError, NotFoundError

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TilePath",
    "decode_bundle",
    "encode_bundle",
    "encode_index",
    "parse_path",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
CHECKPOINT_PATH = "checkpoint"
CHECKPOINTS_PATH = "veilmatch/checkpoints"
_KINDS = {"hash", "entries", "payloads"}
_PATH_RE = re.compile(
    r"(?P<prefix>tile/(?P<level>0|[1-9][0-9]?)|tile/entries|veilmatch/payloads)/"
    r"(?P<index>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def encode_index(n: int) -> str:
    """``1234067`` → ``x001/x234/067`` (tlog-tiles index encoding)."""
    if n < 0:
        raise ValueError("negative tile index")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


@dataclass(frozen=True)
class TilePath:
    """A parsed tile or bundle path. ``kind`` is ``hash``, ``entries`` or ``payloads``.

    ``level`` is the tile level (0 for bundles); ``width`` is 256 for full tiles.
    """

    kind: str
    level: int
    index: int
    width: int

    def __post_init__(self) -> None:
        if self.kind not in _KINDS or not 0 <= self.level <= 63 or self.index < 0:
            raise MalformedError("malformed tile path")
        if not 1 <= self.width <= TILE_WIDTH:
            raise MalformedError("malformed tile path: width must be 1..256")

    @property
    def start(self) -> int:
        """First tree-level-``8L`` node index covered by this tile (entry seq for bundles)."""
        return self.index * TILE_WIDTH

    def to_path(self) -> str:
        """The relative path string."""
        prefix = {
            "hash": f"tile/{self.level}",
            "entries": "tile/entries",
            "payloads": "veilmatch/payloads",
        }[self.kind]
        suffix = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        return f"{prefix}/{encode_index(self.index)}{suffix}"


def parse_path(path: str) -> TilePath:
    """Parse a tile/bundle path; raise :class:`NotFoundError` for anything else."""
    m = _PATH_RE.fullmatch(path.strip("/"))
    if not m:
        raise NotFoundError(f"not a tile path: {path[:80]!r}")
    digits = m.group("index").replace("x", "").replace("/", "")
    width = int(m.group("width")) if m.group("width") else TILE_WIDTH
    if width == TILE_WIDTH and m.group("width"):
        raise NotFoundError("partial tile width must be below 256")
    prefix = m.group("prefix")
    try:
        if prefix == "tile/entries":
            return TilePath("entries", 0, int(digits), width)
        if prefix == "veilmatch/payloads":
            return TilePath("payloads", 0, int(digits), width)
        return TilePath("hash", int(m.group("level")), int(digits), width)
    except MalformedError:
        raise NotFoundError(f"not a tile path: {path[:80]!r}") from None


def tiles_for_size(size: int, kind: str = "hash") -> list[TilePath]:
    """Every tile (hash tiles: at every level) a tree of ``size`` leaves is served as."""
    out: list[TilePath] = []
    levels = range(64) if kind == "hash" else range(1)
    for level in levels:
        count = size >> (TILE_HEIGHT * level)
        if count == 0:
            break
        full, partial = divmod(count, TILE_WIDTH)
        out.extend(TilePath(kind, level, i, TILE_WIDTH) for i in range(full))
        if partial:
            out.append(TilePath(kind, level, full, partial))
    return out


def encode_bundle(items: list[bytes], prefix_bytes: int) -> bytes:
    """Length-prefixed concatenation (``prefix_bytes`` 2 for entries, 4 for payloads)."""
    fmt = ">H" if prefix_bytes == 2 else ">I"
    limit = 1 << (8 * prefix_bytes)
    out = bytearray()
    for item in items:
        if len(item) >= limit:
            raise MalformedError("bundle item too large")
        out += struct.pack(fmt, len(item))
        out += item
    return bytes(out)


def decode_bundle(data: bytes, prefix_bytes: int) -> list[bytes]:
    """Inverse of :func:`encode_bundle`; a truncated bundle raises."""
    fmt = ">H" if prefix_bytes == 2 else ">I"
    items: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + prefix_bytes > len(data):
            raise MalformedError("malformed bundle: truncated length prefix")
        (n,) = struct.unpack_from(fmt, data, pos)
        pos += prefix_bytes
        if pos + n > len(data):
            raise MalformedError("malformed bundle: truncated item")
        items.append(data[pos : pos + n])
        pos += n
    return items
