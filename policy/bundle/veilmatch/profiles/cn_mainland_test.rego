# METADATA
# title: Mainland China profile tests
# description: >-
#   The Mainland profile's own rules under the PIPL and the 2025 Facial
#   Recognition Measures: records kept three years, the filing threshold of
#   100,000 people, face recognition never the only way through a checkpoint
#   and face data not sent over the internet. These run only when the
#   Mainland profile is active.
# custom:
#   profile: cn-mainland
package veilmatch.profiles.cn_mainland_test

import data.veilmatch.alert
import data.veilmatch.legal
import data.veilmatch.match
import data.veilmatch.profile
import data.veilmatch.retention

_record(kind, state, age) := {"kind": kind, "state": state, "age_days": age}

_hit(basis) := {"now": "2025-06-02T10:00:00+08:00", "hits": [{
	"entry_id": "wl-1", "status": "active", "legal_basis": basis,
	"expires_at": "2025-12-31T23:59:59+08:00", "category": "parallel_trading",
}]}

_search(site) := {
	"now": "2025-06-02T10:00:00+08:00",
	"gate": {
		"id": "sz-01", "site": site, "registered": true, "active": true,
		"key_id": "k2", "current_key_id": "k2", "key_created_at": "2025-05-20T00:00:00+08:00",
	},
	"requests_last_minute": 0,
}

retention_cases := [
	{"case": "an audit payload is kept through its third year", "input": _record("audit_payload", "recorded", 1094), "want": {"action": "keep", "retention_days": 1095}},
	{"case": "an audit payload is redacted after three years (PIPL Art. 56)", "input": _record("audit_payload", "recorded", 1095), "want": {"action": "redact"}},
	{"case": "face data from a search without alert is not kept", "input": _record("probe_ciphertext", "unused", 0), "want": {"action": "delete", "retention_days": 0}},
	{"case": "a watchlist template is deleted 180 days after approval without renewal", "input": _record("watchlist_entry", "active", 180), "want": {"action": "delete"}},
]

alert_cases := [
	{"case": "an entry under the customs law raises an alert", "input": _hit("cn-customs-law"), "want": {"alert": true}},
	{"case": "an entry under a Hong Kong ordinance is not recognised on the Mainland side", "input": _hit("hk-cap60"), "want": {"alert": false, "ignored": [{"entry_id": "wl-1", "why": "entry has no recognised legal basis"}]}},
]

match_cases := [
	{"case": "a checkpoint with staffed counters on a dedicated link may search", "input": _search("lo-wu"), "want": {"allow": true}},
	{"case": "Shenzhen Bay may search too", "input": _search("shenzhen-bay"), "want": {"allow": true}},
]

obligation_cases := [
	{"case": "the impact assessment is due before processing", "input": {"watchlist_size": 0}, "want": {"piia": {"applies": true}}},
	{"case": "no filing below 100,000 people", "input": {"watchlist_size": 99999}, "want": {"cac-filing": {"applies": false, "remaining": 1, "threshold": 100000}}},
	{"case": "filing due once face information of 100,000 people is stored", "input": {"watchlist_size": 100000}, "want": {"cac-filing": {"applies": true, "remaining": 0, "deadline": "within 30 working days of reaching the threshold", "legal_basis": "Facial Recognition Measures Art. 15"}}},
	{"case": "prominent signs at the gates", "input": {"watchlist_size": 0}, "want": {"signage": {"applies": true, "to_confirm": true}}},
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
	some c in match_cases
	got := match.decision with input as c.input
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

test_runs_under_the_mainland_profile if {
	profile.id == "cn-mainland"
}

test_a_face_only_checkpoint_is_refused if {
	sites := json.patch(profile.active.sites, [{"op": "replace", "path": "/lo-wu/alternative_verification", "value": false}])
	got := match.decision with input as _search("lo-wu") with match.sites as sites
	got.reasons == ["face recognition may not be the only way through this checkpoint"]
}

test_a_checkpoint_on_the_internet_is_refused if {
	sites := json.patch(profile.active.sites, [{"op": "replace", "path": "/lo-wu/link", "value": "internet"}])
	got := match.decision with input as _search("lo-wu") with match.sites as sites
	got.reasons == ["face data may not leave this checkpoint over the internet"]
}

test_every_checkpoint_offers_an_alternative_on_a_dedicated_link if {
	every site in profile.active.sites {
		site.alternative_verification == true
		site.link == "dedicated"
	}
}
