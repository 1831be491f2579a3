# METADATA
# title: Match authorisation tests
# description: >-
#   Each case is one search request from gate lowu-07 at Lo Wu (open 06:30 to
#   midnight, Hong Kong time) and the decision the match policy must return.
package veilmatch.match_test

import data.veilmatch.match
import data.veilmatch.profile

_gate := {
	"id": "lowu-07",
	"site": "lo-wu",
	"registered": true,
	"active": true,
	"key_id": "k2",
	"current_key_id": "k2",
	"key_created_at": "2025-05-20T00:00:00+08:00",
}

_request(now, gate_changes, recent) := {
	"now": now,
	"gate": object.union(_gate, gate_changes),
	"requests_last_minute": recent,
}

# What a profile's face-recognition rules add for a checkpoint it does not know.
_unknown_site := [reason |
	some flag, reason in {
		"alternative_required": "face recognition may not be the only way through this checkpoint",
		"no_internet_transfer": "face data may not leave this checkpoint over the internet",
	}
	profile.active.face_recognition[flag] == true
]

cases := [
	{
		"case": "a registered, active gate on its current key at 10:00",
		"input": _request("2025-06-02T10:00:00+08:00", {}, 3),
		"want": {"allow": true, "reasons": []},
	},
	{
		"case": "an unregistered gate is refused",
		"input": _request("2025-06-02T10:00:00+08:00", {"registered": false}, 3),
		"want": {"allow": false, "reasons": ["gate is not registered"]},
	},
	{
		"case": "a switched-off gate is refused",
		"input": _request("2025-06-02T10:00:00+08:00", {"active": false}, 3),
		"want": {"allow": false, "reasons": ["gate is not active"]},
	},
	{
		"case": "a request under a replaced key is refused",
		"input": _request("2025-06-02T10:00:00+08:00", {"key_id": "k1"}, 3),
		"want": {"allow": false, "reasons": ["gate key is not current"]},
	},
	{
		"case": "a key older than 30 days must be rotated first",
		"input": _request("2025-06-20T10:00:00+08:00", {}, 3),
		"want": {"allow": false, "reasons": ["gate key is not current"]},
	},
	{
		"case": "a key registered in the future is not trusted",
		"input": _request("2025-05-19T10:00:00+08:00", {}, 3),
		"want": {"allow": false, "reasons": ["gate key is not current"]},
	},
	{
		"case": "the 30th search within a minute is allowed",
		"input": _request("2025-06-02T10:00:00+08:00", {}, 29),
		"want": {"allow": true},
	},
	{
		"case": "the 31st search within a minute is refused",
		"input": _request("2025-06-02T10:00:00+08:00", {}, 30),
		"want": {"allow": false, "reasons": ["gate rate limit reached"]},
	},
	{
		"case": "an unknown search count is refused",
		"input": _request("2025-06-02T10:00:00+08:00", {}, "many"),
		"want": {"allow": false, "reasons": ["gate rate limit reached"]},
	},
	{
		"case": "searching at 03:00 while the checkpoint is closed is refused",
		"input": _request("2025-06-02T03:00:00+08:00", {}, 0),
		"want": {"allow": false, "reasons": ["checkpoint is closed"]},
	},
	{
		"case": "the checkpoint opens at 06:30 (22:30 UTC the day before)",
		"input": _request("2025-06-01T22:30:00Z", {}, 0),
		"want": {"allow": true},
	},
	{
		"case": "one minute before opening is refused",
		"input": _request("2025-06-02T06:29:00+08:00", {}, 0),
		"want": {"allow": false, "reasons": ["checkpoint is closed"]},
	},
	{
		"case": "the last minute before midnight is allowed",
		"input": _request("2025-06-02T23:59:00+08:00", {}, 0),
		"want": {"allow": true},
	},
	{
		"case": "a gate at an unknown checkpoint is refused",
		"input": _request("2025-06-02T10:00:00+08:00", {"site": "airport"}, 0),
		"want": {"allow": false, "reasons": sort(array.concat(["checkpoint is closed"], _unknown_site))},
	},
	{
		"case": "a request without a readable time is refused",
		"input": _request("yesterday", {}, 0),
		"want": {"allow": false, "reasons": ["checkpoint is closed", "gate key is not current", "request is malformed"]},
	},
	{
		"case": "an empty request is refused on every count",
		"input": {},
		"want": {"allow": false, "reasons": sort(array.concat([
			"checkpoint is closed", "gate is not active", "gate is not registered",
			"gate key is not current", "gate rate limit reached", "request is malformed",
		], _unknown_site))},
	},
]

failed contains c.case if {
	some c in cases
	not _passes(c)
}

_passes(c) if {
	got := match.decision with input as c.input
	every key, value in c.want {
		got[key] == value
	}
}

test_all_cases_pass if {
	count(failed) == 0
}

test_default_is_deny if {
	not match.allow with input as {"gate": {"id": "x"}}
}

test_malformed_opening_hours_close_the_checkpoint if {
	sites := {"lo-wu": {"utc_offset_minutes": 480, "open": "0630", "close": "24:00"}}
	not match.allow with input as _request("2025-06-02T10:00:00+08:00", {}, 0)
		with match.sites as sites
}

# A profile that forbids face recognition as the only way through and face data
# over the internet (as the Mainland profile does), whatever the active profile.
_strict(site_changes) := object.union(profile.active, {
	"face_recognition": {"alternative_required": true, "no_internet_transfer": true},
	"sites": {"lo-wu": object.union(
		{
			"name": "Lo Wu", "utc_offset_minutes": 480, "open": "06:30", "close": "24:00",
			"alternative_verification": true, "link": "dedicated",
		},
		site_changes,
	)},
})

test_strict_profile_allows_a_checkpoint_with_an_alternative_and_a_dedicated_link if {
	match.allow with input as _request("2025-06-02T10:00:00+08:00", {}, 0)
		with profile.active as _strict({})
}

test_strict_profile_refuses_a_face_only_checkpoint_on_the_internet if {
	got := match.decision with input as _request("2025-06-02T10:00:00+08:00", {}, 0)
		with profile.active as _strict({"alternative_verification": false, "link": "internet"})
	got == {"allow": false, "reasons": [
		"face data may not leave this checkpoint over the internet",
		"face recognition may not be the only way through this checkpoint",
	]}
}

test_strict_profile_refuses_an_unknown_checkpoint_on_every_count if {
	got := match.decision with input as _request("2025-06-02T10:00:00+08:00", {"site": "airport"}, 0)
		with profile.active as _strict({})
	count(got.reasons) == 3
}
