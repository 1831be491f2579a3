# METADATA
# title: Hong Kong profile tests
# description: >-
#   The Hong Kong profile's own periods, watchlist bases and obligations under
#   the Personal Data (Privacy) Ordinance. These run only when the Hong Kong
#   profile is active.
# custom:
#   profile: hk
package veilmatch.profiles.hk_test

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
	{"case": "a crossing record is deleted after one day (DPP2)", "input": _record("crossing_record", "recorded", 1), "want": {"action": "delete", "retention_days": 1}},
	{"case": "a confirmed alert is redacted after a year", "input": _record("alert", "confirmed", 365), "want": {"action": "redact", "retention_days": 365}},
	{"case": "an audit payload is redacted after six months", "input": _record("audit_payload", "recorded", 183), "want": {"action": "redact", "retention_days": 183}},
	{"case": "an expired watchlist entry is erased at once (DPP2, s. 26)", "input": _record("watchlist_entry", "expired", 0), "want": {"action": "delete", "retention_days": 0}},
]

alert_cases := [
	{"case": "an entry under Cap. 60 raises an alert", "input": _hit("hk-cap60"), "want": {"alert": true}},
	{"case": "an entry under Cap. 109 raises an alert", "input": _hit("hk-cap109"), "want": {"alert": true}},
	{"case": "an entry naming s. 58 raises an alert", "input": _hit("hk-cap486-s58"), "want": {"alert": true}},
	{"case": "an entry under the Mainland customs law is not recognised in Hong Kong", "input": _hit("cn-customs-law"), "want": {"alert": false}},
]

obligation_cases := [
	{"case": "travellers are informed on or before collection (DPP1(3))", "input": {"watchlist_size": 0}, "want": {"notice": {"applies": true, "kind": "duty"}}},
	{"case": "a privacy impact assessment is recommended, not required", "input": {"watchlist_size": 0}, "want": {"pia": {"applies": true, "kind": "recommended"}}},
	{"case": "the privacy policy statement is a duty (DPP5)", "input": {"watchlist_size": 0}, "want": {"privacy-policy": {"applies": true, "kind": "duty", "legal_basis": "Cap. 486 Sch. 1 DPP5"}}},
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

test_runs_under_the_hong_kong_profile if {
	profile.id == "hk"
}

test_every_data_protection_principle_is_in_the_catalogue if {
	every n in numbers.range(1, 6) {
		profile.active.legal_bases[sprintf("hk-cap486-dpp%d", [n])].status == "checked"
	}
}
