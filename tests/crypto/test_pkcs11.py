"""Keys in a PKCS#11 token (real SoftHSM2): Ed25519 signing, AES key wrap, HMAC, and
every secret key refusing to leave the token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn

from audit.note import NoteSigner, sign_note, verify_note
from crypto.atrest import FileKek, open_sealed, seal
from crypto.errors import (
    HsmError,
    KeyExportRefusedError,
    KeyNotFoundError,
    SealedDataError,
    TagMismatchError,
)
from crypto.keystore import MacKey, SecretMacKey
from crypto.pkcs11 import Pkcs11Token
from tests.softhsm_fixtures import soft_token, softhsm_config  # noqa: F401 - fixtures
from veilmatch.softhsm import SoftToken


@pytest.fixture
def token(soft_token: SoftToken) -> Iterator[Pkcs11Token]:  # noqa: F811
    with Pkcs11Token.open(soft_token.module, soft_token.label, soft_token.pin) as opened:
        yield opened


@pytest.fixture
def raw_session(soft_token: SoftToken) -> Iterator[pkcs11.Session]:  # noqa: F811
    """A second, plain python-pkcs11 session: what an attacker with the PIN could do."""
    tok = pkcs11.lib(str(soft_token.module)).get_token(token_label=soft_token.label)
    try:
        session = tok.open(user_pin=soft_token.pin, rw=True)
    except UserAlreadyLoggedIn:  # login state is per process (PKCS#11)
        session = tok.open(rw=True)
    with session:
        yield session


def test_ed25519_signs_in_the_token_and_verifies_with_cryptography(token: Pkcs11Token) -> None:
    key = token.ed25519_key("log", create=True)
    signature = key.sign(b"message")
    key.public_key().verify(signature, b"message")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, b"messagE")
    # found again by label, same public key
    again = token.ed25519_key("log")
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def test_note_signer_works_unchanged_over_a_token_key(token: Pkcs11Token) -> None:
    signer = NoteSigner("veilmatch.invalid/audit-log", 0x01, token.ed25519_key("log", create=True))
    note = sign_note(b"veilmatch.invalid/audit-log\n3\nAAAA\n", [signer])
    [(verifier, _stamp)] = verify_note(note, [signer.verifier()])
    assert verifier == signer.verifier()
    with pytest.raises(KeyExportRefusedError):
        signer.to_string()


def test_missing_key_is_not_created_unless_asked(token: Pkcs11Token) -> None:
    with pytest.raises(KeyNotFoundError):
        token.ed25519_key("absent")
    with pytest.raises(KeyNotFoundError):
        token.aes_kek("absent")
    with pytest.raises(KeyNotFoundError):
        token.hmac_key("absent")


def test_kek_wraps_inside_the_token_and_seals(token: Pkcs11Token) -> None:
    kek = token.aes_kek("kek", create=True)
    assert len(kek.key_id) == 16
    blob = seal(kek, b"template bytes", b"watchlist:1")
    assert open_sealed(kek, blob, b"watchlist:1") == b"template bytes"
    with pytest.raises(SealedDataError):
        open_sealed(kek, blob, b"watchlist:2")
    with pytest.raises(SealedDataError):
        kek.unwrap(bytes(40))  # right length, does not authenticate
    with pytest.raises(SealedDataError):
        kek.unwrap(b"short")


def test_imported_file_kek_opens_old_blobs_and_wraps_identically(
    token: Pkcs11Token, tmp_path: Path
) -> None:
    file_kek = FileKek.generate(tmp_path / "kek.bin")
    old_blob = seal(file_kek, b"sealed before the HSM", b"aad")
    raw = (tmp_path / "kek.bin").read_bytes()
    kek = token.import_aes_kek("kek", raw, file_kek.key_id)
    assert kek.key_id == file_kek.key_id
    assert open_sealed(kek, old_blob, b"aad") == b"sealed before the HSM"
    data_key = os.urandom(32)
    assert kek.wrap(data_key) == aes_key_wrap(raw, data_key)  # RFC 3394, same bytes
    with pytest.raises(HsmError):
        token.import_aes_kek("kek", raw, file_kek.key_id)  # never two keys under a label


def test_hmac_key_tags_like_hmac_sha256_and_verifies(token: Pkcs11Token) -> None:
    key = token.hmac_key("mac", create=True)
    assert isinstance(key, MacKey)
    tag = key.tag(b"payload")
    assert len(tag) == 32 and key.tag(b"payload") == tag
    key.verify(b"payload", tag)
    with pytest.raises(TagMismatchError):
        key.verify(b"payload!", tag)
    with pytest.raises(TagMismatchError):
        key.verify(b"payload", tag[:-1])
    other = token.hmac_key("mac-2", create=True)
    assert other.tag(b"payload") != tag and other.key_id != key.key_id


def test_secret_mac_key_matches_the_protocol() -> None:
    key = SecretMacKey(b"k" * 32)
    assert isinstance(key, MacKey)
    key.verify(b"x", key.tag(b"x"))
    with pytest.raises(TagMismatchError):
        key.verify(b"y", key.tag(b"x"))


@pytest.mark.parametrize(
    ("make", "object_class", "key_type"),
    [
        (lambda t: t.ed25519_key("k", create=True), ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS),
        (lambda t: t.aes_kek("k", create=True), ObjectClass.SECRET_KEY, KeyType.AES),
        (lambda t: t.hmac_key("k", create=True), ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET),
    ],
    ids=["ed25519", "kek", "hmac"],
)
def test_no_secret_key_can_be_exported(
    token: Pkcs11Token, raw_session: pkcs11.Session, make, object_class, key_type
) -> None:
    make(token)
    [key] = raw_session.get_objects(
        {Attribute.CLASS: object_class, Attribute.KEY_TYPE: key_type, Attribute.LABEL: "k"}
    )
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    with pytest.raises(PKCS11Error):  # CKR_ATTRIBUTE_SENSITIVE
        key[Attribute.VALUE]
    with pytest.raises(PKCS11Error):  # read-only once set, and MODIFIABLE is false
        key[Attribute.EXTRACTABLE] = True
    wrapping = raw_session.generate_key(
        KeyType.AES, 256, label="attacker", template={Attribute.WRAP: True}
    )
    with pytest.raises(PKCS11Error):  # CKR_KEY_UNEXTRACTABLE: no wrapping it out either
        wrapping.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)  # type: ignore[attr-defined]


def test_ed25519_private_bytes_refused(token: Pkcs11Token) -> None:
    key = token.ed25519_key("log", create=True)
    with pytest.raises(KeyExportRefusedError):
        key.private_bytes_raw()
    with pytest.raises(KeyExportRefusedError):
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )


def test_exportable_key_planted_under_our_label_is_refused(
    token: Pkcs11Token, raw_session: pkcs11.Session
) -> None:
    raw_session.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        label="planted",
        store=True,
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    with pytest.raises(HsmError, match="exportable"):
        token.hmac_key("planted")


def test_wrong_pin_unknown_token_and_missing_module(soft_token: SoftToken) -> None:  # noqa: F811
    with pytest.raises(HsmError, match="PIN") as caught:
        Pkcs11Token.open(soft_token.module, soft_token.label, "0000" + soft_token.pin)
    assert soft_token.pin not in str(caught.value)
    with pytest.raises(HsmError, match="no PKCS#11 token"):
        Pkcs11Token.open(soft_token.module, "no-such-token", soft_token.pin)
    with pytest.raises(HsmError, match="does not exist"):
        Pkcs11Token.open(Path("/nonexistent/libpkcs11.so"), soft_token.label, soft_token.pin)
