"""Gate key bundles, their public halves, and the service's key registry.

A gate generates a ``GateKeyBundle``: CKKS secret key, public key, and the keys the
service needs to rotate the probe. Under ckks-v1 that is one SEAL Galois key (a
rotation by the baby-step count, used only for d > 512); under single-ciphertext sets
(ckks-v2) it is veilmatch's own rotation keys (``crypto/he/rotkeys.py``), which let
the gate upload one ciphertext per traveller. The secret
bundle never leaves the gate and is stored sealed with ``crypto.atrest``; the service
receives ``PublicKeyBundle.to_bytes()`` and registers it in a ``KeyRegistry``. The key id
is derived from the public key, so it cannot be claimed for another key.

Public bundle wire format, version 1::

    magic "VMPK" | version u8 = 1 | params hash 32 B | key id 16 B
    | public key length u32 | galois length u32 | public key (SEAL)
    | galois (SEAL Galois keys, or ``RotationKeys`` bytes for single-ciphertext sets)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.atrest import KeyEncryptionKey, open_sealed, seal
from crypto.errors import (
    CryptoError,
    KeyMismatchError,
    MalformedInputError,
    OversizedInputError,
    ParameterMismatchError,
    RetiredKeyError,
    UnknownKeyError,
)
from crypto.he.params import ParameterSet, get_parameter_set
from crypto.he.rotkeys import (
    RotationKeyPair,
    RotationKeys,
    generate_rotation_keys,
    steps_needed,
)

__all__ = ["GateKeyBundle", "KeyRegistry", "PublicKeyBundle", "key_id_for"]

_PK_MAGIC = b"VMPK"
_SK_MAGIC = b"VMSK"
_VERSION = 1
_PK_HEAD = struct.Struct(">4sB32s16sII")
_SK_HEAD = struct.Struct(">4sB32s16sdIII")
MAX_PUBLIC_BUNDLE = 8 << 20  # bytes; ckks-v1 ≈ 0.6 MB, ckks-v2 ≈ 4.1 MB


def key_id_for(params: ParameterSet, public_key: bytes) -> str:
    """32 hex digits: SHA-256 over the parameter hash and the serialized public key."""
    h = hashlib.sha256(b"veilmatch/he/key-id/v1\x00" + params.hash + public_key)
    return h.hexdigest()[:32]


def _galois_steps(params: ParameterSet) -> tuple[int, ...]:
    """SEAL Galois keys to make: none when veilmatch's own rotation keys are used."""
    return () if params.single_ciphertext else (params.max_probe_ciphertexts,)


