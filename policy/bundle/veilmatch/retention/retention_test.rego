# METADATA
# title: Retention tests
# description: Each case is one record (kind, state, age in days) and what the policy must say to do with it.
package veilmatch.retention_test

import data.veilmatch.retention

_record(kind, state, age) := {"kind": kind, "state": state, "age_days": age}

cases := [
	{
		"case": "a probe that raised no alert is deleted at once",
		"input": _record("probe_ciphertext", "unused", 0),
		"want": {"action": "delete", "retention_days": 0},
	},
	{
		"case": "a probe behind an open alert is kept for review",
		"input": _record("probe_ciphertext", "alert_open", 2.5),
		"want": {"action": "keep", "retention_days": 30, "reason": "within its retention period"},
	},
	{
		"case": "a probe behind an alert open 30 days is deleted",
		"input": _record("probe_ciphertext", "alert_open", 30),
		"want": {"action": "delete", "retention_days": 30, "reason": "retention period over"},
	},
	{
		"case": "a probe behind a dismissed alert is deleted at once",
		"input": _record("probe_ciphertext", "alert_dismissed", 0),
		"want": {"action": "delete"},
	},
	{
		"case": "a crossing record is kept during its first day",
		"input": _record("crossing_record", "recorded", 0.99),
		"want": {"action": "keep"},
	},
	{
		"case": "a crossing record is deleted after one day",
		"input": _record("crossing_record", "recorded", 1),
		"want": {"action": "delete", "retention_days": 1},
	},
	{
		"case": "a confirmed alert is redacted after a year",
		"input": _record("alert", "confirmed", 365),
		"want": {"action": "redact", "retention_days": 365},
	},
	{
		"case": "a dismissed alert is deleted after 30 days",
		"input": _record("alert", "dismissed", 31),
		"want": {"action": "delete"},
	},
	{
		"case": "an audit payload five months old is kept",
		"input": _record("audit_payload", "recorded", 150),
		"want": {"action": "keep", "retention_days": 183},
	},
	{
		"case": "an audit payload older than six months is redacted",
		"input": _record("audit_payload", "recorded", 183),
		"want": {"action": "redact"},
	},
	{
		"case": "a watchlist entry not renewed within 180 days is deleted",
		"input": _record("watchlist_entry", "active", 180),
		"want": {"action": "delete", "retention_days": 180},
	},
	{
		"case": "a revoked watchlist entry is deleted at once",
		"input": _record("watchlist_entry", "revoked", 0),
		"want": {"action": "delete"},
	},
	{
		"case": "a record of an unknown kind is kept and flagged",
		"input": _record("photo", "recorded", 5000),
		"want": {
			"action": "keep", "retention_days": null,
			"reason": "no retention period for this kind and state: kept for review",
		},
	},
]

failed contains c.case if {
	some c in cases
	not _passes(c)
}

_passes(c) if {
	got := retention.decision with input as c.input
	every key, value in c.want {
		got[key] == value
	}
}

test_all_cases_pass if {
	count(failed) == 0
}

test_audit_payloads_kept_at_least_six_months if {
	retention.periods.audit_payload.recorded.days >= 183
}

test_every_period_is_complete if {
	every states in retention.periods {
		every p in states {
			is_number(p.days)
			p.days >= 0
			p.action in {"delete", "redact"}
			is_string(p.legal_basis)
			is_string(p.title)
		}
	}
}

test_negative_age_has_no_decision if {
	not retention.decision with input as _record("alert", "open", -1)
}

test_missing_age_has_no_decision if {
	not retention.decision with input as {"kind": "alert", "state": "open"}
}
