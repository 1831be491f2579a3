# METADATA
# title: Alerts
# description: >-
#   Whether a watchlist match raises an alert to customs officers, why, and
#   how serious it is; and when an alert may be acted on. Only a match with an
#   approved, unexpired watchlist entry that has a recognised legal basis can
#   raise an alert. Frequent crossing never raises an alert on its own: it
#   only makes an alert from a watchlist match more urgent. No alert is acted
#   on until two different officers have confirmed it. Which legal bases a
#   watchlist entry may name is set by the active jurisdiction profile.
package veilmatch.alert

import data.veilmatch.lib.time as ptime
import data.veilmatch.profile

# METADATA
# title: Alert decision
# description: >-
#   Raises an alert when at least one hit is on a usable watchlist entry and
#   the number of hits is plausible (at most the hit cap). Hits on entries
#   that are pending, revoked, expired, without a recognised legal basis or of
#   an unknown category are ignored and listed with the reason. A request
#   without a readable time or hit list has no decision (the caller fails
#   closed).
# custom:
#   query: veilmatch.alert.decision
#   input:
#     now: "string: current time, RFC 3339 with offset"
#     hits: "array of objects, one per watchlist entry the search matched (may be empty)"
#     hits[].entry_id: "string: watchlist entry id"
#     hits[].status: "string: pending, active, revoked or expired"
#     hits[].legal_basis: "string: legal basis id recorded on the entry (one of the profile's watchlist legal bases)"
#     hits[].expires_at: "string: RFC 3339 time the entry stops being valid"
#     hits[].category: "string: parallel_trading or customs_offence"
#     travel.crossings_24h: "number, optional: crossings by the same document pseudonym in the last 24 hours, this one included"
#   output:
#     alert: "boolean: raise an alert to officers"
#     reason: "string: one sentence explaining the outcome"
#     severity: "string: none, low, medium or high"
#     required_reviewers: "number: distinct reviewers who must confirm before action (always at least 2)"
#     entries: "array of strings, sorted: ids of the usable entries that matched"
#     ignored: "array of objects {entry_id, why}, sorted: hits that were not used and why"
#     frequent_crossing: "boolean: the traveller crossed at least the threshold number of times in 24 hours"
decision := {
	"alert": alert,
	"reason": reason,
	"severity": severity,
	"required_reviewers": required_reviewers,
	"entries": sort(entries),
	"ignored": sort(ignored),
	"frequent_crossing": frequent_crossing,
} if {
	_now_ns
	is_array(input.hits)
}

_now_ns := ptime.ns(input.now)

# METADATA
# title: Usable entries
# description: Ids of matched entries that are active, unexpired, of a known category and have a recognised legal basis.
entries contains hit.entry_id if {
	some hit in input.hits
	not _why_ignored(hit, _now_ns, data.params.alert, profile.active.entry_bases)
}

# METADATA
# title: Ignored hits
# description: Matched entries that cannot raise an alert, each with the first reason found.
ignored contains {"entry_id": hit.entry_id, "why": why} if {
	some hit in input.hits
	why := _why_ignored(hit, _now_ns, data.params.alert, profile.active.entry_bases)
}

# The first failed check wins; undefined means the hit is usable.
_why_ignored(hit, now_ns, params, bases) := "entry is not active" if {
	not hit.status == "active"
} else := "entry has no recognised legal basis" if {
	not _recognised(bases, hit.legal_basis)
} else := "entry has expired" if {
	not _unexpired(hit, now_ns)
} else := "entry has an unknown category" if {
	not _known(params.categories, hit.category)
}

_recognised(bases, basis) if {
	is_string(basis)
	basis in bases
}

_known(table, key) if {
	is_string(key)
	table[key]
}

_unexpired(hit, now_ns) if {
	ptime.ns(hit.expires_at) > now_ns
}

# METADATA
# title: Too many hits
# description: >-
#   A search that matches more entries than the hit cap is implausible (a bad
#   photo or a probing attack): it raises no alert and is left for technical
#   review through the audit log.
too_many_hits if count(input.hits) > data.params.alert.max_hits

# METADATA
# title: Frequent crossing
# description: >-
#   The same travel document (by pseudonym, never the number) crossed at least
#   the threshold number of times in the last 24 hours.
default frequent_crossing := false

frequent_crossing if {
	is_number(input.travel.crossings_24h)
	input.travel.crossings_24h >= data.params.alert.frequent_crossing_threshold
}

# METADATA
# title: Raise an alert
# description: True when at least one usable entry matched and the hit count is within the cap.
default alert := false

alert if {
	count(entries) > 0
	not too_many_hits
}

# METADATA
# title: Reason
# description: One sentence explaining the outcome, checked in this order.
reason := "no watchlist match" if {
	count(input.hits) == 0
} else := "more matches than the hit cap: technical review, no alert" if {
	too_many_hits
} else := "no match on a usable watchlist entry" if {
	count(entries) == 0
} else := "watchlist match and frequent crossing" if {
	frequent_crossing
} else := "watchlist match"

_levels := ["none", "low", "medium", "high"]

_rank := {"none": 0, "low": 1, "medium": 2, "high": 3}

# METADATA
# title: Severity
# description: >-
#   The highest severity among the matched entries' categories, one level
#   higher (at most "high") when the traveller crosses frequently; "none"
#   when there is no alert.
severity := "none" if {
	not alert
} else := _levels[min([3, _base_level + _crossing_bump])]

_base_level := max([_rank[data.params.alert.categories[hit.category]] |
	some hit in input.hits
	hit.entry_id in entries
])

default _crossing_bump := 0

_crossing_bump := 1 if frequent_crossing

# METADATA
# title: Required reviewers
# description: Distinct people who must confirm an alert before anyone acts on it; never fewer than two.
required_reviewers := max([2, data.params.alert.required_reviewers])

# METADATA
# title: Review outcome
# description: >-
#   An alert is confirmed, and may be acted on, only when the required number
#   of different reviewers with an officer or supervisor role confirmed it
#   and nobody dismissed it. One dismissal closes it as dismissed. Until then
#   it is pending. A person counts once however many reviews they submit.
# custom:
#   query: veilmatch.alert.review
#   input:
#     reviews: "array of objects, the reviews so far (may be empty)"
#     reviews[].reviewer: "string: reviewer's account id"
#     reviews[].role: "string: reviewer's role"
#     reviews[].verdict: "string: confirm or dismiss"
#   output:
#     state: "string: pending, confirmed or dismissed"
#     act: "boolean: true only when confirmed"
#     confirmations: "number: distinct eligible reviewers who confirmed"
#     required_reviewers: "number: confirmations needed"
review := {
	"state": _review_state,
	"act": _review_state == "confirmed",
	"confirmations": count(_confirmers),
	"required_reviewers": required_reviewers,
} if {
	is_array(input.reviews)
}

_confirmers contains r.reviewer if {
	some r in input.reviews
	_eligible(r, data.params.alert.reviewer_roles)
	r.verdict == "confirm"
}

_dismissers contains r.reviewer if {
	some r in input.reviews
	_eligible(r, data.params.alert.reviewer_roles)
	r.verdict == "dismiss"
}

_eligible(review, roles) if {
	is_string(review.reviewer)
	review.reviewer != ""
	review.role in roles
}

_review_state := "dismissed" if {
	count(_dismissers) > 0
} else := "confirmed" if {
	count(_confirmers) >= required_reviewers
} else := "pending"
