"""A local SoftHSM2 token for trying the PKCS#11 key provider (``veilmatch dev hsm-init``).

SoftHSM2 (Debian package ``softhsm2``) is a software PKCS#11 token: keys in it are as
non-exportable as in an HSM through the PKCS#11 interface, but they sit in files of
its token directory, so it is for development and tests only. :func:`init_token` writes
a ``softhsm2.conf`` naming a token directory and initialises a fresh token there with
``softhsm2-util``; the library reads ``SOFTHSM2_CONF`` when a process first loads it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigurationError
from core.settings import Settings
from crypto.atrest import FileKek
from crypto.errors import CryptoError
from service.keys import LABEL_KEK, load_service_keys, open_token

__all__ = [
    "SOFTHSM_MODULES",
    "InitResult",
    "SoftToken",
    "find_softhsm_module",
    "hsm_init",
    "init_token",
    "write_config",
]

#: Where Debian's ``libsofthsm2`` puts the PKCS#11 module, most usual first.
SOFTHSM_MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
)


@dataclass(frozen=True)
class SoftToken:
    """An initialised SoftHSM2 token: its module, label, user PIN and config file."""

    module: Path
    label: str
    pin: str
    config: Path


def find_softhsm_module() -> Path:
    """The installed SoftHSM2 PKCS#11 module; ``ConfigurationError`` if there is none."""
    for candidate in SOFTHSM_MODULES:
        if candidate.is_file():
            return candidate
    raise ConfigurationError(
        "VEILMATCH_PKCS11_MODULE", "SoftHSM2 is not installed (apt-get install softhsm2)"
    )


def write_config(directory: Path) -> Path:
    """Create ``directory/tokens`` (0700) and ``directory/softhsm2.conf`` pointing at it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True, mode=0o700)
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {tokens.resolve()}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n",
        encoding="utf-8",
    )
    return config


def init_token(config: Path, label: str, pin: str | None = None) -> SoftToken:
    """Initialise a fresh token ``label`` in the first free slot of ``config``'s directory.

    ``pin`` defaults to a random one (returned); the security officer PIN is random and
    forgotten, since nothing here needs it.
    """
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise ConfigurationError(
            "VEILMATCH_PKCS11_MODULE", "softhsm2-util is missing (apt-get install softhsm2)"
        )
    module = find_softhsm_module()
    pin = pin or secrets.token_hex(8)
    command = [tool, "--init-token", "--free", "--label", label, "--pin", pin]
    command += ["--so-pin", secrets.token_hex(8)]
    result = subprocess.run(  # noqa: S603 - fixed tool, arguments are not shell-parsed
        command,
        env={"SOFTHSM2_CONF": str(config), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigurationError("VEILMATCH_PKCS11_TOKEN_LABEL", f"softhsm2-util: {reason[0]}")
    return SoftToken(module, label, pin, config)


@dataclass(frozen=True)
class InitResult:
    """What ``veilmatch dev hsm-init`` made: the token, its PIN file and the environment
    that points the service at it, and the audit log's verifier key."""

    token: SoftToken
    pin_file: Path
    environment: dict[str, str]
    log_verifier: str
    kek_imported: bool


def hsm_init(
    directory: Path, label: str, settings: Settings, *, import_kek: bool = False
) -> InitResult:
    """Initialise a SoftHSM2 token in ``directory`` and generate the service's keys in it.

    Refuses a directory that already holds tokens (delete it to start over). With
    ``import_kek`` the existing file KEK (``settings.kek_file``) is copied into the token
    under its own id, so data sealed under it keeps opening; delete the file afterwards.
    The PIN goes to ``directory/pin`` (0600). Sets ``SOFTHSM2_CONF`` in this process.
    """
    tokens = directory / "tokens"
    if tokens.is_dir() and any(tokens.iterdir()):
        raise ConfigurationError(
            "VEILMATCH_PKCS11_TOKEN_LABEL", f"{directory} already holds a token; delete it first"
        )
    config = write_config(directory)
    token = init_token(config, label)
    pin_file = directory / "pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token.pin + "\n")
    os.environ["SOFTHSM2_CONF"] = str(config)  # read by the library when it loads
    environment = {
        "SOFTHSM2_CONF": str(config.resolve()),
        "VEILMATCH_KEY_PROVIDER": "pkcs11",
        "VEILMATCH_PKCS11_MODULE": str(token.module),
        "VEILMATCH_PKCS11_TOKEN_LABEL": label,
        "VEILMATCH_PKCS11_PIN_FILE": str(pin_file.resolve()),
    }
    hsm_settings = settings.model_copy(
        update={
            "key_provider": "pkcs11",
            "pkcs11_module": token.module,
            "pkcs11_token_label": label,
            "pkcs11_pin_file": pin_file,
            "pkcs11_pin": None,
        }
    )
    imported = False
    if import_kek:
        assert settings.kek_file is not None
        _import_file_kek(hsm_settings, Path(settings.kek_file))
        imported = True
    keys = load_service_keys(hsm_settings, create=True)
    try:
        verifier = keys.log_signer.verifier().to_string()
    finally:
        keys.close()
    return InitResult(token, pin_file, environment, verifier, imported)


def _import_file_kek(settings: Settings, kek_file: Path) -> None:
    try:
        file_kek = FileKek.load(kek_file)
        raw = kek_file.read_bytes()
    except CryptoError as exc:
        raise ConfigurationError("VEILMATCH_KEK_FILE", str(exc)) from None
    with open_token(settings) as token:
        token.import_aes_kek(LABEL_KEK, raw, file_kek.key_id)
