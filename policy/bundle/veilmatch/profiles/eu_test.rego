# METADATA
# title: EU profile tests
# description: >-
#   The EU profile's own periods, watchlist bases and obligations. These run
#   only when the EU profile is active; together with the shared tests they
#   must cover every policy line.
# custom:
#   profile: eu
package veilmatch.profiles.eu_test

import data.veilmatch.alert
import data.veilmatch.legal
import data.veilmatch.profile
import data.veilmatch.retention

_record(kind, state, age) := {"kind": kind, "state": state, "age_days": age}

_hit(basis) := {"now": "2025-06-02T10:00:00+08:00", "hits": [{
	"entry_id": "wl-1", "status": "active", "legal_basis": basis,
	"expires_at": "2025-12-31T23:59:59+08:00", "category": "parallel_trading",
}]}

retention_cases := [
	{"case": "a probe behind an open alert is deleted after 30 days", "input": _record("probe_ciphertext", "alert_open", 30), "want": {"action": "delete", "retention_days": 30}},
	{"case": "a probe behind a confirmed alert is kept 180 days", "input": _record("probe_ciphertext", "alert_confirmed", 179), "want": {"action": "keep", "retention_days": 180}},
	{"case": "a crossing record is deleted after one day", "input": _record("crossing_record", "recorded", 1), "want": {"action": "delete", "retention_days": 1}},
	{"case": "a confirmed alert is redacted after a year", "input": _record("alert", "confirmed", 365), "want": {"action": "redact", "retention_days": 365}},
	{"case": "a dismissed alert is deleted after 30 days", "input": _record("alert", "dismissed", 31), "want": {"action": "delete"}},
	{"case": "an audit payload five months old is kept", "input": _record("audit_payload", "recorded", 150), "want": {"action": "keep", "retention_days": 183}},
	{"case": "an audit payload older than six months is redacted", "input": _record("audit_payload", "recorded", 183), "want": {"action": "redact"}},
	{"case": "a watchlist entry not renewed within 180 days is deleted", "input": _record("watchlist_entry", "active", 180), "want": {"action": "delete", "retention_days": 180}},
]

alert_cases := [
	{"case": "an entry under Cap. 60 raises an alert", "input": _hit("hk-cap60"), "want": {"alert": true}},
	{"case": "an entry under Cap. 109 raises an alert", "input": _hit("hk-cap109"), "want": {"alert": true}},
	{"case": "an entry under Cap. 486 s. 58 raises an alert", "input": _hit("hk-cap486-s58"), "want": {"alert": true}},
	{"case": "an entry under the Mainland customs law is not recognised", "input": _hit("cn-customs-law"), "want": {"alert": false}},
]

obligation_cases := [
	{"case": "a data protection impact assessment is due before processing", "input": {"watchlist_size": 0}, "want": {"dpia": {"applies": true, "legal_basis": "GDPR Art. 35(3)"}}},
	{"case": "a fundamental rights impact assessment is due, to be confirmed", "input": {"watchlist_size": 0}, "want": {"fria": {"applies": true, "to_confirm": true}}},
]

failed contains c.case if {
	some c in retention_cases
	got := retention.decision with input as c.input
	not _matches(got, c.want)
}

failed contains c.case if {
	some c in alert_cases
	got := alert.decision with input as c.input
	not _matches(got, c.want)
}

failed contains c.case if {
	some c in obligation_cases
	got := {o.id: o | some o in legal.obligations.obligations} with input as c.input
	not _matches_each(got, c.want)
}

_matches(got, want) if {
	every key, value in want {
		got[key] == value
	}
}

_matches_each(got, want) if {
	every id, fields in want {
		_matches(got[id], fields)
	}
}

test_all_cases_pass if {
	count(failed) == 0
}

test_runs_under_the_eu_profile if {
	profile.id == "eu"
}

test_no_obligation_depends_on_the_watchlist_size if {
	got := legal.obligations with input as {"watchlist_size": 10000000}
	every o in got.obligations {
		o.threshold == null
	}
}
