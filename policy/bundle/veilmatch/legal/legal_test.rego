# METADATA
# title: Legal obligation tests
# description: >-
#   How obligations are computed from the watchlist size, on a fixture
#   profile with one obligation that always applies and one with a threshold
#   of 1,000 people; each profile's own obligations are checked per profile.
package veilmatch.legal_test

import data.veilmatch.legal
import data.veilmatch.profile

_fixture := {
	"legal_bases": {
		"a": {"cite": "Act A s. 1", "status": "checked"},
		"b": {"cite": "Act B s. 2", "status": "to-confirm"},
	},
	"obligations": {
		"assess": {"title": "Assess first", "kind": "duty", "trigger": "always", "deadline": "before use", "bases": ["a"]},
		"file": {"title": "File", "kind": "duty", "trigger": "watchlist_size_at_least", "threshold": 1000, "deadline": "within 30 working days", "bases": ["a"], "status": "to-confirm"},
		"tell": {"title": "Tell", "kind": "recommended", "trigger": "always", "bases": ["a", "b"]},
	},
}

_at(size) := got if {
	got := legal.obligations with input as {"watchlist_size": size}
		with profile.active as _fixture
}

_by_id(size) := {o.id: o | some o in _at(size).obligations}

test_obligations_are_sorted_by_id if {
	[o.id | some o in _at(0).obligations] == ["assess", "file", "tell"]
}

test_an_unconditional_obligation_always_applies if {
	o := _by_id(0).assess
	o.applies == true
	o.reason == "applies to this processing whatever its size"
	o.threshold == null
	o.remaining == null
	o.legal_basis == "Act A s. 1"
	o.to_confirm == false
}

test_a_threshold_obligation_does_not_apply_below_it if {
	o := _by_id(999).file
	o.applies == false
	o.remaining == 1
	o.reason == "face information of 999 people stored: below the threshold of 1000"
}

test_a_threshold_obligation_applies_from_it if {
	o := _by_id(1000).file
	o.applies == true
	o.remaining == 0
	o.reason == "face information of 1000 people stored: at or above the threshold of 1000"
	o.deadline == "within 30 working days"
}

test_to_confirm_comes_from_the_obligation_or_its_bases if {
	_by_id(0).file.to_confirm == true
	_by_id(0).tell.to_confirm == true
	_by_id(0).tell.deadline == null
}

test_a_missing_or_negative_size_has_no_answer if {
	not legal.obligations with input as {}
	not legal.obligations with input as {"watchlist_size": -1}
	not legal.obligations with input as {"watchlist_size": "many"}
}

test_the_active_profile_is_named if {
	legal.obligations.profile == profile.id with input as {"watchlist_size": 0}
}
