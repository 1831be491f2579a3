"""Where a verifier or witness reads a log from: an export directory or a base URL.

Both expose the same relative paths (``checkpoint``, ``tile/…``, ``veilmatch/…``; see
:mod:`audit.tiles`), so the same checks run on an offline export and on the live HTTPS
endpoints. Everything read here is untrusted until verified against a signed
checkpoint.

The service serves its tiles only to authenticated readers (``audit.read``: oversight,
legal, supervisors), because entry and payload bundles carry pseudonymous subjects and
details. An :class:`HttpSource` therefore takes a bearer ``token`` (an oversight
account's, a read-only role) and sends it only over HTTPS and only to ``base_url``
(redirects are not followed).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Protocol

import httpx

from audit.errors import MalformedError, NotFoundError, SourceError
from audit.rfc9162 import HASH_SIZE, Node, hash_children
from audit.tiles import TILE_HEIGHT, TILE_WIDTH, TilePath

__all__ = ["DirectorySource", "HttpSource", "Source", "TileHashReader", "open_source"]

MAX_RESOURCE_BYTES = 64 * 1024 * 1024


class Source(Protocol):
    """Read one resource of a log by its relative path."""

    def read(self, path: str) -> bytes:
        """The bytes at ``path``; :class:`NotFoundError` if absent."""
        ...


class DirectorySource:
    """A log exported to a directory (``veilmatch audit export``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, path: str) -> bytes:
        """Read ``root/path``; paths escaping the root are refused."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise NotFoundError(f"path {path!r} escapes the export directory")
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{path} not found in {self.root}") from None


class HttpSource:
    """A log served over HTTP(S) at ``base_url`` (``<base_url>/checkpoint`` etc.)."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        token: str | None = None,
    ) -> None:
        self.base = base_url.rstrip("/") + "/"
        headers: dict[str, str] = {}
        if token:
            if not self.base.startswith("https://"):
                raise SourceError("a bearer token is only sent over https://")
            headers["Authorization"] = f"Bearer {token.strip()}"
        trust: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._client = httpx.Client(
            verify=trust, timeout=timeout, follow_redirects=False, headers=headers
        )

    def read(self, path: str) -> bytes:
        """GET ``base_url/path``; 404 → :class:`NotFoundError`, other failures raise too."""
        try:
            resp = self._client.get(self.base + path)
        except httpx.HTTPError as exc:
            raise NotFoundError(f"{path}: {type(exc).__name__}") from None
        if resp.status_code == 404:
            raise NotFoundError(f"{path} not found at {self.base}")
        if resp.status_code in (401, 403):
            raise NotFoundError(
                f"{path}: HTTP {resp.status_code}: the log needs an oversight account's token "
                "(VEILMATCH_AUDIT_TOKEN or --token-file)"
            )
        if resp.status_code != 200:
            raise NotFoundError(f"{path}: HTTP {resp.status_code}")
        if len(resp.content) > MAX_RESOURCE_BYTES:
            raise MalformedError(f"{path}: response too large")
        return resp.content


def open_source(location: str, *, verify: bool | str = True, token: str | None = None) -> Source:
    """``http(s)://…`` → :class:`HttpSource` (sending ``token`` if given); anything else is
    a directory (``token`` unused)."""
    if location.startswith(("http://", "https://")):
        return HttpSource(location, verify=verify, token=token)
    if not os.path.isdir(location):
        raise NotFoundError(f"{location} is neither a URL nor a directory")
    return DirectorySource(Path(location))


class TileHashReader:
    """Perfect subtree hashes of a tree of ``size`` leaves, read from hash tiles.

    A node at tree level ``8T`` is read straight from a level-``T`` tile; a node at
    level ``8T + r`` (0 < r < 8) is the Merkle hash of the ``2**r`` level-``T`` tile
    hashes beneath it, which always sit in one tile. Tiles are fetched once and cached.
    Nothing here is trusted: callers verify proofs built from it against signed roots.
    """

    def __init__(self, source: Source, size: int) -> None:
        self.source = source
        self.size = size
        self._tiles: dict[tuple[int, int], bytes] = {}

    def _tile(self, tile_level: int, index: int) -> bytes:
        key = (tile_level, index)
        if key not in self._tiles:
            count = self.size >> (TILE_HEIGHT * tile_level)
            full = count // TILE_WIDTH
            width = TILE_WIDTH if index < full else count % TILE_WIDTH
            if width == 0 or index > full:
                raise NotFoundError(f"tile {tile_level}/{index} is beyond size {self.size}")
            path = TilePath("hash", tile_level, index, width).to_path()
            data = self.source.read(path)
            if len(data) != width * HASH_SIZE:
                raise MalformedError(f"{path}: {len(data)} bytes, expected {width * HASH_SIZE}")
            self._tiles[key] = data
        return self._tiles[key]

    def node(self, node: Node) -> bytes:
        """Hash of the perfect subtree ``(level, index)``."""
        level, index = node
        tile_level, rem = divmod(level, TILE_HEIGHT)
        first = index << rem  # first tile-level hash beneath this node
        tile = self._tile(tile_level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        hashes = [
            tile[(offset + i) * HASH_SIZE : (offset + i + 1) * HASH_SIZE] for i in range(1 << rem)
        ]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise MalformedError(f"tile for node {node} is too short")
        while len(hashes) > 1:
            hashes = [hash_children(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def nodes(self, wanted: list[Node]) -> dict[Node, bytes]:
        """Hashes for every node in ``wanted``."""
        return {n: self.node(n) for n in wanted}
