"""The barrier controller's contract: verdict JSON lines on a Unix socket."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from gate.verdicts import Verdict, VerdictSocket


def _connect(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect(str(path))
    return client


def _lines(client: socket.socket, count: int) -> list[dict[str, object]]:
    data = b""
    while data.count(b"\n") < count:
        data += client.recv(4096)
    return [json.loads(line) for line in data.splitlines()]


def test_controllers_get_the_latest_then_every_verdict(tmp_path: Path):
    path = tmp_path / "verdict.sock"
    server = VerdictSocket(path)
    try:
        assert path.stat().st_mode & 0o777 == 0o660
        server.publish(Verdict("001", "proceed", time="t1"))
        late = _connect(path)
        assert _lines(late, 1) == [
            {
                "code": None,
                "elapsed_ms": 0.0,
                "query_id": None,
                "queued": False,
                "reason": None,
                "time": "t1",
                "traveller": "001",
                "verdict": "proceed",
            }
        ]
        other = _connect(path)
        _lines(other, 1)
        time.sleep(0.1)  # both accepted
        server.publish(Verdict("002", "secondary", "watchlist"))
        for client in (late, other):
            (line,) = _lines(client, 1)
            assert (line["traveller"], line["reason"]) == ("002", "watchlist")
        other.close()
        server.publish(Verdict("003", "refused", code="rate-limited"))  # a gone client: dropped
        assert _lines(late, 1)[0]["code"] == "rate-limited"
        late.close()
    finally:
        server.close()
    assert not path.exists()
