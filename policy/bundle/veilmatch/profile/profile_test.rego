# METADATA
# title: Profile consistency tests
# description: >-
#   Every shipped profile is consistent, and each kind of inconsistency the
#   loader refuses a bundle for is detected.
package veilmatch.profile_test

import data.veilmatch.profile

test_shipped_profiles_have_no_problems if {
	count(profile.problems) == 0
}

test_the_active_profile_is_one_of_the_shipped_profiles if {
	profile.active == data.profiles[profile.id]
}

test_citations_are_joined_in_the_order_given if {
	ids := [b | some b in profile.active.rule_bases["veilmatch.access"]]
	profile.cite(ids) == concat("; ", [profile.active.legal_bases[b].cite | some b in ids])
}

_fixture := {
	"legal_bases": {
		"a": {"cite": "Act A", "status": "checked"},
		"b": {"cite": "Act B", "status": "to-confirm"},
		"c": {"cite": "", "status": "maybe"},
	},
	"entry_bases": [],
	"rule_bases": {
		"veilmatch.access": ["a"],
		"veilmatch.match": ["a", "zz"],
		"veilmatch.alert": [],
		"veilmatch.retention": ["b"],
	},
	"retention": {
		"alert": {"open": {"days": 30, "action": "delete", "why": "w"}},
		"photo": {"kept": {"days": 1, "action": "delete", "bases": ["a"], "why": "w"}},
	},
	"face_recognition": {"alternative_required": "yes"},
	"sites": {"x": {"name": "X", "alternative_verification": true, "link": "pigeon"}},
	"obligations": {
		"ok": {"title": "T", "kind": "duty", "trigger": "watchlist_size_at_least", "threshold": 5, "bases": ["a"]},
		"bad": {"title": "T", "kind": "duty", "trigger": "sometimes"},
	},
}

_records := {"alert": {"open": "Alert never reviewed", "dismissed": "Dismissed alert"}}

test_every_kind_of_inconsistency_is_reported if {
	got := profile.problems with data.profiles as {"t": _fixture}
		with data.params.retention.records as _records
	got == {
		"profile t: veilmatch.alert names no legal basis",
		"profile t: veilmatch.legal names no legal basis",
		"profile t: veilmatch.match cites zz, which its legal-basis catalogue lacks",
		"profile t: retention period alert/open names no legal basis",
		"profile t: obligation bad names no legal basis",
		"profile t: the watchlist catalogue (entry_bases) names no legal basis",
		"profile t: legal basis c needs a citation and a status (checked or to-confirm)",
		"profile t: no valid retention period for alert/dismissed",
		"profile t: retention period photo/kept is for no known record",
		"profile t: face_recognition.alternative_required must be true or false",
		"profile t: face_recognition.no_internet_transfer must be true or false",
		"profile t: checkpoint x needs a name, alternative_verification (true or false) and link (dedicated or internet)",
		"profile t: obligation bad needs a title, a kind (duty or recommended) and a trigger",
	}
}

test_to_confirm_is_true_only_for_unchecked_bases if {
	profile.to_confirm(["a", "b"]) with data.profiles as {"t": _fixture}
		with data.active_profile as {"id": "t"}
	not profile.to_confirm(["a"]) with data.profiles as {"t": _fixture}
		with data.active_profile as {"id": "t"}
}
