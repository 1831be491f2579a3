"""A local SoftHSM2 token for trying the PKCS#11 key provider (``veilmatch dev hsm-init``).

SoftHSM2 (Debian package ``softhsm2``) is a software PKCS#11 token: keys in it are as
non-exportable as in an HSM through the PKCS#11 interface, but they sit in files of
its token directory, so it is for development and tests only. :func:`init_token` writes
a ``softhsm2.conf`` naming a token directory and initialises a fresh token there with
``softhsm2-util``; the library reads ``SOFTHSM2_CONF`` when a process first loads it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigurationError

__all__ = ["SOFTHSM_MODULES", "SoftToken", "find_softhsm_module", "init_token", "write_config"]

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
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
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
