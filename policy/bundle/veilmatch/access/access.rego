# METADATA
# title: Access control
# description: >-
#   Who may do what. Every API route and console page is one named action;
#   each action lists the roles that may perform it and the conditions that
#   must hold. Anything not listed is refused.
# custom:
#   legal_basis: >-
#     GDPR Art. 5(1)(f) and Art. 32 (access limited to what each role needs);
#     EU AI Act Art. 14 (human oversight by competent staff).
package veilmatch.access

# METADATA
# title: Access decision
# description: >-
#   A request is allowed only when the action exists, the caller's role is
#   one of the roles listed for it, the caller is identified, and every
#   condition listed for the action holds. Otherwise it is refused and the
#   reasons say why.
# custom:
#   query: veilmatch.access.decision
#   input:
#     role: "string: one of gate, officer, supervisor, oversight, legal, admin"
#     action: "string: an action name from the action catalogue, e.g. alert.review"
#     subject: "string: the caller's id (gate id or staff account id), non-empty"
#     resource: "object, optional: facts about the target the conditions need (gate_id, enrolled_by, reviewers, legal_basis)"
#   output:
#     allow: "boolean: true only when every check passed"
#     reasons: "array of strings, sorted: why the request was refused (empty when allowed)"
decision := {"allow": allow, "reasons": sort(reasons)}

# METADATA
# title: Allow
# description: True when the action exists, the role may perform it, the caller is named and all its conditions hold.
default allow := false

allow if {
	action := data.params.access.actions[input.action]
	input.role in action.roles
	_identified(input)
	every name in action.constraints {
		_satisfied(name, input)
	}
}

# Negated checks take the whole input as their argument: OPA hoists a missing
# field out of a `not`, which would silently drop the reason.

# METADATA
# title: Refusal reasons
# description: One plain sentence per failed check.
reasons contains "unknown action" if {
	not _known_action(input)
}

reasons contains "role may not perform this action" if {
	action := data.params.access.actions[input.action]
	not input.role in action.roles
}

reasons contains "caller is not identified" if {
	not _identified(input)
}

reasons contains sprintf("condition not met: %s", [name]) if {
	some name in data.params.access.actions[input.action].constraints
	not _satisfied(name, input)
}

_known_action(req) if {
	data.params.access.actions[req.action]
}

_identified(req) if {
	_named(req.subject)
}

_named(subject) if {
	is_string(subject)
	subject != ""
}

# Each condition is written positively: a missing field never satisfies it.
_satisfied("own_gate", req) if {
	_named(req.resource.gate_id)
	req.resource.gate_id == req.subject
}

_satisfied("not_own_enrolment", req) if {
	_named(req.resource.enrolled_by)
	req.resource.enrolled_by != req.subject
}

_satisfied("not_already_reviewed", req) if {
	is_array(req.resource.reviewers)
	not req.subject in req.resource.reviewers
}

_satisfied("legal_basis_given", req) if {
	_named(req.resource.legal_basis)
}
