# METADATA
# title: Alert tests
# description: >-
#   Each case is one search outcome at 10:00 on 2 June 2025 (Hong Kong time)
#   and the alert decision the policy must return. Entry wl-1 is an active
#   parallel-trading entry valid until the end of 2025 under the first
#   watchlist legal basis of the active profile.
package veilmatch.alert_test

import data.veilmatch.alert
import data.veilmatch.profile

_now := "2025-06-02T10:00:00+08:00"

_basis := min(profile.active.entry_bases)

_entry(id, changes) := object.union(
	{
		"entry_id": id,
		"status": "active",
		"legal_basis": _basis,
		"expires_at": "2025-12-31T23:59:59+08:00",
		"category": "parallel_trading",
	},
	changes,
)

cases := [
	{
		"case": "no match raises no alert",
		"input": {"now": _now, "hits": []},
		"want": {"alert": false, "reason": "no watchlist match", "severity": "none", "required_reviewers": 2},
	},
	{
		"case": "a match on a usable entry raises a medium alert needing two reviewers",
		"input": {"now": _now, "hits": [_entry("wl-1", {})]},
		"want": {
			"alert": true, "reason": "watchlist match", "severity": "medium",
			"required_reviewers": 2, "entries": ["wl-1"], "ignored": [],
		},
	},
	{
		"case": "a match plus four crossings in 24 hours raises a high alert",
		"input": {"now": _now, "hits": [_entry("wl-1", {})], "travel": {"crossings_24h": 4}},
		"want": {"alert": true, "reason": "watchlist match and frequent crossing", "severity": "high", "frequent_crossing": true},
	},
	{
		"case": "three crossings are not frequent",
		"input": {"now": _now, "hits": [_entry("wl-1", {})], "travel": {"crossings_24h": 3}},
		"want": {"alert": true, "severity": "medium", "frequent_crossing": false},
	},
	{
		"case": "frequent crossing without a watchlist match raises no alert",
		"input": {"now": _now, "hits": [], "travel": {"crossings_24h": 9}},
		"want": {"alert": false, "severity": "none", "frequent_crossing": true},
	},
	{
		"case": "a customs-offence entry raises a high alert",
		"input": {"now": _now, "hits": [_entry("wl-2", {"category": "customs_offence"})]},
		"want": {"alert": true, "severity": "high"},
	},
	{
		"case": "severity stays high with frequent crossing",
		"input": {"now": _now, "hits": [_entry("wl-2", {"category": "customs_offence"})], "travel": {"crossings_24h": 5}},
		"want": {"alert": true, "severity": "high"},
	},
	{
		"case": "a pending (unapproved) entry is ignored",
		"input": {"now": _now, "hits": [_entry("wl-3", {"status": "pending"})]},
		"want": {
			"alert": false, "reason": "no match on a usable watchlist entry", "severity": "none",
			"entries": [], "ignored": [{"entry_id": "wl-3", "why": "entry is not active"}],
		},
	},
	{
		"case": "a revoked entry is ignored",
		"input": {"now": _now, "hits": [_entry("wl-3", {"status": "revoked"})]},
		"want": {"alert": false, "ignored": [{"entry_id": "wl-3", "why": "entry is not active"}]},
	},
	{
		"case": "an entry past its expiry is ignored",
		"input": {"now": _now, "hits": [_entry("wl-4", {"expires_at": "2025-06-01T00:00:00+08:00"})]},
		"want": {"alert": false, "ignored": [{"entry_id": "wl-4", "why": "entry has expired"}]},
	},
	{
		"case": "an entry without a recognised legal basis is ignored",
		"input": {"now": _now, "hits": [_entry("wl-5", {"legal_basis": "because"})]},
		"want": {"alert": false, "ignored": [{"entry_id": "wl-5", "why": "entry has no recognised legal basis"}]},
	},
	{
		"case": "an entry with a malformed expiry is ignored",
		"input": {"now": _now, "hits": [_entry("wl-6", {"expires_at": "never"})]},
		"want": {"alert": false, "ignored": [{"entry_id": "wl-6", "why": "entry has expired"}]},
	},
	{
		"case": "an entry of an unknown category is ignored",
		"input": {"now": _now, "hits": [_entry("wl-7", {"category": "curiosity"})]},
		"want": {"alert": false, "ignored": [{"entry_id": "wl-7", "why": "entry has an unknown category"}]},
	},
	{
		"case": "one usable and one expired entry: alert on the usable one",
		"input": {"now": _now, "hits": [_entry("wl-1", {}), _entry("wl-4", {"expires_at": "2025-01-01T00:00:00Z"})]},
		"want": {"alert": true, "entries": ["wl-1"], "ignored": [{"entry_id": "wl-4", "why": "entry has expired"}]},
	},
	{
		"case": "more than three matches is implausible: no alert",
		"input": {"now": _now, "hits": [_entry("a", {}), _entry("b", {}), _entry("c", {}), _entry("d", {})]},
		"want": {"alert": false, "reason": "more matches than the hit cap: technical review, no alert", "severity": "none"},
	},
	{
		"case": "three matches are within the cap",
		"input": {"now": _now, "hits": [_entry("a", {}), _entry("b", {}), _entry("c", {})]},
		"want": {"alert": true, "entries": ["a", "b", "c"]},
	},
]

