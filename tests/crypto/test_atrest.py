"""At-rest envelope encryption: round trip and every failure mode raising one error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from crypto.atrest import BLOB_VERSION, FileKek, KeyEncryptionKey, open_sealed, seal
from crypto.errors import CryptoError, SealedDataError


@pytest.fixture
def kek(tmp_path: Path) -> FileKek:
    return FileKek.generate(tmp_path / "keys" / "kek.bin")


def test_round_trip(kek: FileKek) -> None:
    for plaintext in (b"", b"x", bytes(range(256)) * 100):
        blob = seal(kek, plaintext, b"ctx")
        assert open_sealed(kek, blob, b"ctx") == plaintext
        assert len(plaintext) < 16 or plaintext not in blob


def test_file_kek_is_private_and_reloads(kek: FileKek, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.bin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = FileKek.load(path)
    assert again.key_id == kek.key_id
    assert isinstance(again, KeyEncryptionKey)
    assert open_sealed(again, seal(kek, b"data")) == b"data"
    with pytest.raises(CryptoError, match="already exists"):
        FileKek.generate(path)


def test_loose_permissions_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.bin"
    FileKek.generate(path)
    path.chmod(0o644)
    with pytest.raises(CryptoError, match="group or others"):
        FileKek.load(path)


def test_wrong_aad(kek: FileKek) -> None:
    blob = seal(kek, b"data", b"record:1")
    with pytest.raises(SealedDataError):
        open_sealed(kek, blob, b"record:2")
    with pytest.raises(SealedDataError):
        open_sealed(kek, blob)


def test_wrong_kek(kek: FileKek, tmp_path: Path) -> None:
    other = FileKek.generate(tmp_path / "other.bin")
    with pytest.raises(SealedDataError):
        open_sealed(other, seal(kek, b"data"))


def test_wrong_kek_with_same_id_still_fails(kek: FileKek) -> None:
    class Impostor:
        key_id = kek.key_id

        def wrap(self, data_key: bytes) -> bytes:
            raise AssertionError

        def unwrap(self, wrapped: bytes) -> bytes:
            return FileKek(b"\x01" * 32).unwrap(wrapped)

    with pytest.raises(SealedDataError):
        open_sealed(Impostor(), seal(kek, b"data"))


def test_every_single_bit_flip_is_detected(kek: FileKek) -> None:
    blob = seal(kek, b"payload", b"aad")
    for i in range(len(blob)):
        for bit in (0, 7):
            mutated = bytearray(blob)
            mutated[i] ^= 1 << bit
            with pytest.raises(SealedDataError):
                open_sealed(kek, bytes(mutated), b"aad")


def test_truncation_and_garbage(kek: FileKek) -> None:
    blob = seal(kek, b"payload")
    for n in range(len(blob)):
        with pytest.raises(SealedDataError):
            open_sealed(kek, blob[:n])
    with pytest.raises(SealedDataError):
        open_sealed(kek, blob + b"\x00")
    with pytest.raises(SealedDataError):
        open_sealed(kek, b"\x00" * 200)


def test_version_byte(kek: FileKek) -> None:
    blob = seal(kek, b"payload")
    assert blob[0] == BLOB_VERSION
    with pytest.raises(SealedDataError):
        open_sealed(kek, bytes([BLOB_VERSION + 1]) + blob[1:])


def test_injected_randomness_is_deterministic(kek: FileKek) -> None:
    def zeros(n: int) -> bytes:
        return b"\x00" * n

    a = seal(kek, b"payload", randbytes=zeros)
    b = seal(kek, b"payload", randbytes=zeros)
    assert a == b
    assert seal(kek, b"payload") != seal(kek, b"payload")


def test_kek_length_checked() -> None:
    with pytest.raises(CryptoError):
        FileKek(b"short")
