"""Both engines behind one interface: provenance, fail-closed behaviour, safe reloads."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.settings import load_settings
from policy import engine as queries
from policy._opa import compile_bundle
from policy.bundles import PolicyBundle
from policy.embedded import EmbeddedEngine
from policy.engine import Decision, PolicyEngine
from policy.errors import (
    NoPolicyLoadedError,
    PolicyEngineUnavailableError,
    PolicyError,
    PolicyLoadError,
    UndefinedDecisionError,
)
from policy.factory import engine_from_settings
from policy.local_opa import LocalOpaServer
from policy.opa_http import HttpEngine
from tests.policy.conftest import replace_in

OFFICER = {"role": "officer", "action": "alert.read", "subject": "officer-1"}

# Test package -> (table rule, query): the Rego test tables cover every rule.
_TABLES = {
    ("veilmatch.access_test", "cases"): queries.ACCESS,
    ("veilmatch.match_test", "cases"): queries.MATCH,
    ("veilmatch.alert_test", "cases"): queries.ALERT,
    ("veilmatch.alert_test", "review_cases"): queries.ALERT_REVIEW,
    ("veilmatch.retention_test", "cases"): queries.RETENTION,
}
_EXTRA: list[tuple[str, dict[str, Any]]] = [
    (queries.RETENTION_PERIODS, {}),
    (queries.ALERT, {"now": "noon", "hits": []}),  # undefined
    (queries.ALERT_REVIEW, {}),  # undefined
    (queries.RETENTION, {"kind": "alert", "state": "open"}),  # undefined
    ("veilmatch.access.no_such_rule", OFFICER),  # undefined
]


def agreement_table(bundle: PolicyBundle) -> list[tuple[str, dict[str, Any]]]:
    engine = compile_bundle(bundle, include_tests=True)
    rows = [
        (query, case["input"])
        for (package, rule), query in _TABLES.items()
        for case in engine.eval_document(f"{package}.{rule}")
    ]
    engine.close()
    return rows + _EXTRA


def outcome(engine: PolicyEngine, query: str, doc: dict[str, Any]) -> Any:
    try:
        return engine.evaluate(query, doc).result
    except UndefinedDecisionError:
        return "<undefined>"


def test_embedded_and_http_engines_agree_on_every_rule(
    bundle: PolicyBundle, embedded: EmbeddedEngine, http_engine: HttpEngine
) -> None:
    table = agreement_table(bundle)
    assert len(table) > 70
    assert {q for q, _ in table} >= {
        queries.ACCESS,
        queries.MATCH,
        queries.ALERT,
        queries.ALERT_REVIEW,
        queries.RETENTION,
        queries.RETENTION_PERIODS,
    }
    disagreements = [
        (q, doc) for q, doc in table if outcome(embedded, q, doc) != outcome(http_engine, q, doc)
    ]
    assert disagreements == []
    assert sum(outcome(embedded, q, d) == "<undefined>" for q, d in table) == 4


@pytest.mark.parametrize("kind", ["embedded", "http"])
def test_decisions_carry_a_fresh_id_and_the_bundle_digest(
    kind: str, bundle: PolicyBundle, embedded: EmbeddedEngine, http_engine: HttpEngine
) -> None:
    engine: PolicyEngine = embedded if kind == "embedded" else http_engine
    first, second = (
        engine.evaluate(queries.ACCESS, OFFICER),
        engine.evaluate(queries.ACCESS, OFFICER),
    )
    assert isinstance(first, Decision) and first.allow
    assert first.bundle_digest == bundle.digest == engine.bundle_digest
    assert uuid.UUID(first.decision_id).version == 4 and first.decision_id != second.decision_id
    assert first.provenance() == {
        "decision_id": first.decision_id,
        "bundle_digest": bundle.digest,
        "query": queries.ACCESS,
        "profile": "eu",
    }
    if kind == "http":
        assert first.engine_decision_id  # the server's own id, for its decision logs


@pytest.mark.parametrize("kind", ["embedded", "http"])
def test_undefined_fails_closed_with_provenance(
    kind: str, embedded: EmbeddedEngine, http_engine: HttpEngine
) -> None:
    engine: PolicyEngine = embedded if kind == "embedded" else http_engine
    with pytest.raises(UndefinedDecisionError) as caught:
        engine.evaluate(queries.ALERT, {"now": "not a time", "hits": []})
    assert caught.value.bundle_digest == engine.bundle_digest
    assert uuid.UUID(caught.value.decision_id)


@pytest.mark.parametrize("kind", ["embedded", "http"])
def test_a_broken_bundle_is_refused_and_the_previous_stays_active(
    kind: str, bundle: PolicyBundle, embedded: EmbeddedEngine, http_engine: HttpEngine
) -> None:
    engine: PolicyEngine = embedded if kind == "embedded" else http_engine
    broken = replace_in(
        bundle,
        "veilmatch/access/access.rego",
        "_identified(input)\n\tevery",
        "_identified(input)\n\tnot_a_function(1)\n\tevery",
    )
    with pytest.raises(PolicyLoadError, match="undefined function not_a_function") as caught:
        engine.load(broken)
    assert caught.value.digest == broken.digest
    assert engine.bundle_digest == bundle.digest
    assert engine.evaluate(queries.ACCESS, OFFICER).allow
    unparsable = bundle.with_file(
        "veilmatch/access/access.rego", b"package veilmatch.access\nallow if {\n"
    )
    with pytest.raises(PolicyLoadError, match="rego_parse_error"):
        engine.load(unparsable)
    assert engine.evaluate(queries.ACCESS, OFFICER).bundle_digest == bundle.digest


@pytest.mark.parametrize("kind", ["embedded", "http"])
def test_loading_a_new_version_switches_decisions_and_reports_both_digests(
    kind: str, bundle: PolicyBundle, embedded: EmbeddedEngine, http_engine: HttpEngine
) -> None:
    engine: PolicyEngine = embedded if kind == "embedded" else http_engine
    stricter = replace_in(
        bundle,
        "params/access/data.json",
        '"roles": ["officer", "supervisor"], "constraints": []},\n    "alert.review"',
        '"roles": ["supervisor"], "constraints": []},\n    "alert.review"',
    )
    event = engine.load(stricter)
    assert (event.digest, event.previous_digest, event.engine) == (
        stricter.digest,
        bundle.digest,
        kind,
    )
    audit = event.to_audit()
    assert audit["profile"] == "eu"
    assert (
        audit["event"] == "policy.load"
        and {
            "path": "params/access/data.json",
            "sha256": dict(stricter.manifest)["params/access/data.json"],
        }
        in audit["files"]
    )
    decision = engine.evaluate(queries.ACCESS, OFFICER)
    assert not decision.allow and decision.bundle_digest == stricter.digest


def test_server_side_refusal_is_reported_with_the_servers_message(bundle: PolicyBundle) -> None:
    with LocalOpaServer() as server:
        engine = HttpEngine(server.url)
        # Someone else's module in the same package makes the server reject ours.
        import requests

        requests.put(
            f"{server.url}/v1/policies/intruder.rego",
            data=b"package veilmatch.access\ndefault allow := true\n",
            timeout=5,
        ).raise_for_status()
        with pytest.raises(PolicyLoadError, match="multiple default rules"):
            engine.load(bundle)
        with pytest.raises(NoPolicyLoadedError):
            engine.evaluate(queries.ACCESS, OFFICER)
        assert engine.server_digest() is None


def test_http_engine_reports_the_pushed_digest(
    http_engine: HttpEngine, bundle: PolicyBundle
) -> None:
    assert http_engine.server_digest() == bundle.digest


def test_unreachable_server_fails_closed(bundle: PolicyBundle) -> None:
    with LocalOpaServer() as server:
        url = server.url
        engine = HttpEngine(url, timeout=1.0)
        engine.load(bundle)
    with pytest.raises(PolicyEngineUnavailableError):
        engine.evaluate(queries.ACCESS, OFFICER)


def test_queries_and_inputs_are_checked(embedded: EmbeddedEngine) -> None:
    for bad in [
        "",
        "veilmatch",
        "data.veilmatch.access",
        "veilmatch.access.decision; true",
        "x.y[0]",
    ]:
        with pytest.raises(PolicyError, match="malformed policy query"):
            embedded.evaluate(bad, OFFICER)
    with pytest.raises(PolicyError, match="JSON object"):
        embedded.evaluate(queries.ACCESS, ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="malformed OPA URL"):
        HttpEngine("ftp://opa")


def test_no_bundle_means_no_decision() -> None:
    engine = EmbeddedEngine()
    with pytest.raises(NoPolicyLoadedError):
        engine.evaluate(queries.ACCESS, OFFICER)
    with pytest.raises(NoPolicyLoadedError):
        _ = engine.bundle_digest


def test_engine_from_settings_embedded_with_a_policy_dir_override(
    tmp_path, bundle: PolicyBundle
) -> None:
    import shutil

    from policy.bundles import default_bundle_dir

    shutil.copytree(default_bundle_dir(), tmp_path / "bundle")
    settings = load_settings(data_dir=tmp_path, policy_dir=tmp_path / "bundle")
    engine, event = engine_from_settings(settings)
    assert engine.kind == "embedded" and event.digest == bundle.digest


def test_engine_from_settings_http(tmp_path, bundle: PolicyBundle) -> None:
    with LocalOpaServer() as server:
        engine, event = engine_from_settings(
            load_settings(data_dir=tmp_path, policy_engine="http", opa_url=server.url)
        )
        assert engine.kind == "http" and event.digest == bundle.digest
        assert engine.evaluate(queries.ACCESS, OFFICER).allow
        engine.close()
