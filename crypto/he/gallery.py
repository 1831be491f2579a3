"""The watchlist encoded for encrypted matching.

Packing (``docs/crypto.md`` has the derivation). Templates of dimension d are zero-padded
to a power of two 2D and *complex packed*: coordinate j and j+D share a slot, so the
probe slot is u_j = v_j + i·v_{j+D} and the template slot is w_j = t_j − i·t_{j+D}; the
real part of u_j·w_j is v_j t_j + v_{j+D} t_{j+D}. Each result ciphertext serves S = N/2
templates (one per slot) with D generalised Halevi–Shoup diagonals:
diag_j[k] = w_{row k, (k+j) mod D}, so Σ_j diag_j ⊙ rot_j(u) holds score k in slot k.

The encoded gallery is plain numpy (uint32 RNS residues in NTT form, stored in the fast
path's *slot order*, see ``crypto/he/_kernels.py``), laid out (prime, position block,
gallery block, half, diagonal, position) so each task of the multiply-accumulate (one
prime × one block of positions) reads one contiguous chunk per gallery block, which the
kernel streams into L2 in a single sequential pass before using it. It pickles to worker
processes; SEAL is only used while building it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto.errors import GalleryError
from crypto.he._kernels import GALLERY_BLOCK
from crypto.he.params import ParameterSet

__all__ = ["Gallery"]

NORM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Gallery:
    """Encoded templates: ``diagonals`` and ``pad_bias`` (C, k, N), uint32 residues.

    Both are NTT residues in slot order (``Backend.slot_to_ntt``). ``diagonals`` has
    shape (k, S/B, C, 2, D, B) with B = ``GALLERY_BLOCK``: entry [p, b, c, h, j, x] is
    diagonal j of block c at slot position h·S + b·B + x, mod prime p. ``pad_bias``
    encodes 0 on real rows and −pad_bias on empty slots at the score scale Δv·Δt.
    """

    params: ParameterSet
    dim: int
    size: int
    version: str
    diagonals: npt.NDArray[np.uint32] = field(repr=False)
    pad_bias: npt.NDArray[np.uint32] = field(repr=False)

    def __len__(self) -> int:
        return self.size

    @property
    def ciphertexts(self) -> int:
        """Result ciphertexts per query (⌈n / slots⌉)."""
        return int(self.diagonals.shape[2])

    @property
    def nbytes(self) -> int:
        return int(self.diagonals.nbytes + self.pad_bias.nbytes)

    @classmethod
    def build(cls, templates: npt.ArrayLike, params: ParameterSet) -> Gallery:
        """Encode an (n × d) array of L2-normalised templates (row i = watchlist row i).

        An empty watchlist (shape (0, d)) gives one all-padding block, so queries still
        get a well-formed, all-negative result.
        """
        t = np.asarray(templates)
        if t.ndim != 2 or t.shape[1] < 1:
            raise GalleryError("templates must be an n × d array (n may be 0)")
        if not np.issubdtype(t.dtype, np.floating) or not np.isfinite(t).all():
            raise GalleryError("templates must be finite floats")
        norms = np.linalg.norm(t.astype(np.float64), axis=1)
        if t.shape[0] and np.abs(norms - 1.0).max() > NORM_TOLERANCE:
            raise GalleryError("templates must be L2-normalised")
        n, dim = t.shape
        try:
            diag_count, _ = params.probe_layout(dim)
        except ValueError as exc:
            raise GalleryError(str(exc)) from None
        from crypto.he._seal import backend

        be = backend(params)
        s = params.slots
        c_count = max(1, -(-n // s))
        padded = np.zeros((c_count * s, 2 * diag_count), dtype=np.float64)
        padded[:n, :dim] = t
        w = padded[:, :diag_count] - 1j * padded[:, diag_count:]
        idx = (np.arange(s)[:, None] + np.arange(diag_count)[None, :]) % diag_count
        rows = np.arange(s)[:, None]
        scale = 2.0**params.template_scale_bits
        k, nn = be.k, be.n
        width = GALLERY_BLOCK
        blocks = s // width
        # (prime, position block, block c, half, diagonal, position): one MAC task's
        # data is one contiguous stream over c (see _kernels.score_and_mask).
        diagonals = np.empty((k, blocks, c_count, 2, diag_count, width), dtype=np.uint32)
        pad_bias = np.empty((c_count, k, nn), dtype=np.uint32)
        bias_scale = 2.0 ** (params.template_scale_bits + params.probe_scale_bits)
        for c in range(c_count):
            block = w[c * s : (c + 1) * s][rows, idx]  # (S, D): column j is diag_j
            for j in range(diag_count):
                encoded = be.to_slot_order(be.encode(np.ascontiguousarray(block[:, j]), scale))
                diagonals[:, :, c, :, j] = encoded.reshape(k, 2, blocks, width).transpose(
                    0, 2, 1, 3
                )
            bias = np.zeros(s, dtype=np.complex128)
            real_rows = max(0, min(s, n - c * s))
            bias[real_rows:] = -params.pad_bias
            pad_bias[c] = be.to_slot_order(be.encode(bias, bias_scale))
        digest = hashlib.sha256(b"veilmatch/he/gallery/v1\x00" + params.hash)
        digest.update(np.array([n, dim], dtype="<i8").tobytes())
        digest.update(np.ascontiguousarray(t, dtype="<f4").tobytes())
        diagonals.setflags(write=False)
        pad_bias.setflags(write=False)
        return cls(
            params=params,
            dim=dim,
            size=n,
            version=digest.hexdigest(),
            diagonals=diagonals,
            pad_bias=pad_bias,
        )
