# METADATA
# title: Match authorisation
# description: >-
#   Whether a gate may run a watchlist search right now. A gate searches only
#   while it is registered and switched on, uses its current encryption key,
#   stays within its rate limit and its checkpoint is open. The limits limit
#   how much a compromised gate could learn by probing the watchlist. Where
#   the active profile says so, a checkpoint must also offer travellers a
#   way through that is not face recognition, and must reach the service over
#   a dedicated link rather than the internet.
package veilmatch.match

import data.veilmatch.lib.time as ptime
import data.veilmatch.profile

# METADATA
# title: Match decision
# description: >-
#   A search is allowed only when every check passes; otherwise it is refused
#   and the reasons list each failed check.
# custom:
#   query: veilmatch.match.decision
#   input:
#     now: "string: current time, RFC 3339 with offset (e.g. 2025-06-01T10:00:00+08:00)"
#     gate.id: "string: the gate's id"
#     gate.site: "string: the checkpoint the gate belongs to (a site id of the active profile: lo-wu, shenzhen-bay)"
#     gate.registered: "boolean: the gate completed registration"
#     gate.active: "boolean: an administrator has switched the gate on"
#     gate.key_id: "string: id of the key the request was encrypted and signed under"
#     gate.current_key_id: "string: id of the gate's current registered key"
#     gate.key_created_at: "string: RFC 3339 time the current key was registered"
#     requests_last_minute: "number: searches by this gate in the 60 s before now, this one excluded"
#   output:
#     allow: "boolean: true only when every check passed"
#     reasons: "array of strings, sorted: why the search was refused (empty when allowed)"
decision := {"allow": allow, "reasons": sort(reasons)}

# METADATA
# title: Allow
# description: True when the gate is registered, active, on its current key, within its rate limit and its checkpoint is open.
default allow := false

allow if {
	count(reasons) == 0
}

# METADATA
# title: Refusal reasons
# description: One plain sentence per failed check. Each check is written so that a missing fact counts as failed.
reasons contains "request is malformed" if not _well_formed(input)

reasons contains "gate is not registered" if not _registered(input)

reasons contains "gate is not active" if not _active(input)

reasons contains "gate key is not current" if not _key_current(input, data.params.match.key_max_age_days)

reasons contains "gate rate limit reached" if not _within_rate(input, data.params.match.rate_limit_per_minute)

reasons contains "checkpoint is closed" if not _open(input, sites)

reasons contains "face recognition may not be the only way through this checkpoint" if {
	profile.active.face_recognition.alternative_required == true
	not _offers_alternative(input, sites)
}

reasons contains "face data may not leave this checkpoint over the internet" if {
	profile.active.face_recognition.no_internet_transfer == true
	not _dedicated_link(input, sites)
}

# METADATA
# title: Checkpoints
# description: >-
#   The active profile's checkpoints: local opening hours, whether travellers
#   have a way through that is not face recognition, and how the gates reach
#   the service.
sites := profile.active.sites

_offers_alternative(req, table) if table[req.gate.site].alternative_verification == true

_dedicated_link(req, table) if table[req.gate.site].link == "dedicated"

_well_formed(req) if {
	is_string(req.gate.id)
	_now_ns(req)
}

_now_ns(req) := ptime.ns(req.now)

_registered(req) if req.gate.registered == true

_active(req) if req.gate.active == true

_key_current(req, max_age_days) if {
	is_string(req.gate.key_id)
	req.gate.key_id == req.gate.current_key_id
	age_ns := _now_ns(req) - ptime.ns(req.gate.key_created_at)
	age_ns >= 0
	age_ns < max_age_days * ptime.ns_per_day
}

_within_rate(req, limit) if {
	is_number(req.requests_last_minute)
	req.requests_last_minute < limit
}

# Opening hours are local times at the checkpoint; "24:00" means midnight at the end of the day.
_open(req, table) if {
	site := table[req.gate.site]
	minute := _local_minute_of_day(_now_ns(req), site.utc_offset_minutes)
	minute >= _minutes(site.open)
	minute < _minutes(site.close)
}

_local_minute_of_day(now_ns, offset_minutes) := (floor(now_ns / ptime.ns_per_minute) + offset_minutes) % 1440

_minutes(hhmm) := (to_number(parts[0]) * 60) + to_number(parts[1]) if {
	is_string(hhmm)
	regex.match(`^\d{2}:\d{2}$`, hhmm)
	parts := split(hhmm, ":")
}
