"""Verdicts for the barrier controller and the gate display, and the local interface
that delivers them.

A verdict is one JSON object per traveller (``Verdict.to_json``)::

    {"traveller": "000123", "verdict": "proceed" | "secondary" | "refused",
     "reason": null | "watchlist" | "holder-mismatch" | "quality" | "document" | "offline",
     "code": null | "<stable code>", "query_id": null | "<uuid>", "queued": false,
     "time": "<ISO 8601 UTC>", "elapsed_ms": 412.3}

``proceed``: open the barrier. ``secondary``: send the traveller to an officer, with the
reason (``code`` details it: a quality refusal code such as ``no_face``, an MRZ check,
``holder_mismatch``). ``refused``: the service refused the query (``code`` is its
stable error code, ``docs/api.md``); the lane treats it as secondary. Nothing in a
verdict is biometric or a document number.

The local interface is a Unix stream socket (:class:`VerdictSocket`, default
``DIR/verdict.sock``, mode 0660): the controller connects and reads newline-terminated
JSON verdicts as they happen; on connecting it first gets the latest verdict, if any.
The agent never reads from the socket and drops a client that cannot keep up
(one second to accept each line), so a stuck controller never stalls the lane.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Reason", "Verdict", "VerdictKind", "VerdictSocket"]

VerdictKind = Literal["proceed", "secondary", "refused"]
Reason = Literal["watchlist", "holder-mismatch", "quality", "document", "offline"]


@dataclass(frozen=True)
class Verdict:
    """One traveller's verdict (see the module docstring for the JSON contract)."""

    traveller: str
    verdict: VerdictKind
    reason: Reason | None = None
    code: str | None = None
    query_id: str | None = None
    queued: bool = False
    time: str = ""
    elapsed_ms: float = 0.0

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        data = asdict(self)
        data["time"] = self.time or dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        data["elapsed_ms"] = round(self.elapsed_ms, 1)
        return json.dumps(data, sort_keys=True)


class VerdictSocket:
    """Broadcast verdict lines to every client of a Unix stream socket."""

    def __init__(self, path: Path, *, mode: int = 0o660) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a previous run
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        os.chmod(path, mode)
        self._server.listen(8)
        self._clients: list[socket.socket] = []
        self._last: bytes | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="verdict-socket", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            client.settimeout(1.0)
            with self._lock:
                if self._last is not None and not self._send(client, self._last):
                    continue
                self._clients.append(client)

    @staticmethod
    def _send(client: socket.socket, line: bytes) -> bool:
        try:
            client.sendall(line)
        except OSError:
            client.close()
            return False
        return True

    def publish(self, verdict: Verdict) -> None:
        """Send one verdict line to every connected client (slow ones are dropped)."""
        line = (verdict.to_json() + "\n").encode()
        with self._lock:
            self._last = line
            self._clients = [c for c in self._clients if self._send(c, line)]

    def close(self) -> None:
        """Stop accepting, disconnect everyone, remove the socket file."""
        self._server.close()
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients = []
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
