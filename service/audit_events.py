"""Typed constructors for the audit events the service writes, one per kind of event.

Call sites build events here instead of spelling type strings, subjects and payload
keys each time, so every event of one kind has the same shape. A constructor for a
state change takes the :class:`~service.ports.PolicyDecision` that allowed it and is
the only way its event is built, so the entry always carries that decision's id and
bundle digest. Payloads hold pseudonymous details only (ids, counts, codes, short
reasons cut to 200 characters): never a template, ciphertext, key, token or document
pseudonym.
"""

from __future__ import annotations

import datetime as dt
import re

from audit.events import EventType
from service.accounts import Principal
from service.decisions import AlertDecision
from service.gates import GateIdentity
from service.ports import PolicyDecision, ServiceEvent

__all__ = [
    "access_denied",
    "account_created",
    "actor",
    "alert_raised",
    "alert_reviewed",
    "denials_aggregated",
    "gate_approved",
    "gate_key_rotated",
    "gate_registration_requested",
    "gate_revoked",
    "login_locked",
    "match_decided",
    "match_queried",
    "watchlist_approved",
    "watchlist_enrolled",
    "watchlist_renewed",
    "watchlist_revoked",
]

_REASON_CHARS = 200
#: What a gate id may look like in a subject (the audit package's subject syntax).
_GATE_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


def actor(principal: Principal) -> str:
    """``<role>:<subject>``, the audit actor of a staff member or gate."""
    return f"{principal.role}:{principal.subject}"


def _event(
    kind: EventType,
    who: str,
    subjects: tuple[str, ...],
    payload: dict[str, object],
    decision: PolicyDecision,
) -> ServiceEvent:
    return ServiceEvent(
        kind.value,
        who,
        subjects,
        payload,
        decision_id=decision.decision_id,
        bundle_digest=decision.bundle_digest,
    )


# --- accounts and gates (staff) --------------------------------------------------------


def account_created(
    by: Principal, account_id: str, role: str, decision: PolicyDecision
) -> ServiceEvent:
    """An admin created a staff account."""
    payload: dict[str, object] = {"action": "account.create", "role": role}
    return _event(EventType.ADMIN, actor(by), (f"account:{account_id}",), payload, decision)


def gate_approved(by: Principal, gate_id: str, decision: PolicyDecision) -> ServiceEvent:
    """An admin activated a pending gate."""
    payload: dict[str, object] = {"step": "approved"}
    return _event(EventType.GATE_REGISTER, actor(by), (f"gate:{gate_id}",), payload, decision)


def gate_revoked(by: Principal, gate_id: str, decision: PolicyDecision) -> ServiceEvent:
    """An admin revoked a gate and retired its keys."""
    payload: dict[str, object] = {"action": "gate.revoke"}
    return _event(EventType.ADMIN, actor(by), (f"gate:{gate_id}",), payload, decision)


# --- gates (gate API) ------------------------------------------------------------------


def gate_registration_requested(
    gate_id: str, site: str, key_id: str, cert_sha256: str, decision: PolicyDecision
) -> ServiceEvent:
    """A gate asked to be registered (pending until an admin approves)."""
    subject = f"gate:{gate_id}"
    payload: dict[str, object] = {
        "step": "requested",
        "site": site,
        "key_id": key_id,
        "cert_sha256": cert_sha256,
    }
    return _event(EventType.GATE_REGISTER, subject, (subject,), payload, decision)


def gate_key_rotated(
    identity: GateIdentity, new_key_id: str, decision: PolicyDecision
) -> ServiceEvent:
    """A gate replaced its signing and HE keys."""
    subject = f"gate:{identity.gate_id}"
    payload: dict[str, object] = {"old_key_id": identity.key_id, "new_key_id": new_key_id}
    return _event(EventType.GATE_KEY_ROTATE, subject, (subject,), payload, decision)


