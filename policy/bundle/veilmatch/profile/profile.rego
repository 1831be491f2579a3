# METADATA
# title: Jurisdiction profile
# description: >-
#   The law the deployment applies. One bundle holds every profile
#   (profiles/<id>/data.json): its legal-basis catalogue, the bases each
#   policy cites, the retention periods, the checkpoints (site parameters),
#   the face-recognition rules that differ and the obligations the law puts on
#   the operator. Exactly one profile is active (the setting policy_profile);
#   it is part of the bundle digest, so every decision records which law it
#   applied. A bundle whose profile data is inconsistent is refused at load
#   with the problems listed below.
package veilmatch.profile

# METADATA
# title: Active profile id
# description: The id of the active profile (eu, hk, cn-mainland), set when the bundle is loaded.
id := data.active_profile.id

# METADATA
# title: Active profile
# description: The active profile's data; every profile-dependent rule reads it through here.
active := data.profiles[id]

# METADATA
# title: Citations
# description: The citations of the given legal-basis ids in the active profile, joined by "; ".
cite(ids) := concat("; ", [active.legal_bases[b].cite | some b in ids])

# METADATA
# title: Any basis to confirm
# description: True when one of the given legal bases is still marked for counsel to confirm.
to_confirm(ids) if {
	some b in ids
	active.legal_bases[b].status != "checked"
}

# METADATA
# title: Rules that need a legal basis
# description: Every policy package must name at least one legal basis in every profile.
required_rules := {"veilmatch.access", "veilmatch.match", "veilmatch.alert", "veilmatch.retention", "veilmatch.legal"}

# METADATA
# title: Problems
# description: >-
#   Every inconsistency in any profile, one sentence each: a rule, retention
#   period, obligation or the watchlist catalogue that names no legal basis or
#   one missing from the profile's catalogue; a catalogue entry without a
#   citation or status; a record kind and state without a valid retention
#   period; a malformed checkpoint, face-recognition rule or obligation. The
#   loader refuses a bundle for which this set is not empty.
problems contains sprintf("profile %s: %s names no legal basis", [pid, where]) if {
	some [pid, where, ids] in _citing
	not _non_empty_array(ids)
}

problems contains sprintf("profile %s: %s cites %s, which its legal-basis catalogue lacks", [pid, where, b]) if {
	some [pid, where, ids] in _citing
	is_array(ids)
	some b in ids
	not data.profiles[pid].legal_bases[b]
}

problems contains sprintf("profile %s: legal basis %s needs a citation and a status (checked or to-confirm)", [pid, b]) if {
	some pid, p in data.profiles
	some b, basis in p.legal_bases
	not _well_formed_basis(basis)
}

problems contains sprintf("profile %s: no valid retention period for %s/%s", [pid, kind, state]) if {
	some pid, p in data.profiles
	some kind, states in data.params.retention.records
	some state, _ in states
	not _valid_period(object.get(p, ["retention", kind, state], null))
}

problems contains sprintf("profile %s: retention period %s/%s is for no known record", [pid, kind, state]) if {
	some pid, p in data.profiles
	some kind, states in p.retention
	some state, _ in states
	not data.params.retention.records[kind][state]
}

problems contains sprintf("profile %s: face_recognition.%s must be true or false", [pid, flag]) if {
	some pid, p in data.profiles
	some flag in ["alternative_required", "no_internet_transfer"]
	not is_boolean(object.get(p, ["face_recognition", flag], null))
}

problems contains sprintf("profile %s: checkpoint %s needs a name, alternative_verification (true or false) and link (dedicated or internet)", [pid, site]) if {
	some pid, p in data.profiles
	some site, params in p.sites
	not _well_formed_site(params)
}

problems contains sprintf("profile %s: obligation %s needs a title, a kind (duty or recommended) and a trigger", [pid, oid]) if {
	some pid, p in data.profiles
	some oid, o in p.obligations
	not _well_formed_obligation(o)
}

# (profile id, what cites, the ids it cites) for everything that needs a legal basis.
_citing contains [pid, rule, object.get(p, ["rule_bases", rule], null)] if {
	some pid, p in data.profiles
	some rule in required_rules
}

_citing contains [pid, sprintf("retention period %s/%s", [kind, state]), object.get(period, "bases", null)] if {
	some pid, p in data.profiles
	some kind, states in p.retention
	some state, period in states
}

_citing contains [pid, sprintf("obligation %s", [oid]), object.get(o, "bases", null)] if {
	some pid, p in data.profiles
	some oid, o in p.obligations
}

_citing contains [pid, "the watchlist catalogue (entry_bases)", object.get(p, "entry_bases", null)] if {
	some pid, p in data.profiles
}

_non_empty_array(x) if {
	is_array(x)
	count(x) > 0
}

_well_formed_basis(basis) if {
	is_string(basis.cite)
	basis.cite != ""
	basis.status in {"checked", "to-confirm"}
}

_valid_period(p) if {
	is_number(p.days)
	p.days >= 0
	p.action in {"delete", "redact"}
	is_string(p.why)
}

_well_formed_site(site) if {
	is_string(site.name)
	is_boolean(site.alternative_verification)
	site.link in {"dedicated", "internet"}
}

_well_formed_obligation(o) if {
	is_string(o.title)
	o.kind in {"duty", "recommended"}
	o.trigger == "always"
}

_well_formed_obligation(o) if {
	is_string(o.title)
	o.kind in {"duty", "recommended"}
	o.trigger == "watchlist_size_at_least"
	is_number(o.threshold)
}
