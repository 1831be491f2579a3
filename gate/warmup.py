"""Compile (or load from numba's on-disk cache) everything a traveller's path runs, so
no traveller waits for a compiler: ``veilmatch gate init`` and the agent's start call
:func:`warm_up`, which reports each step through ``progress`` as it starts and ends.

Steps, each on throwaway data under the gate's own keys (nothing is sent or kept):
encrypt one probe (SEAL and the seed expansion), reveal one all-zero masked result
(the residue decryption kernels, ``crypto.he.decrypt``), and run the face models once
(onnxruntime's first-run allocations).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from crypto.he import MaskedResult, encrypt_probe, reveal
from crypto.he.keys import GateKeyBundle

__all__ = ["warm_up"]

Progress = Callable[[str], None]


def _timed(progress: Progress, what: str, step: Callable[[], object]) -> float:
    progress(f"{what} …")
    start = time.perf_counter()
    step()
    seconds = time.perf_counter() - start
    progress(f"{what}: done in {seconds:.1f} s")
    return seconds


def warm_up(
    keys: GateKeyBundle,
    dimension: int,
    progress: Progress,
    *,
    models: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Run each step once; returns seconds per step (a warm cache: well under 1 s
    each; a cold one: tens of seconds for the reveal kernels)."""
    params = keys.params
    template = np.zeros(dimension, dtype=np.float32)
    template[0] = 1.0
    k, n = len(params.data_primes), params.poly_degree
    zeros = MaskedResult(params, keys.key_id, bytes(16), np.zeros((1, 2, k, n), np.uint32))
    out = {
        "encrypt": _timed(
            progress, "compiling the encryption path", lambda: encrypt_probe(keys, template)
        ),
        "reveal": _timed(progress, "compiling the decryption kernels", lambda: reveal(keys, zeros)),
    }
    if models is not None:
        out["models"] = _timed(progress, "loading the face models", models)
    return out
