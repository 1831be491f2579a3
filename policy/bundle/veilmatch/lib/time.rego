# METADATA
# title: Time helpers
# description: >-
#   Shared helpers for reading times in requests. A time that is not a
#   well-formed RFC 3339 timestamp is treated as missing, so every rule that
#   needs it fails safe instead of aborting the decision.
package veilmatch.lib.time

# METADATA
# title: Parse a timestamp
# description: Nanoseconds since 1970 for an RFC 3339 string with an offset; undefined for anything else.
ns(value) := time.parse_rfc3339_ns(value) if {
	is_string(value)
	regex.match(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`, value)
}

# METADATA
# title: Nanoseconds per day
# description: 86,400 seconds.
ns_per_day := 86400000000000

# METADATA
# title: Nanoseconds per minute
# description: 60 seconds.
ns_per_minute := 60000000000