review_cases := [
	{
		"case": "no reviews yet: pending",
		"input": {"reviews": []},
		"want": {"state": "pending", "act": false, "confirmations": 0, "required_reviewers": 2},
	},
	{
		"case": "one confirmation is not enough",
		"input": {"reviews": [{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"}]},
		"want": {"state": "pending", "act": false, "confirmations": 1},
	},
	{
		"case": "two different officers confirm: act",
		"input": {"reviews": [
			{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"},
			{"reviewer": "sup-1", "role": "supervisor", "verdict": "confirm"},
		]},
		"want": {"state": "confirmed", "act": true, "confirmations": 2},
	},
	{
		"case": "the same officer confirming twice counts once",
		"input": {"reviews": [
			{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"},
			{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"},
		]},
		"want": {"state": "pending", "act": false, "confirmations": 1},
	},
	{
		"case": "a confirmation by someone without a reviewing role does not count",
		"input": {"reviews": [
			{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"},
			{"reviewer": "admin-1", "role": "admin", "verdict": "confirm"},
		]},
		"want": {"state": "pending", "act": false, "confirmations": 1},
	},
	{
		"case": "an anonymous confirmation does not count",
		"input": {"reviews": [
			{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"},
			{"reviewer": "", "role": "officer", "verdict": "confirm"},
		]},
		"want": {"state": "pending", "confirmations": 1},
	},
	{
		"case": "one dismissal closes the alert without action",
		"input": {"reviews": [
			{"reviewer": "officer-1", "role": "officer", "verdict": "confirm"},
			{"reviewer": "officer-2", "role": "officer", "verdict": "confirm"},
			{"reviewer": "sup-1", "role": "supervisor", "verdict": "dismiss"},
		]},
		"want": {"state": "dismissed", "act": false},
	},
]

failed contains c.case if {
	some c in cases
	not _passes(c)
}

failed contains c.case if {
	some c in review_cases
	not _review_passes(c)
}

_passes(c) if {
	got := alert.decision with input as c.input
	every key, value in c.want {
		got[key] == value
	}
}

_review_passes(c) if {
	got := alert.review with input as c.input
	every key, value in c.want {
		got[key] == value
	}
}

test_all_cases_pass if {
	count(failed) == 0
}

test_unreadable_time_has_no_decision if {
	not alert.decision with input as {"now": "noon", "hits": []}
}

test_missing_hits_have_no_decision if {
	not alert.decision with input as {"now": _now}
}

test_missing_reviews_have_no_outcome if {
	not alert.review with input as {}
}

test_two_reviewers_even_if_data_says_fewer if {
	alert.required_reviewers == 2 with data.params.alert.required_reviewers as 1
}
