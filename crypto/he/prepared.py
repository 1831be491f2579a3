"""Half of a query's work done before the probe exists (single-ciphertext sets only).

A ckks-v2 probe is one seeded ciphertext (c0, a): ``a`` comes from a 32-byte seed the
gate draws at random. Everything the service derives from ``a`` alone — the D − 1 key
switches, the c1 rows of every masked result ciphertext, and the gallery products of
the key-switching parts of every rotation's c0 — does not depend on the traveller's
template. So a gate may *commit* the seed of its next probe in advance (with its
current match request), and the service spends its idle time on that half:

* ``prepare_query(public, gallery, seed)`` → :class:`PreparedQuery` (≈ the cost of a
  whole unprepared query: the key switches and the paired multiply-accumulate);
* ``score_masked(probe, …, prepared=…)`` then does only the other half when the
  probe arrives: one product per gallery residue against shifts of the uploaded c0,
  no key switch.

The result is bit-identical to the unprepared path with the same random choices
(``tests/crypto/test_he_prepared.py`` checks this), so nothing about the masking
changes: its randomness (rotations, order, mask units) is drawn fresh per prepared
query, kept secret in the worker's memory, and used **once** — ``take`` refuses a
second use, since two results under the same mask would let the gate compare scores.

Security of committing the seed early: ``a`` is public in RLWE and uniformly random
whoever learns it first; what matters is that the gate draws it independently of s and
m and never encrypts two templates under one seed (``gate.client`` consumes a
commitment when it encrypts). The service learns nothing about the template from ``a``.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto.errors import GalleryError, ParameterMismatchError, PreparedQueryError
from crypto.he._inputs import mask_units, primes, query_layout, query_randomness, tau_residues
from crypto.he._seal import Backend, backend
from crypto.he._specs import PreparedHalf, PreparedOnline, ProbeExpansion
from crypto.he.gallery import Gallery
from crypto.he.keys import PublicKeyBundle
from crypto.he.masks import MaskPool
from crypto.he.rotkeys import rotate_all
from crypto.he.rounding import round_c1
from crypto.he.rounding import supports as rounding_supports
from crypto.he.wire import SEED_BYTES, Probe, seed_words

__all__ = ["PreparedQuery", "prepare_query", "score_prepared"]

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]


@dataclass(eq=False)
class PreparedQuery:
    """The template-independent half of one future query, for one (key, seed, gallery).

    ``polys`` (C, 2, k, N) is the masked result with its c1 rows finished and its c0
    rows still to fill (SEAL's NTT order; the online step writes them in place); ``w0``
    (C, k, 2, S) the c0 partial sums of the key-switching parts plus the pad bias and
    ``ar`` (C, k, 2, S) the c0 mask terms (A, R0), both in result slot order; all uint32
    residues. ``rotations``/``order``/``query_id`` are the query's secret choices.
    ≈ 6.4 MB at 100k templates of d = 128. Single use (:meth:`take`); it holds mask
    secrets, so like the mask pool it stays in the process that made it (the lock makes
    it unpicklable).
    """

    key_id: str
    seed: bytes
    gallery_version: str
    params_hash: bytes
    w0: U32 = field(repr=False)
    polys: U32 = field(repr=False)
    ar: U32 = field(repr=False)
    rotations: I64 = field(repr=False)
    order: I64 = field(repr=False)
    query_id: bytes = field(repr=False)
    #: The c1 rows rounded for the wire (``crypto.he.rounding``), also done in idle time.
    c1_rounded: npt.NDArray[np.uint64] | None = field(default=None, repr=False)
    _used: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fits(self, probe: Probe, gallery: Gallery) -> bool:
        """Whether this preparation is for exactly this probe's key and seed and gallery."""
        return (
            probe.params.hash == self.params_hash
            and probe.key_id == self.key_id
            and probe.seeds == (self.seed,)
            and gallery.version == self.gallery_version
        )

    @property
    def nbytes(self) -> int:
        rounded = 0 if self.c1_rounded is None else self.c1_rounded.nbytes
        return int(self.w0.nbytes + self.polys.nbytes + self.ar.nbytes + rounded)

    def take(self, probe: Probe, gallery: Gallery) -> None:
        """Claim this preparation for ``probe``: ``PreparedQueryError`` if it does not fit
        or was claimed before (its masks must never serve two results)."""
        if not self.fits(probe, gallery):
            raise PreparedQueryError("prepared for another key, seed or gallery")
        with self._lock:
            if self._used:
                raise PreparedQueryError("prepared query already used")
            self._used = True


def prepare_query(
    public: PublicKeyBundle,
    gallery: Gallery,
    seed: bytes,
    *,
    rng: np.random.Generator | None = None,
    pool: MaskPool | None = None,
    profile: dict[str, float] | None = None,
) -> PreparedQuery:
    """Do the template-independent half of the query whose probe will use ``seed``.

    Draws the query's rotations, order, id and mask material exactly as
    ``score_masked`` does (from ``rng`` if given, in the same order, else the OS and
    ``pool``), rotates (0, a) with the gate's rotation keys and computes every masked
    result's c1 rows. ``profile``, if given, receives seconds per stage (benchmarks).
    """
    from crypto.he.protocol import Clock

    clock = Clock(profile)
    params = public.params
    if not params.single_ciphertext:
        raise ParameterMismatchError(f"{params.name} has no single-ciphertext probes")
    if gallery.params.hash != params.hash:
        raise ParameterMismatchError("gallery and key use different parameter sets")
    if len(seed) != SEED_BYTES:
        raise PreparedQueryError(f"a probe seed is {SEED_BYTES} bytes")
    be = backend(params)
    count = gallery.ciphertexts
    rotations, order, query_id = query_randomness(count, params.slots, rng)
    full = _rotations_of_seed(be, public, gallery, seed)
    clock.lap("rotations")
    units = mask_units(params, count, rng, pool)
    clock.lap("mask_material")
    polys = np.zeros((count, 2, be.k, be.n), dtype=np.uint32)
    w0 = np.empty((count, be.k, 2, params.slots), dtype=np.uint32)
    ar = np.empty_like(w0)
    PreparedHalf(
        diagonals=gallery.diagonals,
        pad=gallery.pad_bias,
        probe=full,
        masks=units,
        pk=public.public_slot_residues(),
        layout=query_layout(params, rotations, order),
        primes=primes(be),
        ntt_to_slot=_ntt_to_slot(be),
        out1=polys[:, 1],
        w0=w0,
        ar=ar,
    ).run()
    clock.lap("prepare_mac")
    c1_rounded = round_c1(params, polys) if rounding_supports(params) else None
    clock.lap("round_c1")
    return PreparedQuery(
        key_id=public.key_id,
        seed=seed,
        gallery_version=gallery.version,
        params_hash=params.hash,
        w0=w0,
        polys=polys,
        ar=ar,
        rotations=rotations,
        order=order,
        query_id=query_id,
        c1_rounded=c1_rounded,
    )


def _rotations_of_seed(
    be: Backend, public: PublicKeyBundle, gallery: Gallery, seed: bytes
) -> npt.NDArray[np.uint32]:
    """All D rotations of (0, a(seed)): (D, 2, k, N) uint32 slot order = (y0_j, c1_j)."""
    params = public.params
    diag_count, _ = params.probe_layout(gallery.dim)
    full = np.empty((diag_count, 2, be.k, be.n), dtype=np.uint32)
    zero = np.zeros((1, be.k, be.n), dtype=np.uint32)
    ProbeExpansion(
        c0=zero,
        c1_words=seed_words(params, (seed,)),
        primes=primes(be),
        to_ntt=be.slot_to_ntt,
        out=full,
    ).run()
    rotate_all(params, full[0].copy(), public.rotation_key_pair(), full)
    return full


def score_prepared(
    be: Backend,
    probe: Probe,
    gallery: Gallery,
    threshold: float,
    public: PublicKeyBundle,
    prepared: PreparedQuery,
) -> U32:
    """The masked result polys (C, 2, k, N) of ``probe``, whose other half is ``prepared``.

    The caller has checked probe, gallery and key against each other; this claims
    ``prepared`` (single use) and computes the c0 rows.
    """
    if gallery.params.hash != prepared.params_hash:
        raise GalleryError("prepared under another parameter set")
    prepared.take(probe, gallery)
    c0 = np.ascontiguousarray(probe.c0[0][:, be.slot_to_ntt])
    out = prepared.polys  # single use: the c0 rows are written in place
    PreparedOnline(
        diagonals=gallery.diagonals,
        c0=c0,
        w0=prepared.w0,
        ar=prepared.ar,
        tau=tau_residues(be, gallery, threshold),
        layout=query_layout(gallery.params, prepared.rotations, prepared.order),
        primes=primes(be),
        ntt_to_slot=_ntt_to_slot(be),
        out=out,
    ).run()
    return out


@functools.lru_cache(maxsize=8)
def _ntt_to_slot(be: Backend) -> I64:
    """NTT index → slot position (the inverse of ``Backend.slot_to_ntt``), per backend."""
    order: I64 = np.argsort(be.slot_to_ntt).astype(np.int64)
    order.setflags(write=False)
    return order
