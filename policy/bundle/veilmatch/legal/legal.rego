# METADATA
# title: Legal obligations
# description: >-
#   What the active profile's law asks of the operator, computed from the
#   facts the service knows: today the number of people whose face
#   information it stores. An obligation with a threshold (for example a
#   filing duty once face information of a given number of people is stored)
#   applies from that number on; the console shows the list to the legal team
#   and supervisors, with how far the watchlist is from each threshold.
package veilmatch.legal

import data.veilmatch.profile

# METADATA
# title: Obligations
# description: >-
#   Every obligation of the active profile, sorted by id, with whether it
#   applies to the watchlist size given and why. A request without a usable
#   size has no answer (the console then shows none).
# custom:
#   query: veilmatch.legal.obligations
#   input:
#     watchlist_size: "number: people whose face information the service stores (distinct watchlist subjects with a template), 0 or more"
#   output:
#     profile: "string: the active profile id"
#     obligations: "array of objects, sorted by id"
#     obligations[].id: "string: the obligation's id in the profile"
#     obligations[].title: "string: what is required"
#     obligations[].kind: "string: duty or recommended"
#     obligations[].applies: "boolean: the obligation applies now"
#     obligations[].reason: "string: one sentence explaining why it applies or not"
#     obligations[].deadline: "string or null: when it must be met"
#     obligations[].threshold: "number or null: the watchlist size from which it applies"
#     obligations[].remaining: "number or null: people to go before the threshold (0 once reached)"
#     obligations[].legal_basis: "string: the citations"
#     obligations[].to_confirm: "boolean: counsel must still confirm the obligation or one of its bases"
obligations := {
	"profile": profile.id,
	"obligations": [_obligation(oid, profile.active.obligations[oid], input.watchlist_size) |
		some oid in sort(object.keys(profile.active.obligations))
	],
} if {
	is_number(input.watchlist_size)
	input.watchlist_size >= 0
}

_obligation(oid, o, n) := {
	"id": oid,
	"title": o.title,
	"kind": o.kind,
	"applies": _applies(o, n),
	"reason": _reason(o, n),
	"deadline": object.get(o, "deadline", null),
	"threshold": object.get(o, "threshold", null),
	"remaining": _remaining(o, n),
	"legal_basis": profile.cite(o.bases),
	"to_confirm": _flag(o),
}

_applies(o, _) := true if o.trigger == "always"

_applies(o, n) := n >= o.threshold if o.trigger == "watchlist_size_at_least"

_reason(o, _) := "applies to this processing whatever its size" if o.trigger == "always"

_reason(o, n) := sprintf("face information of %v people stored: at or above the threshold of %v", [n, o.threshold]) if {
	o.trigger == "watchlist_size_at_least"
	n >= o.threshold
}

_reason(o, n) := sprintf("face information of %v people stored: below the threshold of %v", [n, o.threshold]) if {
	o.trigger == "watchlist_size_at_least"
	n < o.threshold
}

_remaining(o, _) := null if o.trigger == "always"

_remaining(o, n) := max([0, o.threshold - n]) if o.trigger == "watchlist_size_at_least"

_flag(o) := true if {
	_to_confirm(o)
} else := false

_to_confirm(o) if o.status == "to-confirm"

_to_confirm(o) if profile.to_confirm(o.bases)
