"""Encrypted 1:N face matching with CKKS (Microsoft SEAL via ``seal-python``).

Usage (both sides shown; in production they run on different machines)::

    from crypto.he import (Gallery, GateKeyBundle, encrypt_probe, get_parameter_set,
                           resolve, reveal, score_masked)

    params = get_parameter_set("ckks-v2")
    keys = GateKeyBundle.generate(params)                      # gate, once per rotation
    gallery = Gallery.build(watchlist_templates, params)       # service, on change
    probe = encrypt_probe(keys, template)                      # gate, per traveller
    masked, mapping = score_masked(probe, gallery, 0.4, keys.public())  # service
    positions = reveal(keys, masked)                           # gate
    rows = resolve(positions, mapping)                         # service: matching rows

Only ``crypto.he._seal`` imports SEAL; everything here is numpy arrays and bytes.
"""

from crypto.he.gallery import Gallery
from crypto.he.keys import GateKeyBundle, KeyRegistry, PublicKeyBundle
from crypto.he.params import DEFAULT_PARAMETER_SET, ParameterSet, get_parameter_set
from crypto.he.prepared import PreparedQuery, prepare_query
from crypto.he.protocol import QueryMapping, encrypt_probe, resolve, reveal, score_masked
from crypto.he.wire import MaskedResult, Probe

#: Alias of :func:`get_parameter_set` (the service calls it by this name).
parameter_set = get_parameter_set

__all__ = [
    "DEFAULT_PARAMETER_SET",
    "Gallery",
    "GateKeyBundle",
    "KeyRegistry",
    "MaskedResult",
    "ParameterSet",
    "PreparedQuery",
    "Probe",
    "PublicKeyBundle",
    "QueryMapping",
    "encrypt_probe",
    "get_parameter_set",
    "parameter_set",
    "prepare_query",
    "resolve",
    "reveal",
    "score_masked",
]
