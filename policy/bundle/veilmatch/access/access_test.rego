# METADATA
# title: Access control tests
# description: Each case is one request and the decision the access policy must return.
package veilmatch.access_test

import data.veilmatch.access

cases := [
	{
		"case": "an officer reads alerts",
		"input": {"role": "officer", "action": "alert.read", "subject": "officer-1"},
		"want": {"allow": true, "reasons": []},
	},
	{
		"case": "an administrator may not read alerts",
		"input": {"role": "admin", "action": "alert.read", "subject": "admin-1"},
		"want": {"allow": false, "reasons": ["role may not perform this action"]},
	},
	{
		"case": "an oversight body may not read the watchlist",
		"input": {"role": "oversight", "action": "watchlist.read", "subject": "ovs-1"},
		"want": {"allow": false},
	},
	{
		"case": "an oversight body reads the audit log",
		"input": {"role": "oversight", "action": "audit.read", "subject": "ovs-1"},
		"want": {"allow": true},
	},
	{
		"case": "an unknown action is refused",
		"input": {"role": "admin", "action": "database.drop", "subject": "admin-1"},
		"want": {"allow": false, "reasons": ["unknown action"]},
	},
	{
		"case": "an unknown role is refused",
		"input": {"role": "visitor", "action": "stats.read", "subject": "v-1"},
		"want": {"allow": false, "reasons": ["role may not perform this action"]},
	},
	{
		"case": "a caller without an id is refused",
		"input": {"role": "legal", "action": "policy.read", "subject": ""},
		"want": {"allow": false, "reasons": ["caller is not identified"]},
	},
	{
		"case": "an empty request is refused",
		"input": {},
		"want": {"allow": false, "reasons": ["caller is not identified", "unknown action"]},
	},
	{
		"case": "a gate searches for itself",
		"input": {"role": "gate", "action": "gate.match", "subject": "lowu-07", "resource": {"gate_id": "lowu-07"}},
		"want": {"allow": true},
	},
	{
		"case": "a gate may not search on behalf of another gate",
		"input": {"role": "gate", "action": "gate.match", "subject": "lowu-07", "resource": {"gate_id": "lowu-08"}},
		"want": {"allow": false, "reasons": ["condition not met: own_gate"]},
	},
	{
		"case": "a gate that does not say which gate it acts for is refused",
		"input": {"role": "gate", "action": "gate.heartbeat", "subject": "lowu-07"},
		"want": {"allow": false, "reasons": ["condition not met: own_gate"]},
	},
	{
		"case": "a gate may not read alerts",
		"input": {"role": "gate", "action": "alert.read", "subject": "lowu-07"},
		"want": {"allow": false},
	},
	{
		"case": "a supervisor approves an entry another officer enrolled",
		"input": {"role": "supervisor", "action": "watchlist.approve", "subject": "sup-1", "resource": {"enrolled_by": "officer-1"}},
		"want": {"allow": true},
	},
	{
		"case": "a supervisor may not approve their own enrolment",
		"input": {"role": "supervisor", "action": "watchlist.approve", "subject": "sup-1", "resource": {"enrolled_by": "sup-1"}},
		"want": {"allow": false, "reasons": ["condition not met: not_own_enrolment"]},
	},
	{
		"case": "approval without knowing who enrolled is refused",
		"input": {"role": "supervisor", "action": "watchlist.approve", "subject": "sup-1", "resource": {}},
		"want": {"allow": false, "reasons": ["condition not met: not_own_enrolment"]},
	},
	{
		"case": "an officer may not approve entries",
		"input": {"role": "officer", "action": "watchlist.approve", "subject": "officer-1", "resource": {"enrolled_by": "officer-2"}},
		"want": {"allow": false, "reasons": ["role may not perform this action"]},
	},
	{
		"case": "a second officer reviews an alert",
		"input": {"role": "officer", "action": "alert.review", "subject": "officer-2", "resource": {"reviewers": ["officer-1"]}},
		"want": {"allow": true},
	},
	{
		"case": "the same officer may not review an alert twice",
		"input": {"role": "officer", "action": "alert.review", "subject": "officer-1", "resource": {"reviewers": ["officer-1"]}},
		"want": {"allow": false, "reasons": ["condition not met: not_already_reviewed"]},
	},
	{
		"case": "a review without the list of earlier reviewers is refused",
		"input": {"role": "officer", "action": "alert.review", "subject": "officer-1"},
		"want": {"allow": false, "reasons": ["condition not met: not_already_reviewed"]},
	},
	{
		"case": "an officer enrols an entry naming its legal basis",
		"input": {"role": "officer", "action": "watchlist.enrol", "subject": "officer-1", "resource": {"legal_basis": "hk-cap60"}},
		"want": {"allow": true},
	},
	{
		"case": "renewal without a legal basis is refused",
		"input": {"role": "supervisor", "action": "watchlist.renew", "subject": "sup-1", "resource": {"legal_basis": ""}},
		"want": {"allow": false, "reasons": ["condition not met: legal_basis_given"]},
	},
	{
		"case": "the legal team revokes an entry",
		"input": {"role": "legal", "action": "watchlist.revoke", "subject": "legal-1"},
		"want": {"allow": true},
	},
	{
		"case": "only administrators activate a policy version",
		"input": {"role": "legal", "action": "policy.load", "subject": "legal-1"},
		"want": {"allow": false},
	},
	{
		"case": "an administrator activates a policy version",
		"input": {"role": "admin", "action": "policy.load", "subject": "admin-1"},
		"want": {"allow": true},
	},
	{
		"case": "the legal team opens the policies page",
		"input": {"role": "legal", "action": "console.policies", "subject": "legal-1"},
		"want": {"allow": true},
	},
]

failed contains c.case if {
	some c in cases
	not _passes(c)
}

_passes(c) if {
	got := access.decision with input as c.input
	every key, value in c.want {
		got[key] == value
	}
}

test_all_cases_pass if {
	count(failed) == 0
}

test_default_is_deny if {
	not access.allow with input as {"role": "admin"}
}

# Every action names at least one known role and only documented conditions.
test_action_catalogue_is_consistent if {
	every action in data.params.access.actions {
		count(action.roles) > 0
		every role in action.roles {
			data.params.access.roles[role]
		}
		every constraint in action.constraints {
			data.params.access.constraints[constraint]
		}
	}
}
