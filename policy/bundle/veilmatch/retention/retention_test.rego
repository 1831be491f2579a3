# METADATA
# title: Retention tests
# description: >-
#   Each case is one record (kind, state, age in days) and what the policy must
#   say to do with it, for the periods of the active profile: kept while
#   younger than its period, then deleted or redacted as the period says. The
#   periods themselves are checked per profile.
package veilmatch.retention_test

import data.veilmatch.retention

_record(kind, state, age) := {"kind": kind, "state": state, "age_days": age}

_days(kind, state) := retention.periods[kind][state].days

_action(kind, state) := retention.periods[kind][state].action

cases := [
	{
		"case": "a probe that raised no alert is deleted at once",
		"input": _record("probe_ciphertext", "unused", 0),
		"want": {"action": "delete", "retention_days": 0},
	},
	{
		"case": "a probe behind an open alert is kept during its period",
		"input": _record("probe_ciphertext", "alert_open", 2.5),
		"want": {"action": "keep", "retention_days": _days("probe_ciphertext", "alert_open"), "reason": "within its retention period"},
	},
	{
		"case": "a probe behind an open alert is deleted when its period is over",
		"input": _record("probe_ciphertext", "alert_open", _days("probe_ciphertext", "alert_open")),
		"want": {"action": "delete", "reason": "retention period over"},
	},
	{
		"case": "a crossing record is kept until the end of its period",
		"input": _record("crossing_record", "recorded", _days("crossing_record", "recorded") - 0.01),
		"want": {"action": "keep"},
	},
	{
		"case": "a crossing record is deleted after its period",
		"input": _record("crossing_record", "recorded", _days("crossing_record", "recorded")),
		"want": {"action": "delete", "retention_days": _days("crossing_record", "recorded")},
	},
	{
		"case": "a confirmed alert is redacted at the end of its period",
		"input": _record("alert", "confirmed", _days("alert", "confirmed")),
		"want": {"action": "redact"},
	},
	{
		"case": "an audit payload one day before the end of its period is kept",
		"input": _record("audit_payload", "recorded", _days("audit_payload", "recorded") - 1),
		"want": {"action": "keep", "retention_days": _days("audit_payload", "recorded")},
	},
	{
		"case": "an audit payload is redacted at the end of its period",
		"input": _record("audit_payload", "recorded", _days("audit_payload", "recorded")),
		"want": {"action": "redact"},
	},
	{
		"case": "a revoked watchlist entry is deleted at once",
		"input": _record("watchlist_entry", "revoked", 0),
		"want": {"action": "delete", "retention_days": 0},
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

# In every profile, templates nobody needs are never kept and logs at least six months.
test_audit_payloads_kept_at_least_six_months if {
	retention.periods.audit_payload.recorded.days >= 183
}

test_unneeded_face_data_is_never_kept if {
	retention.periods.probe_ciphertext.unused.days == 0
	retention.periods.probe_ciphertext.alert_dismissed.days == 0
	retention.periods.watchlist_entry.revoked.days == 0
	retention.periods.watchlist_entry.expired.days == 0
}

test_every_period_is_complete if {
	count(retention.periods) == count(data.params.retention.records)
	every kind, states in data.params.retention.records {
		every state, _ in states {
			_complete(retention.periods[kind][state])
		}
	}
}

_complete(p) if {
	is_number(p.days)
	p.days >= 0
	p.action in {"delete", "redact"}
	is_string(p.legal_basis)
	p.legal_basis != ""
	is_string(p.title)
}

test_negative_age_has_no_decision if {
	not retention.decision with input as _record("alert", "open", -1)
}

test_missing_age_has_no_decision if {
	not retention.decision with input as {"kind": "alert", "state": "open"}
}
