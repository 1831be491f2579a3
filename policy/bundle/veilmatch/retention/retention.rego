# METADATA
# title: Retention
# description: >-
#   How long each kind of record is kept in each state, and what happens when
#   that time is up: deleted, or redacted (personal details removed, the
#   skeleton kept for statistics and the audit chain). Each period below is
#   one rule; the number of days written in its annotation is the value the
#   system uses, so the reviewed text and the enforced period cannot drift
#   apart. A record's age counts from when it entered its current state.
# custom:
#   legal_basis: >-
#     GDPR Art. 5(1)(e) storage limitation; EU AI Act Art. 19 and Art. 26(6)
#     (logs kept at least six months); ISO/IEC 24745 (renewable templates).
package veilmatch.retention

# METADATA
# title: Probe not needed by any alert
# description: >-
#   An encrypted face template from a search that raised no alert is not
#   kept: it is deleted at once.
# custom:
#   retention_days: 0
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(c) and (e); Cap. 486 DPP2
periods.probe_ciphertext.unused := _period(rego.metadata.rule())

# METADATA
# title: Probe behind an open alert
# description: Kept while officers review the alert, for at most 30 days.
# custom:
#   retention_days: 30
#   on_expiry: delete
#   legal_basis: EU AI Act Art. 14(5) (verification needs the input that led to the match)
periods.probe_ciphertext.alert_open := _period(rego.metadata.rule())

# METADATA
# title: Probe behind a confirmed alert
# description: Kept 180 days as the input that led to a confirmed match.
# custom:
#   retention_days: 180
#   on_expiry: delete
#   legal_basis: EU AI Act Art. 12(3)(c)
periods.probe_ciphertext.alert_confirmed := _period(rego.metadata.rule())

# METADATA
# title: Probe behind a dismissed alert
# description: Deleted at once once the alert is dismissed.
# custom:
#   retention_days: 0
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(e)
periods.probe_ciphertext.alert_dismissed := _period(rego.metadata.rule())

# METADATA
# title: Crossing record
# description: >-
#   A crossing (document pseudonym, gate, time) is kept one day: the
#   frequent-crossing signal only looks back 24 hours.
# custom:
#   retention_days: 1
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(c) and (e); Cap. 486 DPP2
periods.crossing_record.recorded := _period(rego.metadata.rule())

# METADATA
# title: Alert never reviewed
# description: An alert nobody reviewed within 30 days was not acted on and is deleted.
# custom:
#   retention_days: 30
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(e)
periods.alert.open := _period(rego.metadata.rule())

# METADATA
# title: Confirmed alert
# description: >-
#   Kept one year for complaints and proceedings, then redacted: the alert
#   stays as a count, without links to the watchlist entry or the traveller.
# custom:
#   retention_days: 365
#   on_expiry: redact
#   legal_basis: EU AI Act Art. 12(3); Cap. 486 s. 58
periods.alert.confirmed := _period(rego.metadata.rule())

# METADATA
# title: Dismissed alert
# description: Kept 30 days so the dismissal can be checked, then deleted.
# custom:
#   retention_days: 30
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(e)
periods.alert.dismissed := _period(rego.metadata.rule())

# METADATA
# title: Audit log payload
# description: >-
#   The details behind an audit log entry are kept at least six months
#   (183 days), then redacted. The entry's hash stays in the log, so proofs
#   over the log still verify after the details are gone.
# custom:
#   retention_days: 183
#   on_expiry: redact
#   legal_basis: EU AI Act Art. 19(1) and Art. 26(6) (at least six months)
periods.audit_payload.recorded := _period(rego.metadata.rule())

# METADATA
# title: Watchlist entry never approved
# description: An enrolment no supervisor approved within 30 days is deleted.
# custom:
#   retention_days: 30
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(e)
periods.watchlist_entry.pending := _period(rego.metadata.rule())

# METADATA
# title: Active watchlist entry
# description: >-
#   An approved entry lives 180 days from its approval or last renewal.
#   Renewal needs a supervisor and a legal basis; without renewal the entry
#   is deleted, face template included.
# custom:
#   retention_days: 180
#   on_expiry: delete
#   legal_basis: GDPR Art. 5(1)(e); ISO/IEC 24745 (renewability)
periods.watchlist_entry.active := _period(rego.metadata.rule())

# METADATA
# title: Revoked watchlist entry
# description: Deleted at once, face template included.
# custom:
#   retention_days: 0
#   on_expiry: delete
#   legal_basis: GDPR Art. 17
periods.watchlist_entry.revoked := _period(rego.metadata.rule())

# METADATA
# title: Expired watchlist entry
# description: Deleted at once, face template included.
# custom:
#   retention_days: 0
#   on_expiry: delete
#   legal_basis: GDPR Art. 17
periods.watchlist_entry.expired := _period(rego.metadata.rule())

_period(annotation) := {
	"days": annotation.custom.retention_days,
	"action": annotation.custom.on_expiry,
	"title": annotation.title,
	"legal_basis": annotation.custom.legal_basis,
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
