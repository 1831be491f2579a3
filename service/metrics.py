"""Prometheus metrics for one service instance (its own registry, so tests can build many).

Labels carry route templates, listener names and status codes only: never gate-supplied
strings beyond the gate id, never payloads.

The series include the watchlist size and decision counts, which admins and gates must
not learn, so ``GET /metrics`` answers only a scraper that sends the deployment's scrape
token (``Authorization: Bearer …``): ``Settings.metrics_token``, else the file
``key_dir/metrics.token`` (created on first start, 0600). Staff tokens do not work.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["SCRAPE_TOKEN_FILE", "ServiceMetrics", "load_or_create_scrape_token", "scrape_allowed"]

SCRAPE_TOKEN_FILE: Final = "metrics.token"  # noqa: S105 - a file name, not a secret
_MIN_TOKEN_CHARS: Final = 32


def load_or_create_scrape_token(path: Path) -> str:
    """The scrape token stored at ``path``, created (0600, 256 random bits) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text(encoding="ascii").strip()
    if len(token) < _MIN_TOKEN_CHARS:
        raise ValueError(f"scrape token in {path.name} is shorter than {_MIN_TOKEN_CHARS}")
    return token


def scrape_allowed(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time comparison)."""
    if not token or not authorization or not authorization.startswith("Bearer "):
        return False
    offered = authorization.removeprefix("Bearer ").strip()
    return hmac.compare_digest(offered.encode(), token.encode())


_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The metric families the service updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "veilmatch_http_request_seconds",
            "HTTP request latency by listener, route template, method and status.",
            ("listener", "route", "method", "status"),
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.he_score_seconds = Histogram(
            "veilmatch_he_score_seconds",
            "Homomorphic scoring time per query inside a worker (masking included).",
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.queue_depth = Gauge(
            "veilmatch_match_queue_depth",
            "Match queries queued or running in the scoring workers.",
            registry=self.registry,
        )
        self.prepared = Counter(
            "veilmatch_match_prepared_total",
            "Matches under a single-ciphertext parameter set by whether the worker used a "
            "query prepared from the gate's committed seed (used) or scored it all (missed).",
            ("outcome",),
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "veilmatch_match_worker_restarts_total",
            "Scoring worker processes replaced after one died (its replacement is ready).",
            registry=self.registry,
        )
        self.audit_append_seconds = Histogram(
            "veilmatch_audit_append_seconds",
            "Time to append events to the audit log inside the record's transaction.",
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.decisions = Counter(
            "veilmatch_match_decisions_total",
            "Match outcomes returned to gates.",
            ("outcome",),
            registry=self.registry,
        )
        self.denials = Counter(
            "veilmatch_denials_total",
            "Refused requests by stable error code.",
            ("code",),
            registry=self.registry,
        )
        self.audit_alarms = Counter(
            "veilmatch_audit_sequencer_alarms_total",
            "Checkpoints refused because audit entries were not written by the sequencer "
            "(rows inserted around it): investigate at once.",
            registry=self.registry,
        )
        self.gallery_size = Gauge(
            "veilmatch_gallery_entries",
            "Active watchlist templates in the encoded gallery.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