def match_queried(
    identity: GateIdentity,
    query_id: str,
    *,
    gallery_version: str,
    gallery_size: int,
    travel_info: bool,
    request_id: str,
    decision: PolicyDecision,
) -> ServiceEvent:
    """A gate's encrypted search was scored (the match policy allowed it)."""
    gate = f"gate:{identity.gate_id}"
    payload: dict[str, object] = {
        "key_id": identity.key_id,
        "he_key_id": identity.he_key_id,
        "gallery_version": gallery_version,
        "gallery_size": gallery_size,
        "travel_info": travel_info,
        "request_id": request_id,
    }
    return _event(EventType.MATCH_QUERY, gate, (f"query:{query_id}", gate), payload, decision)


def match_decided(
    gate_id: str,
    query_id: str,
    hits: list[str],
    alert: AlertDecision,
    gallery_version: str,
) -> ServiceEvent:
    """The outcome of a reveal, as the alert policy decided it."""
    subjects = (f"query:{query_id}", *(f"watchlist:{h}" for h in hits))
    payload: dict[str, object] = {
        "outcome": alert.outcome,
        "hits": len(hits),
        "reason": (alert.reason or "")[:_REASON_CHARS],
        "severity": alert.severity if alert.severity is not None else "none",
        "gallery_version": gallery_version,
        "frequent_crossing": alert.frequent_crossing,
    }
    return _event(EventType.MATCH_DECISION, f"gate:{gate_id}", subjects, payload, alert.policy)


def alert_raised(
    gate_id: str,
    alert_id: str,
    query_id: str,
    entries: list[str],
    alert: AlertDecision,
    gallery_version: str,
) -> ServiceEvent:
    """An alert was raised for officers to review."""
    subjects = (f"alert:{alert_id}", f"query:{query_id}", *(f"watchlist:{e}" for e in entries))
    payload: dict[str, object] = {
        "gate_id": gate_id,
        "reason": (alert.reason or "")[:_REASON_CHARS],
        "severity": alert.severity or "",
        "gallery_version": gallery_version,
        "required_reviewers": alert.required_reviewers,
    }
    return _event(EventType.ALERT_RAISED, "system", subjects, payload, alert.policy)


# --- watchlist and alerts (staff) ------------------------------------------------------


def watchlist_enrolled(
    by: Principal,
    entry_id: str,
    *,
    source: str,
    legal_basis: str,
    category: str,
    decision: PolicyDecision,
) -> ServiceEvent:
    """A watchlist entry was proposed (pending until a supervisor approves)."""
    payload: dict[str, object] = {
        "source": source,
        "legal_basis": legal_basis[:_REASON_CHARS],
        "category": category,
        "status": "pending",
    }
    subjects = (f"watchlist:{entry_id}",)
    return _event(EventType.WATCHLIST_ENROL, actor(by), subjects, payload, decision)


def watchlist_approved(
    by: Principal, entry_id: str, legal_basis: str, decision: PolicyDecision
) -> ServiceEvent:
    """A supervisor approved a pending entry (four-eyes)."""
    payload: dict[str, object] = {"legal_basis": legal_basis[:_REASON_CHARS]}
    subjects = (f"watchlist:{entry_id}",)
    return _event(EventType.WATCHLIST_APPROVE, actor(by), subjects, payload, decision)


def watchlist_renewed(
    by: Principal,
    entry_id: str,
    legal_basis: str,
    expires_at: dt.datetime,
    decision: PolicyDecision,
) -> ServiceEvent:
    """An entry was extended with a restated legal basis."""
    payload: dict[str, object] = {
        "legal_basis": legal_basis[:_REASON_CHARS],
        "expires_at": expires_at.isoformat(),
    }
    subjects = (f"watchlist:{entry_id}",)
    return _event(EventType.WATCHLIST_RENEW, actor(by), subjects, payload, decision)


