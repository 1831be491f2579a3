"""The gate agent: per traveller, document → capture → quality → embed → 1:1 holder
check → encrypt → match → reveal → verdict (``veilmatch gate run``).

Per traveller (:meth:`Agent.decide`), each step either passes or ends in a typed
:class:`~gate.verdicts.Verdict`, and nothing is sent before the local steps pass:

1. the MRZ parses and its check digits hold (``gate.document``), else *secondary,
   document*;
2. the frame gives one acceptable face (``FacePipeline.embed_one``), else *secondary,
   quality* with the refusal code;
3. with a chip portrait, live face and portrait compare at or above
   ``holder_threshold`` (cosine), else *secondary, holder-mismatch* and no 1:N query;
   an undecodable portrait is *secondary, document*;
4. the template is encrypted and matched under the document's keyed pseudonym:
   *proceed*, or *secondary, watchlist*; a service refusal is *refused* with its code;
5. the service unreachable: the sealed probe goes to the offline queue and the
   traveller gets the deployment's offline verdict (``offline_policy``: *proceed* by
   default, or *secondary, offline*); the queue drains after the next successful
   heartbeat or match, and each late outcome is logged (``late-outcome``).

Between travellers the agent sends a heartbeat every ``heartbeat_s`` and rewrites
``status.json``. The heartbeat's answer carries the key's expiry: once less than
``rotate_before_s`` remains (:func:`rotation_due`) and the offline queue is empty (its
probes are sealed under the current HE key), the agent makes a new signing key and new
HE keys, has the service accept them (``GateClient.rotate``, signed by the old key)
and then replaces them on disk (``GateState.save_keys``); a failed rotation is logged
and retried at the next heartbeat. :meth:`Agent.run` stops when ``stop`` is set (SIGTERM) after the
current traveller. The log (JSON lines on stderr) carries names, codes, ids and
counts, never images, templates or document numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from crypto.signing import SigningKey
from gate.client import (
    GateClient,
    MatchOutcome,
    SealGateCrypto,
    ServiceRefusedError,
    ServiceUnreachableError,
)
from gate.document import parse_mrz
from gate.errors import InvalidDocumentError, QualityError, QueueFullError
from gate.offline_queue import OfflineQueue
from gate.pipeline import FacePipeline
from gate.state import GateState
from gate.status import write_agent_status
from gate.travellers import FrameDirectory, Traveller, read_limited
from gate.verdicts import Verdict

__all__ = ["Agent", "AgentOptions", "rotation_due"]

Sink = Callable[[Verdict], None]


@dataclass(frozen=True)
class AgentOptions:
    """Deployment choices (``docs/gate.md``, *Operator's guide*). ``holder_threshold``
    is a cosine between the live face and the chip portrait."""

    holder_threshold: float = 0.36
    offline_policy: Literal["proceed", "secondary"] = "proceed"
    heartbeat_s: float = 60.0
    poll_s: float = 0.5
    rotate_before_s: float = 7 * 86400.0


def rotation_due(expires_at: str | None, now: float, before_s: float) -> bool:
    """Whether a key expiring at ``expires_at`` (ISO 8601, from the heartbeat) must be
    rotated at ``now`` (POSIX seconds): less than ``before_s`` seconds remain. An
    absent or unreadable expiry is never due (the service decides validity anyway)."""
    if not expires_at:
        return False
    try:
        expiry = dt.datetime.fromisoformat(expires_at)
    except ValueError:
        return False
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.UTC)
    return expiry.timestamp() - now < before_s


def _log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), file=sys.stderr, flush=True)


@dataclass
class Agent:
    """One gate's agent; build with :meth:`from_state`."""

    state: GateState
    pipeline: FacePipeline
    client: GateClient
    queue: OfflineQueue
    sinks: Sequence[Sink]
    options: AgentOptions = AgentOptions()
    clock: Callable[[], float] = time.time
    counters: Counter[str] = field(default_factory=Counter)
    last_heartbeat: str | None = None
    started_at: str = ""
    _next_heartbeat: float = 0.0

    # -- one traveller ------------------------------------------------------------

    def decide(self, traveller: Traveller) -> Verdict:
        """The traveller's verdict (module docstring, steps 1-5); never raises for bad
        input: every refusal is a verdict."""
        name = traveller.name
        today = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        try:
            document = parse_mrz(read_limited(traveller.mrz).decode("ascii"), today=today)
        except (InvalidDocumentError, UnicodeDecodeError, OSError) as exc:
            detail = str(exc) if isinstance(exc, InvalidDocumentError) else "mrz unreadable"
            return Verdict(name, "secondary", "document", _code(detail))
        if traveller.frame is None:
            return Verdict(name, "secondary", "quality", "no_frame")
        try:
            template = self.pipeline.embed_one(read_limited(traveller.frame))
        except QualityError as exc:
            return Verdict(name, "secondary", "quality", exc.code.value)
        except OSError:
            return Verdict(name, "secondary", "quality", "unreadable_image")
        if traveller.portrait is not None:
            refusal = self._holder_check(name, traveller, template)
            if refusal is not None:
                return refusal
        return self._match(name, template, self.state.pseudonym(document.number))

    def _holder_check(
        self, name: str, traveller: Traveller, live: np.ndarray[Any, Any]
    ) -> Verdict | None:
        assert traveller.portrait is not None
        self.counters["holder_checks"] += 1
        try:
            portrait = self.pipeline.embed_one(read_limited(traveller.portrait))
        except (QualityError, OSError):
            return Verdict(name, "secondary", "document", "portrait_unusable")
        if float(np.dot(live, portrait)) < self.options.holder_threshold:
            self.counters["holder_mismatches"] += 1
            return Verdict(name, "secondary", "holder-mismatch", "holder_mismatch")
        return None

    def _match(self, name: str, template: np.ndarray[Any, Any], pseudonym: str) -> Verdict:
        try:
            outcome = self.client.check_or_queue(template, self.queue, pseudonym)
        except ServiceRefusedError as exc:
            return Verdict(name, "refused", None, exc.code)
        except QueueFullError:
            return Verdict(name, "secondary", "offline", "queue_full")
        if outcome is None:
            self.counters["queued"] += 1
            if self.options.offline_policy == "secondary":
                return Verdict(name, "secondary", "offline", "service_unreachable", queued=True)
            return Verdict(name, "proceed", None, "service_unreachable", queued=True)
        self._drain()
        if outcome.outcome == "secondary":
            return Verdict(name, "secondary", "watchlist", None, outcome.query_id)
        return Verdict(name, "proceed", None, None, outcome.query_id)

    # -- between travellers -------------------------------------------------------

    def _drain(self) -> None:
        if self.queue.stats().items == 0:
            return

        def late(outcome: MatchOutcome) -> None:
            self.counters["drained"] += 1
            _log("late-outcome", query_id=outcome.query_id, outcome=outcome.outcome)

        report = self.queue_drain(late)
        _log("queue-drained", sent=report.sent, remaining=report.remaining, error=report.error)

    def queue_drain(self, on_outcome: Callable[[MatchOutcome], None]) -> Any:
        """Send the offline backlog now (stops at the first failure)."""
        return self.client.drain(self.queue, on_outcome)

    def heartbeat_if_due(self, *, force: bool = False) -> None:
        """Heartbeat on schedule; on success drain the queue. Never raises."""
        now = time.monotonic()
        if not force and now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.options.heartbeat_s
        try:
            answer = self.client.heartbeat()
        except (ServiceUnreachableError, ServiceRefusedError) as exc:
            _log("heartbeat-failed", error=getattr(exc, "code", type(exc).__name__))
            return
        self.last_heartbeat = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat()
        self._drain()
        expires = answer.get("key_expires_at")
        if rotation_due(expires, self.clock(), self.options.rotate_before_s):
            self.rotate_keys()
        self._write_status()

    def rotate_keys(self) -> bool:
        """Replace both keys (module docstring); True if rotated. Never raises."""
        if self.queue.stats().items:
            _log("rotation-deferred", reason="offline queue not empty")
            return False
        signing = SigningKey.generate()
        he = SealGateCrypto.generate(self.state.config.parameter_set)
        try:
            answer = self.client.rotate(signing, he)
        except (ServiceUnreachableError, ServiceRefusedError) as exc:
            _log("rotation-failed", error=getattr(exc, "code", type(exc).__name__))
            return False
        # The service now knows only the new keys: persist them before anything else.
        self.state.save_keys(signing, he)
        self.counters["key_rotations"] += 1
        _log("keys-rotated", key_id=answer.get("key_id"))
        return True

    def _write_status(self) -> None:
        write_agent_status(
            self.state.paths.status,
            {
                "last_heartbeat": self.last_heartbeat,
                "started_at": self.started_at,
                "counters": dict(self.counters),
                "queue_items": self.queue.stats().items,
            },
        )

    def handle(self, traveller: Traveller) -> Verdict:
        """Decide, stamp and publish one traveller's verdict; count it."""
        start = time.perf_counter()
        verdict = self.decide(traveller)
        stamp = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="milliseconds")
        verdict = replace(verdict, time=stamp, elapsed_ms=(time.perf_counter() - start) * 1000)
        self.counters["travellers"] += 1
        self.counters[verdict.verdict] += 1
        for sink in self.sinks:
            sink(verdict)
        self._write_status()
        return verdict

    def run(self, source: FrameDirectory, stop: threading.Event, *, once: bool = False) -> None:
        """Serve travellers until ``stop`` is set (or, with ``once``, the directory is
        empty); the traveller in progress always finishes."""
        self.started_at = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat()
        self.heartbeat_if_due(force=True)
        while not stop.is_set():
            handled = 0
            for traveller in source.pending():
                if stop.is_set():
                    break
                self.handle(traveller)
                source.finish(traveller)
                handled += 1
                self.heartbeat_if_due()
            if once and handled == 0:
                break
            self.heartbeat_if_due()
            stop.wait(self.options.poll_s if handled == 0 else 0)
        self._write_status()


def _code(detail: str) -> str:
    """A stable code from a document refusal (its check name, lower-case, dashes)."""
    text = detail.split(":", 1)[-1].strip().lower()
    return "mrz:" + "-".join(text.replace(",", " ").split())[:80]
