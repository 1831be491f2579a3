"""What ``veilmatch gate status`` reports: local state, the agent's last heartbeat and
counters (``status.json``, written by the agent), and the service's view of the gate.

Nothing here is biometric: ids, times, counts, queue depth.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from gate.client import ServiceRefusedError, ServiceUnreachableError
from gate.errors import GateError
from gate.secretfile import read_secret
from gate.state import GateState
from gate.tlsreq import certificate_info

__all__ = ["gate_status", "read_agent_status", "write_agent_status"]

#: What a refused heartbeat says about registration.
_REGISTRATION = {
    "gate-pending": "pending",
    "gate-revoked": "revoked",
    "gate-unknown": "not-registered",
    "certificate-mismatch": "certificate-mismatch",
    "key-expired": "key-expired",
}


def write_agent_status(path: Path, status: dict[str, Any]) -> None:
    """Replace ``status.json`` atomically (not secret: times and counts)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_agent_status(path: Path) -> dict[str, Any]:
    """The agent's last ``status.json``, or ``{}`` if it never ran (or the file is bad)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _certificate(gate: GateState) -> dict[str, Any]:
    paths = gate.paths
    if not paths.tls_cert.is_file():
        return {"state": "missing", "csr": str(paths.tls_csr)}
    info = certificate_info(paths.tls_cert.read_bytes(), read_secret(paths.tls_key))
    return {
        "state": "ok" if info.matches_key else "not-for-this-key",
        "common_name": info.common_name,
        "not_after": info.not_after.isoformat(),
        "ca": paths.ca_cert.is_file(),
    }


def _service(gate: GateState, clock_offset_s: float) -> dict[str, Any]:
    try:
        client = gate.client(clock=lambda: time.time() + clock_offset_s, timeout_s=10.0)
    except GateError as exc:
        return {"reachable": None, "registration": "unknown", "detail": str(exc)}
    try:
        answer = client.heartbeat()
    except ServiceUnreachableError:
        return {"reachable": False, "registration": "unknown"}
    except ServiceRefusedError as exc:
        state = _REGISTRATION.get(exc.code, "refused")
        return {"reachable": True, "registration": state, "code": exc.code}
    finally:
        client.close()
    return {
        "reachable": True,
        "registration": "approved",
        "key_id": answer.get("key_id"),
        "key_expires_at": answer.get("key_expires_at"),
        "service_time": answer.get("time"),
    }


def gate_status(
    gate: GateState, *, contact_service: bool = True, clock_offset_s: float = 0.0
) -> dict[str, Any]:
    """The whole report as a JSON-able dict (see ``docs/gate.md``, *Status*)."""
    queue = gate.queue()
    try:
        stats = queue.stats()
    finally:
        queue.close()
    agent = read_agent_status(gate.paths.status)
    created = gate.he_created_at
    report: dict[str, Any] = {
        "gate_id": gate.config.gate_id,
        "site": gate.config.site,
        "service_url": gate.config.service_url,
        "certificate": _certificate(gate),
        "he_key": {
            "parameter_set": gate.config.parameter_set,
            "created_at": created.isoformat(),
            "age_days": round((dt.datetime.now(dt.UTC) - created).total_seconds() / 86400, 2),
        },
        "offline_queue": {"items": stats.items, "oldest_age_s": stats.oldest_age_s},
        "agent": {
            "last_heartbeat": agent.get("last_heartbeat"),
            "running_since": agent.get("started_at"),
            "counters": agent.get("counters", {}),
        },
    }
    if contact_service:
        report["service"] = _service(gate, clock_offset_s)
    return report