def watchlist_revoked(
    by: Principal, entry_id: str, reason: str, decision: PolicyDecision
) -> ServiceEvent:
    """An entry was revoked (its sealed template deleted)."""
    payload: dict[str, object] = {"reason": reason[:_REASON_CHARS]}
    subjects = (f"watchlist:{entry_id}",)
    return _event(EventType.WATCHLIST_REVOKE, actor(by), subjects, payload, decision)


def alert_reviewed(
    by: Principal,
    alert_id: str,
    *,
    verdict: str,
    reason: str,
    status: str,
    decision: PolicyDecision,
) -> ServiceEvent:
    """A reviewer confirmed or dismissed an alert; ``status`` is the alert's new state."""
    payload: dict[str, object] = {
        "verdict": verdict,
        "reason": reason[:_REASON_CHARS],
        "status": status,
    }
    return _event(EventType.ALERT_REVIEW, actor(by), (f"alert:{alert_id}",), payload, decision)


# --- refusals --------------------------------------------------------------------------


def access_denied(
    principal: Principal | None,
    *,
    code: str,
    status: int,
    action: str | None,
    route: str,
    method: str,
    certificate: tuple[str, str] | None = None,
    claimed_gate: str | None = None,
) -> ServiceEvent:
    """A refused request (401, 403, gate refusal, rate limit). No policy decision allowed
    anything, so the entry has none.

    Without an authenticated principal the actor is ``system``. The subject is then the
    gate of the client ``certificate`` actually presented (``(common name, SHA-256)``),
    never the gate id the request merely claims: a certificate holder must not be able
    to pin refusals on another gate. A differing claim is kept in the payload only.
    """
    payload: dict[str, object] = {
        "code": code,
        "status": status,
        "action": action,
        "route": route,
        "method": method,
    }
    subjects: tuple[str, ...] = ()
    if principal is not None:
        who = actor(principal)
    else:
        who = "system"
        if certificate is not None:
            common_name, sha256 = certificate
            payload["cert_sha256"] = sha256
            if _GATE_ID.fullmatch(common_name):
                subjects = (f"gate:{common_name}",)
        claim = f"gate:{claimed_gate}"
        plausible = claimed_gate and len(claimed_gate) <= 64 and _GATE_ID.fullmatch(claimed_gate)
        if plausible and claim not in subjects:
            payload["claimed_gate"] = claimed_gate
    return ServiceEvent(EventType.ACCESS_DENIED.value, who, subjects, payload)


def login_locked(
    scope: str,
    *,
    failures: int,
    until: dt.datetime,
    account_id: str | None = None,
    source: str | None = None,
) -> ServiceEvent:
    """A sign-in lock-out (one entry per lock, not per attempt; :mod:`service.throttle`).

    ``scope`` is ``account`` (subject: the account, when the typed name is one; the typed
    name itself is never recorded) or ``address`` (``source``: the client address).
    """
    payload: dict[str, object] = {
        "code": "login-locked",
        "scope": scope,
        "failures": failures,
        "locked_until": until.isoformat(),
    }
    subjects: tuple[str, ...] = ()
    if source is not None:
        payload["source"] = source
    if scope == "account":
        if account_id is not None:
            subjects = (f"account:{account_id}",)
        else:
            payload["account"] = "unknown"
    return ServiceEvent(EventType.ACCESS_DENIED.value, "system", subjects, payload)


def denials_aggregated(
    source: str,
    *,
    window_start: dt.datetime,
    window_s: int,
    lines: list[dict[str, object]],
    count: int,
) -> ServiceEvent:
    """The refusals without a principal from one source in one closed window
    (:mod:`service.denials`): their total and a per-route, per-code breakdown."""
    payload: dict[str, object] = {
        "code": "denials-aggregated",
        "source": source,
        "window_start": window_start.isoformat(),
        "window_s": window_s,
        "count": count,
        "denials": lines,
    }
    return ServiceEvent(EventType.ACCESS_DENIED.value, "system", (), payload)