@dataclass(frozen=True)
class PublicKeyBundle:
    """What the service needs from a gate: public key and its rotation material.

    Built by ``GateKeyBundle.public()`` or parsed by ``from_bytes``; an instance is always
    consistent (key id matches the key, parameters known, SEAL accepted the keys).
    """

    params: ParameterSet
    key_id: str
    public_key: bytes = field(repr=False)
    galois_keys: bytes | None = field(repr=False)

    def __post_init__(self) -> None:
        if key_id_for(self.params, self.public_key) != self.key_id:
            raise KeyMismatchError("key id does not match the public key")

    @property
    def sizes(self) -> dict[str, int]:
        """Serialized sizes in bytes."""
        return {
            "public_key": len(self.public_key),
            "galois_keys": len(self.galois_keys or b""),
            "bundle": _PK_HEAD.size + len(self.public_key) + len(self.galois_keys or b""),
        }

    def to_bytes(self) -> bytes:
        gk = self.galois_keys or b""
        head = _PK_HEAD.pack(
            _PK_MAGIC,
            _VERSION,
            self.params.hash,
            bytes.fromhex(self.key_id),
            len(self.public_key),
            len(gk),
        )
        return head + self.public_key + gk

    @classmethod
    def from_bytes(cls, data: bytes, *, max_size: int = MAX_PUBLIC_BUNDLE) -> PublicKeyBundle:
        """Parse and validate (sizes first, then parameters, then SEAL's own checks)."""
        if len(data) > max_size:
            raise OversizedInputError(f"public key bundle of {len(data)} bytes > {max_size}")
        if len(data) < _PK_HEAD.size:
            raise MalformedInputError("public key bundle truncated")
        magic, version, phash, kid, pk_len, gk_len = _PK_HEAD.unpack_from(data, 0)
        if magic != _PK_MAGIC or version != _VERSION:
            raise MalformedInputError("not a version-1 public key bundle")
        params = get_parameter_set(phash)
        if len(data) != _PK_HEAD.size + pk_len + gk_len:
            raise MalformedInputError("public key bundle length does not match its header")
        public_key = data[_PK_HEAD.size : _PK_HEAD.size + pk_len]
        galois = data[_PK_HEAD.size + pk_len :] or None
        from crypto.he._seal import backend

        be = backend(params)
        be.load_public(public_key)
        bundle = cls(params=params, key_id=kid.hex(), public_key=public_key, galois_keys=galois)
        if params.single_ciphertext:
            if galois is None:
                raise MalformedInputError(f"a {params.name} key bundle needs rotation keys")
            _ = bundle.parsed_rotation_keys  # validates (and keeps) them
        elif galois is not None:
            be.load_galois(galois)
        return bundle

    def public_residues(self) -> npt.NDArray[np.uint64]:
        """Public key (p0, p1) residues at the data level, shape (2, k, N)."""
        return _public_residues(self.params, self.key_id, self.public_key)

    def public_slot_residues(self) -> npt.NDArray[np.uint32]:
        """(p0, p1) as uint32 (2, k, N) in the fast path's slot order (cached per process)."""
        cached = _SLOT_CACHE.get(self.key_id)
        if cached is None:
            from crypto.he._seal import backend

            cached = backend(self.params).to_slot_order(self.public_residues())
            cached.setflags(write=False)
            if len(_SLOT_CACHE) > 256:
                _SLOT_CACHE.clear()
            _SLOT_CACHE[self.key_id] = cached
        return cached

    @functools.cached_property
    def parsed_rotation_keys(self) -> RotationKeys:
        """The rotation keys, parsed and validated once per bundle object."""
        if self.galois_keys is None or not self.params.single_ciphertext:
            raise CryptoError("this key bundle has no rotation keys")
        keys = RotationKeys.from_bytes(self.galois_keys)
        if keys.params.hash != self.params.hash:
            raise ParameterMismatchError("rotation keys made under other parameters")
        return keys

    @functools.cached_property
    def _rotation_arrays(
        self,
    ) -> tuple[tuple[int, ...], npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
        keys = self.parsed_rotation_keys
        b, a = keys.b, keys.expanded_a()
        b.setflags(write=False)
        a.setflags(write=False)
        return keys.steps, b, a

    def rotation_keys(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
        """(b, a) of the rotation keys, each (K, k, L, N) uint32 slot order, key i for
        step ``rotation_key_steps[i]``.

        ``a`` is expanded from the keys' seeds on first use (a few ms, ≈ 4 MB) and kept
        with this bundle object, as ``b`` is: hold on to the object (the scoring workers
        cache them, ``for_scoring``) rather than parsing the bytes per query.
        """
        _, b, a = self._rotation_arrays
        return b, a

    def rotation_key_pair(self) -> RotationKeyPair:
        """The rotation keys as ``rotate_all`` takes them: steps, ``b`` and ``a`` by
        name (same arrays as ``rotation_keys``)."""
        steps, b, a = self._rotation_arrays
        return RotationKeyPair(steps=steps, b=b, a=a)

    @property
    def rotation_key_steps(self) -> tuple[int, ...]:
        """The steps of the keys ``rotation_keys`` returns (all, or those kept by
        ``for_scoring``)."""
        return self._rotation_arrays[0]

    def for_scoring(self, dim: int | None = None) -> PublicKeyBundle:
        """A copy holding what scoring needs, without the serialized rotation keys.

        The rotation keys are parsed and expanded (``rotation_keys``) and the ≈ 4 MB of
        their bytes dropped. With ``dim`` (the gallery's template dimension) only the
        keys its rotations use are kept: 18 of 30 for d = 128, ≈ 4.7 MB instead of
        7.9 MB per ckks-v2 gate key in a cache. The copy cannot be serialized back
        (``to_bytes`` would lose the keys).
        """
        if not self.params.single_ciphertext:
            return self
        steps, b, a = self._rotation_arrays
        if dim is not None:
            diagonals, _ = self.params.probe_layout(dim)
            needed = set(steps_needed(self.params, diagonals))
            keep = [i for i, step in enumerate(steps) if step in needed]
            steps = tuple(steps[i] for i in keep)
            b, a = b[keep], a[keep]  # copies: the full arrays can be freed
            b.setflags(write=False)
            a.setflags(write=False)
        compact = dataclasses.replace(self, galois_keys=None)
        compact.__dict__["_rotation_arrays"] = (steps, b, a)  # what cached_property stores
        return compact

    def galois(self) -> Any:
        """The SEAL Galois keys object (cached per process)."""
        if self.galois_keys is None:
            raise CryptoError("this key bundle has no Galois keys")
        return _galois_object(self.params, self.key_id, self.galois_keys)


_PUBLIC_CACHE: dict[str, npt.NDArray[np.uint64]] = {}
_GALOIS_CACHE: dict[str, Any] = {}
_SLOT_CACHE: dict[str, npt.NDArray[np.uint32]] = {}


def _public_residues(params: ParameterSet, key_id: str, data: bytes) -> npt.NDArray[np.uint64]:
    cached = _PUBLIC_CACHE.get(key_id)
    if cached is None:
        from crypto.he._seal import backend

        cached = backend(params).load_public(data)
        cached.setflags(write=False)
        if len(_PUBLIC_CACHE) > 256:
            _PUBLIC_CACHE.clear()
        _PUBLIC_CACHE[key_id] = cached
    return cached


def _galois_object(params: ParameterSet, key_id: str, data: bytes) -> Any:
    cached = _GALOIS_CACHE.get(key_id)
    if cached is None:
        from crypto.he._seal import backend

        cached = backend(params).load_galois(data)
        if len(_GALOIS_CACHE) > 64:
            _GALOIS_CACHE.clear()
        _GALOIS_CACHE[key_id] = cached
    return cached


@dataclass(frozen=True)
class GateKeyBundle:
    """A gate's full key set. The secret key must never leave the gate unsealed."""

    params: ParameterSet
    key_id: str
    created_at: dt.datetime
    secret_key: bytes = field(repr=False)
    public_key: bytes = field(repr=False)
    galois_keys: bytes | None = field(repr=False)

    @classmethod
    def generate(cls, params: ParameterSet, *, now: dt.datetime | None = None) -> GateKeyBundle:
        """Fresh keys from SEAL's CSPRNG (key material cannot be drawn from an injected rng)."""
        from crypto.he._seal import backend

        be = backend(params)
        material = be.generate_keys(_galois_steps(params))
        galois = material.galois
        if params.single_ciphertext:
            _, secret = be.load_secret(material.secret)
            galois = generate_rotation_keys(params, secret).to_bytes()
        return cls(
            params=params,
            key_id=key_id_for(params, material.public),
            created_at=now or dt.datetime.now(dt.UTC),
            secret_key=material.secret,
            public_key=material.public,
            galois_keys=galois,
        )

    def public(self) -> PublicKeyBundle:
        return PublicKeyBundle(
            params=self.params,
            key_id=self.key_id,
            public_key=self.public_key,
            galois_keys=self.galois_keys,
        )

    @property
    def sizes(self) -> dict[str, int]:
        """Serialized sizes in bytes (secret key included, for capacity planning)."""
        return {"secret_key": len(self.secret_key), **self.public().sizes}

    def secret_residues(self) -> tuple[Any, npt.NDArray[np.uint64]]:
        """(SEAL secret key, its data-level NTT residues (k, N))."""
        from crypto.he._seal import backend

        return backend(self.params).load_secret(self.secret_key)

    # ---- at rest --------------------------------------------------------------------

    def to_sealed_bytes(self, kek: KeyEncryptionKey) -> bytes:
        """The bundle sealed with ``kek``; the key id stays readable to pick the bundle."""
        gk = self.galois_keys or b""
        head = _SK_HEAD.pack(
            _SK_MAGIC,
            _VERSION,
            self.params.hash,
            bytes.fromhex(self.key_id),
            self.created_at.timestamp(),
            len(self.secret_key),
            len(self.public_key),
            len(gk),
        )
        body = self.secret_key + self.public_key + gk
        return head + seal(kek, body, self._aad_for(head))

    @staticmethod
    def _aad_for(head: bytes) -> bytes:
        return b"veilmatch/he/gate-secret/v1\x00" + head

    @classmethod
    def from_sealed_bytes(cls, data: bytes, kek: KeyEncryptionKey) -> GateKeyBundle:
        """Open a sealed bundle; ``SealedDataError`` if it does not authenticate."""
        if len(data) < _SK_HEAD.size:
            raise MalformedInputError("sealed key bundle truncated")
        head = data[: _SK_HEAD.size]
        magic, version, phash, kid, ts, sk_len, pk_len, gk_len = _SK_HEAD.unpack(head)
        if magic != _SK_MAGIC or version != _VERSION:
            raise MalformedInputError("not a version-1 sealed key bundle")
        params = get_parameter_set(phash)
        body = open_sealed(kek, data[_SK_HEAD.size :], cls._aad_for(head))
        if len(body) != sk_len + pk_len + gk_len:
            raise MalformedInputError("sealed key bundle lengths do not match")
        public_key = body[sk_len : sk_len + pk_len]
        bundle = cls(
            params=params,
            key_id=kid.hex(),
            created_at=dt.datetime.fromtimestamp(ts, dt.UTC),
            secret_key=body[:sk_len],
            public_key=public_key,
            galois_keys=body[sk_len + pk_len :] or None,
        )
        if key_id_for(params, public_key) != bundle.key_id:
            raise KeyMismatchError("sealed key bundle id does not match its public key")
        return bundle

    def save(self, path: Path, kek: KeyEncryptionKey) -> None:
        """Write the sealed bundle to ``path`` (mode 0600, atomically replaced)."""
        import os

        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.to_sealed_bytes(kek))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, kek: KeyEncryptionKey) -> GateKeyBundle:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CryptoError(f"cannot read key bundle {path}: {exc.strerror}") from None
        return cls.from_sealed_bytes(data, kek)


