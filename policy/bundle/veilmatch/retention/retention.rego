# METADATA
# title: Retention
# description: >-
#   How long each kind of record is kept in each state, and what happens when
#   that time is up: deleted, or redacted (personal details removed, the
#   skeleton kept for statistics and the audit chain). The periods and their
#   legal bases are the active jurisdiction profile's data, so the reviewed
#   table and the enforced period cannot drift apart. A record's age counts
#   from when it entered its current state.
package veilmatch.retention

import data.veilmatch.profile

# METADATA
# title: Retention periods
# description: >-
#   The active profile's period for every kind of record and state: days
#   kept, what happens then, and the legal bases. The kinds and states are
#   the same in every profile (params/retention); the loader refuses a
#   profile that leaves one without a valid period.
# custom:
#   query: veilmatch.retention.periods
#   output:
#     "<kind>.<state>.days": "number: days kept, 0 means removed by the next sweep"
#     "<kind>.<state>.action": "string: delete or redact"
#     "<kind>.<state>.title": "string: what the record is"
#     "<kind>.<state>.legal_basis": "string: the citations"
#     "<kind>.<state>.bases": "array of strings: the legal-basis ids"
#     "<kind>.<state>.why": "string: why this period"
periods[kind][state] := {
	"days": p.days,
	"action": p.action,
	"title": data.params.retention.records[kind][state],
	"legal_basis": profile.cite(p.bases),
	"bases": p.bases,
	"why": p.why,
} if {
	some kind, states in profile.active.retention
	some state, p in states
}

# METADATA
# title: Retention decision
# description: >-
#   For one record: keep it while it is younger than its period, otherwise
#   delete or redact it as the period says. A kind or state with no period
#   is kept and flagged, because deleting by mistake cannot be undone. A
#   request without a usable age has no decision (the caller keeps the
#   record).
# custom:
#   query: veilmatch.retention.decision
#   input:
#     kind: "string: probe_ciphertext, crossing_record, alert, audit_payload or watchlist_entry"
#     state: "string: the record's current state (see the periods table)"
#     age_days: "number: days since the record entered its current state, 0 or more (fractions allowed)"
#   output:
#     action: "string: keep, delete or redact"
#     retention_days: "number or null: the period that applies (null when none does)"
#     reason: "string: one sentence"
decision := _decide(input, periods) if {
	is_number(input.age_days)
	input.age_days >= 0
}

_decide(req, table) := {
	"action": "keep",
	"retention_days": null,
	"reason": "no retention period for this kind and state: kept for review",
} if {
	not _has_period(req, table)
} else := {
	"action": "keep",
	"retention_days": p.days,
	"reason": "within its retention period",
} if {
	p := table[req.kind][req.state]
	req.age_days < p.days
} else := {
	"action": p.action,
	"retention_days": p.days,
	"reason": "retention period over",
} if {
	p := table[req.kind][req.state]
}

_has_period(req, table) if table[req.kind][req.state]
