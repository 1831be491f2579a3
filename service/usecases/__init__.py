"""Use cases behind the routers: each takes typed input, does its work in the
transactions it names, and returns a dataclass the router turns into HTTP.

``gate_flow`` (registration, key rotation, heartbeat), ``match_flow``, ``reveal_flow``
(the two halves of a traveller's search) and ``staff_change`` (authorise, change state
and record the decision, in one transaction).
"""