@dataclass
class _Entry:
    bundle: PublicKeyBundle
    registered_at: dt.datetime
    retired_at: dt.datetime | None = None


class KeyRegistry:
    """The service's view of gate keys: register, retire, and check before use.

    ``require`` is the single gate every probe passes: unknown key → ``UnknownKeyError``,
    retired key → ``RetiredKeyError``, parameter hash different from the registered one
    or from the active set → ``ParameterMismatchError``. In-memory; the service persists
    the public bundles and replays them at start-up.
    """

    def __init__(self, active: ParameterSet) -> None:
        self.active = active
        self._entries: dict[str, _Entry] = {}

    def register(self, bundle: PublicKeyBundle, *, now: dt.datetime | None = None) -> None:
        if bundle.params.hash != self.active.hash:
            raise ParameterMismatchError(
                f"key {bundle.key_id} uses {bundle.params.name}, active is {self.active.name}"
            )
        existing = self._entries.get(bundle.key_id)
        if existing is not None and existing.retired_at is not None:
            raise RetiredKeyError(f"key {bundle.key_id} was retired and cannot return")
        self._entries[bundle.key_id] = _Entry(bundle, now or dt.datetime.now(dt.UTC))

    def retire(self, key_id: str, *, now: dt.datetime | None = None) -> None:
        entry = self._entries.get(key_id)
        if entry is None:
            raise UnknownKeyError(f"unknown gate key {key_id}")
        entry.retired_at = entry.retired_at or now or dt.datetime.now(dt.UTC)

    def require(self, key_id: str, params_hash: bytes) -> PublicKeyBundle:
        """The registered bundle for ``key_id``, if usable with ``params_hash``."""
        entry = self._entries.get(key_id)
        if entry is None:
            raise UnknownKeyError(f"unknown gate key {key_id}")
        if entry.retired_at is not None:
            raise RetiredKeyError(f"gate key {key_id} is retired")
        if params_hash not in (entry.bundle.params.hash,) or params_hash != self.active.hash:
            raise ParameterMismatchError(f"probe parameters differ from key {key_id}'s")
        return entry.bundle

    def active_keys(self) -> list[str]:
        return sorted(k for k, e in self._entries.items() if e.retired_at is None)
