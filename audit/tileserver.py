"""The tile server: the log as C2SP tlog-tiles static resources (see :mod:`audit.tiles`).

Tiles and bundles are immutable once their range is complete; ``checkpoint`` and
``veilmatch/checkpoints`` change as the log grows. The bytes are served as stored: the
verifier, not the server, checks them against signed checkpoints.
"""

from __future__ import annotations

import sqlalchemy as sa

from audit import schema
from audit.errors import NotFoundError
from audit.reader import LogReader
from audit.tiles import (
    CHECKPOINT_PATH,
    CHECKPOINTS_PATH,
    TILE_HEIGHT,
    TILE_WIDTH,
    TilePath,
    encode_bundle,
    parse_path,
)

__all__ = ["TileServer"]


class TileServer:
    """Static resources of the log ``reader`` reads."""

    def __init__(self, reader: LogReader) -> None:
        self.reader = reader

    def read_static(self, path: str) -> bytes:
        """Bytes served at ``<prefix>/<path>`` (see :mod:`audit.tiles` for the paths).

        Tiles and bundles are immutable once their range is complete; ``checkpoint``
        and ``veilmatch/checkpoints`` change as the log grows. Raises
        :class:`NotFoundError` for unknown paths or tiles beyond the tree.
        """
        clean = path.strip("/")
        if clean == CHECKPOINT_PATH:
            return self.reader.latest_checkpoint().to_bytes()
        if clean == CHECKPOINTS_PATH:
            return self.checkpoints_bundle()
        return self.read_tile(parse_path(clean))

    def checkpoints_bundle(self, max_size: int | None = None) -> bytes:
        """Every checkpoint (with cosignatures), oldest first, uint32 length-prefixed."""
        notes = [
            self.reader.checkpoint_at(s).to_bytes()
            for s in self.reader.checkpoint_sizes()
            if max_size is None or s <= max_size
        ]
        return encode_bundle(notes, 4)

    def read_tile(self, tile: TilePath) -> bytes:
        """One hash tile, entry bundle or payload bundle (may be short if rows are missing)."""
        tree_level = tile.level * TILE_HEIGHT
        first = tile.index * TILE_WIDTH
        last = first + tile.width  # exclusive, in units of tree-level nodes
        if (last << tree_level) > self.reader.tree_size():
            raise NotFoundError(f"tile {tile.to_path()} is beyond the tree")
        with self.reader.engine.connect() as conn:
            if tile.kind == "entries":
                rows = conn.execute(
                    sa.select(schema.entries.c.leaf)
                    .where(schema.entries.c.seq >= first, schema.entries.c.seq < last)
                    .order_by(schema.entries.c.seq)
                ).scalars()
                return encode_bundle([bytes(x) for x in rows], 2)
            if tile.kind == "payloads":
                blobs = {
                    int(r.seq): bytes(r.blob)
                    for r in conn.execute(
                        sa.select(schema.payloads.c.seq, schema.payloads.c.blob).where(
                            schema.payloads.c.seq >= first, schema.payloads.c.seq < last
                        )
                    )
                }
                return encode_bundle([blobs.get(s, b"") for s in range(first, last)], 4)
            if tree_level == 0:
                rows = conn.execute(
                    sa.select(schema.entries.c.leaf_hash)
                    .where(schema.entries.c.seq >= first, schema.entries.c.seq < last)
                    .order_by(schema.entries.c.seq)
                ).scalars()
            else:
                rows = conn.execute(
                    sa.select(schema.nodes.c.hash)
                    .where(
                        schema.nodes.c.level == tree_level,
                        schema.nodes.c.idx >= first,
                        schema.nodes.c.idx < last,
                    )
                    .order_by(schema.nodes.c.idx)
                ).scalars()
            return b"".join(bytes(h) for h in rows)
