"""Fresh masking material for ``score_masked``, made ahead of time and used once.

Each result ciphertext of a query needs one *unit* of fresh randomness (see
``crypto/he/protocol.py``): the mask A = 1 + h·conj(h), and the ternary u, flood F and
error e2 of a public-key encryption of zero. Sampling these and taking their NTTs was
as costly as the whole multiply-accumulate, yet none of it depends on the probe, the
gallery or even the gate's key (u·p0 and u·p1 are formed inside the scoring kernel). So
a process keeps a ``MaskPool``: a background thread, at the lowest CPU priority, fills it
while the process is idle, and a query takes its units from it.

Security invariants (tested in ``tests/crypto/test_he_masks.py``):

* **Every unit is used exactly once.** ``take`` removes units from the pool under a lock
  before returning them; nothing is ever put back, copied to another pool, or pickled
  (``MaskPool`` refuses to be pickled).
* **A forked child starts empty.** Units inherited through ``fork`` would be used by both
  processes, so every pool is emptied in the child (``os.register_at_fork``).
* **An empty pool costs latency, never safety.** Missing units are generated on the spot
  (the *cold* path), from the same CSPRNG.
* **Randomness**: AES-256-CTR under a fresh 256-bit key from ``os.urandom`` per batch
  (a CSPRNG; numpy's generators are not). An injected ``rng`` (tests) bypasses pools.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from crypto.he._kernels import WORDS_PER_COEFF
from crypto.he._specs import MaskMaterial, NttTables, Primes
from crypto.he.params import ParameterSet

__all__ = ["DEFAULT_POOL_BYTES", "MaskPool", "default_pool", "generate_units", "unit_bytes"]

U32 = npt.NDArray[np.uint32]

#: Default memory budget of a process's pool (per parameter set).
DEFAULT_POOL_BYTES = 64 << 20
#: The pool aims to hold this many queries' worth of units (of the last query's size).
DEFAULT_QUERIES_AHEAD = 8


def unit_bytes(params: ParameterSet) -> int:
    """Bytes of one unit of mask material: (3, k, N) uint32."""
    return 3 * len(params.data_primes) * params.poly_degree * 4


def _words_per_unit(params: ParameterSet) -> int:
    return WORDS_PER_COEFF * params.poly_degree + params.mask_weight


def _random_words(params: ParameterSet, count: int, rng: np.random.Generator | None) -> Any:
    """(count, words per unit) uniform uint64: from ``rng`` if given, else AES-256-CTR."""
    size = count * _words_per_unit(params) * 8
    if rng is not None:
        data = rng.bytes(size)
    else:
        prg = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(b"\x00" * 16)).encryptor()
        data = prg.update(bytes(size))
    return np.frombuffer(data, dtype=np.uint64).reshape(count, -1)


def generate_units(
    params: ParameterSet,
    count: int,
    *,
    rng: np.random.Generator | None = None,
    parallel: bool = True,
) -> U32:
    """``count`` fresh units of mask material, (count, 3, k, N) uint32 in slot order.

    ``parallel`` uses every core (the cold path); the pool's filler uses one thread.
    """
    from crypto.he._seal import backend

    be = backend(params)
    out = np.empty((count, 3, be.k, be.n), dtype=np.uint32)
    if count == 0:
        return out
    psi_rev, psi_shoup = be.ntt_tables
    MaskMaterial(
        words=_random_words(params, count, rng),
        weight=params.mask_weight,
        flood_bits=params.flood_bits,
        primes=Primes.of(be.q),
        ntt=NttTables(psi_rev=psi_rev, psi_shoup=psi_shoup),
        to_ntt=be.slot_to_ntt,
        out=out,
    ).run(parallel=parallel)
    return out


_POOLS: weakref.WeakSet[MaskPool] = weakref.WeakSet()


class MaskPool:
    """Units of mask material for one parameter set, produced ahead of time.

    ``take(count)`` returns ``count`` units that nobody else will ever get, and how many
    of them came from the pool (the rest were generated on the spot). ``fill`` produces
    units synchronously (benchmarks, warm-up); ``start`` runs a daemon thread at the
    lowest priority (nice 19) that keeps the pool topped up to its target: enough for
    ``queries_ahead`` queries of the last size asked for, within ``max_bytes``.

    Thread-safe. Not picklable, and emptied in a forked child.
    """

    def __init__(
        self,
        params: ParameterSet,
        *,
        max_bytes: int = DEFAULT_POOL_BYTES,
        queries_ahead: int = DEFAULT_QUERIES_AHEAD,
    ) -> None:
        if max_bytes < 0 or queries_ahead < 1:
            raise ValueError("max_bytes must be >= 0 and queries_ahead >= 1")
        self.params = params
        self.capacity = max_bytes // unit_bytes(params)
        self.queries_ahead = queries_ahead
        self._chunks: collections.deque[U32] = collections.deque()
        self._level = 0
        self._chunk = 1  # units per produced chunk: the last query's size
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self.served = 0  # units handed out from the pool
        self.generated_cold = 0  # units generated on the spot because the pool ran dry
        _POOLS.add(self)

    def __reduce__(self) -> Any:
        raise TypeError("a MaskPool holds single-use randomness and cannot be copied")

    @property
    def level(self) -> int:
        """Units currently available."""
        return self._level

    @property
    def target(self) -> int:
        """Units the background filler aims to hold."""
        return min(self.capacity, self.queries_ahead * self._chunk)

    def take(self, count: int) -> tuple[U32, int]:
        """``count`` units (count, 3, k, N) used by no one else, and how many were pooled.

        Zero-copy when the oldest chunk has exactly ``count`` units (the steady state:
        chunks are produced at the last query's size); otherwise chunks are joined. Units
        the pool lacks are generated now, on every core.
        """
        if count < 1:
            raise ValueError("count must be positive")
        pieces: list[U32] = []
        have = 0
        with self._cond:
            if count <= self.capacity:
                self._chunk = count
            while have < count and self._chunks:
                head = self._chunks[0]
                need = count - have
                if len(head) <= need:
                    self._chunks.popleft()
                    pieces.append(head)
                    have += len(head)
                else:
                    pieces.append(head[:need])
                    self._chunks[0] = head[need:]
                    have += need
            self._level -= have
            self.served += have
            self._cond.notify_all()
        if have < count:
            pieces.append(generate_units(self.params, count - have))
            self.generated_cold += count - have
        units = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        return units, have

    def fill(self, units: int | None = None) -> int:
        """Produce units now until the pool holds ``units`` (default: its target).

        Returns how many were added. Uses every core (this is for warm-up, not idle time).
        """
        goal = min(self.capacity, self.target if units is None else units)
        added = 0
        while True:
            with self._cond:
                missing = goal - self._level
                size = min(missing, max(self._chunk, 1))
            if size <= 0:
                return added
            self._put(generate_units(self.params, size))
            added += size

    def _put(self, chunk: U32) -> None:
        chunk.setflags(write=False)
        with self._cond:
            self._chunks.append(chunk)
            self._level += len(chunk)

    def start(self) -> None:
        """Start the background filler (idempotent)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = False
            self._thread = threading.Thread(
                target=self._run, name="veilmatch-mask-pool", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the filler and drop every unit."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self._forget()

    def _forget(self) -> None:
        self._chunks = collections.deque()
        self._level = 0
        self._thread = None
        self._cond = threading.Condition()

    def _run(self) -> None:
        # Lowest priority: only idle CPU time (Linux applies nice per thread).
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            with self._cond:
                while not self._stop and self._level >= self.target:
                    self._cond.wait()
                if self._stop:
                    return
                size = min(self._chunk, self.target - self._level)
            # One unit per call: each call holds the GIL only for its AES output (~20 µs),
            # then runs the NTTs in numba without it.
            chunk = np.empty(
                (size, 3, len(self.params.data_primes), self.params.poly_degree), dtype=np.uint32
            )
            for m in range(size):
                chunk[m] = generate_units(self.params, 1, parallel=False)[0]
            self._put(chunk)


def _forget_all_in_child() -> None:
    for pool in list(_POOLS):
        pool._forget()


os.register_at_fork(after_in_child=_forget_all_in_child)

_DEFAULT: dict[bytes, MaskPool] = {}
_DEFAULT_LOCK = threading.Lock()


def default_pool(params: ParameterSet) -> MaskPool:
    """This process's pool for ``params``, created (and its filler started) on first use."""
    with _DEFAULT_LOCK:
        pool = _DEFAULT.get(params.hash)
        if pool is None:
            pool = _DEFAULT[params.hash] = MaskPool(params)
    pool.start()
    return pool
