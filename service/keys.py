"""Where the service's secret keys live: files (the development default) or an HSM.

Four keys, each reached through a narrow interface so that where it lives does not
matter to the code using it:

============================  ==========================  ==============================
key                           ``key_provider = "file"``    ``key_provider = "pkcs11"``
============================  ==========================  ==============================
audit log signing (Ed25519)   ``key_dir/audit-log.key``   ``veilmatch-audit-log`` pair
watchlist KEK (AES-256)       ``kek_file``                ``veilmatch-kek`` (wrap/unwrap)
staff token secret (HMAC)     ``token_secret``/per run    ``veilmatch-token-mac``
audit sequencer key (HMAC)    the audit log's file key    ``veilmatch-audit-sequencer``
============================  ==========================  ==============================

In the token every key is generated there, sensitive and non-extractable
(:mod:`crypto.pkcs11`); with ``create`` (service start) missing keys are generated,
without it (a retention sweep, a tool) a missing key is a configuration error, so a
tool never makes a second key. The log's verifier key (public) is written to
``key_dir/audit-log.pub`` either way, for ``veilmatch audit verify``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audit.errors import SequencerKeyError
from audit.keys import SEQUENCER_KEY_FILE, SequencerKey, load_or_create_sequencer_key, load_signer
from audit.note import ED25519, NoteSigner
from core.errors import ConfigurationError
from core.settings import Settings
from crypto.atrest import FileKek, KeyEncryptionKey
from crypto.errors import HsmError, KeyNotFoundError, TagMismatchError
from crypto.keystore import MIN_SECRET_BYTES, MacKey, SecretMacKey
from crypto.pkcs11 import Pkcs11Token
from service.adapters import DEFAULT_LOG_NAME, load_or_create_log_signer
from service.context import load_or_create_kek

__all__ = [
    "LABEL_KEK",
    "LABEL_LOG",
    "LABEL_SEQUENCER",
    "LABEL_TOKEN_MAC",
    "ServiceKeys",
    "TokenSequencerKey",
    "load_service_keys",
    "open_token",
]

LABEL_LOG = "veilmatch-audit-log"
LABEL_KEK = "veilmatch-kek"
LABEL_TOKEN_MAC = "veilmatch-token-mac"  # noqa: S105 - a key label, not a secret
LABEL_SEQUENCER = "veilmatch-audit-sequencer"
LOG_KEY_FILE = "audit-log.key"
LOG_PUBLIC_FILE = "audit-log.pub"


@dataclass
class ServiceKeys:
    """The service's keys, whichever provider holds them. ``close`` releases the token.

    ``sequencer`` authenticates every range the audit log appends (``audit.sequencer``):
    a 0600 file beside the log key, or an HMAC key inside the token.
    """

    provider: str
    log_signer: NoteSigner
    kek: KeyEncryptionKey
    token_mac: MacKey
    sequencer: SequencerKey
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def close(self) -> None:
        """Close the PKCS#11 session, if any (the keys stop working)."""
        self._close()


def load_service_keys(settings: Settings, *, create: bool = True) -> ServiceKeys:
    """The keys ``settings.key_provider`` names; with ``create``, missing ones are made."""
    if settings.key_provider == "pkcs11":
        return _pkcs11_keys(settings, create=create)
    return _file_keys(settings, create=create)


def _file_keys(settings: Settings, *, create: bool) -> ServiceKeys:
    assert settings.key_dir is not None and settings.kek_file is not None
    log_key = Path(settings.key_dir) / LOG_KEY_FILE
    sequencer_key = Path(settings.key_dir) / SEQUENCER_KEY_FILE
    kek_file = Path(settings.kek_file)
    kek: KeyEncryptionKey
    if not create:
        for setting, path in (
            ("VEILMATCH_KEY_DIR", log_key),
            ("VEILMATCH_KEY_DIR", sequencer_key),
            ("VEILMATCH_KEK_FILE", kek_file),
        ):
            if not path.is_file():
                raise ConfigurationError(
                    setting, f"{path} does not exist; use the service's keys (a tool creates none)"
                )
        signer, kek = load_signer(log_key), FileKek.load(kek_file)
    else:
        signer, kek = load_or_create_log_signer(log_key), load_or_create_kek(kek_file)
    secret = settings.token_secret.get_secret_value().encode() if settings.token_secret else None
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            "VEILMATCH_TOKEN_SECRET", f"must be at least {MIN_SECRET_BYTES} bytes"
        )
    # No configured secret: a random one per process, so tokens die with it (as before).
    token_mac = SecretMacKey(secret or secrets.token_bytes(MIN_SECRET_BYTES))
    sequencer = load_or_create_sequencer_key(sequencer_key)
    return ServiceKeys("file", signer, kek, token_mac, sequencer)


class TokenSequencerKey:
    """The audit sequencer key held in the token, as :class:`audit.keys.SequencerKey`.

    The token's HMAC key raises ``crypto.errors.TagMismatchError``; the audit log expects
    :class:`audit.errors.SequencerKeyError`, so a mismatch is translated here.
    """

    def __init__(self, mac: MacKey) -> None:
        self._mac = mac

    def tag(self, data: bytes) -> bytes:
        return self._mac.tag(data)

    def verify(self, data: bytes, tag: bytes) -> None:
        try:
            self._mac.verify(data, tag)
        except TagMismatchError:
            raise SequencerKeyError("tag does not verify under the sequencer key") from None


def open_token(settings: Settings) -> Pkcs11Token:
    """The configured PKCS#11 token, logged in; ``ConfigurationError`` if it cannot be."""
    assert settings.pkcs11_module is not None
    try:
        return Pkcs11Token.open(
            Path(settings.pkcs11_module), settings.pkcs11_token_label, settings.pkcs11_user_pin()
        )
    except HsmError as exc:
        raise ConfigurationError("VEILMATCH_PKCS11_TOKEN_LABEL", str(exc)) from None


def _pkcs11_keys(settings: Settings, *, create: bool) -> ServiceKeys:
    token = open_token(settings)
    try:
        signer = NoteSigner(DEFAULT_LOG_NAME, ED25519, token.ed25519_key(LABEL_LOG, create=create))
        keys = ServiceKeys(
            "pkcs11",
            signer,
            token.aes_kek(LABEL_KEK, create=create),
            token.hmac_key(LABEL_TOKEN_MAC, create=create),
            TokenSequencerKey(token.hmac_key(LABEL_SEQUENCER, create=create)),
            token.close,
        )
    except KeyNotFoundError as exc:
        token.close()
        raise ConfigurationError(
            "VEILMATCH_KEY_PROVIDER",
            f"{exc}; start the service once, or run veilmatch dev hsm-init",
        ) from None
    except BaseException:
        token.close()
        raise
    assert settings.key_dir is not None
    _write_verifier(Path(settings.key_dir) / LOG_PUBLIC_FILE, signer)
    return keys


def _write_verifier(path: Path, signer: NoteSigner) -> None:
    """Publish the log's verifier key (public) next to the other keys, if it changed."""
    text = signer.verifier().to_string() + "\n"
    if path.is_file() and path.read_text(encoding="ascii") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text, encoding="ascii")
