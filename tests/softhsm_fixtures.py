"""SoftHSM2 fixtures: one token directory per test session, a fresh token per test.

The PKCS#11 library reads ``SOFTHSM2_CONF`` once, when the process first loads it, and
lists only the tokens that existed then; so the session fixture sets the variable before
any test loads the module, and each fresh token re-initialises the library (no token
session may outlive its test). SoftHSM2 missing is a failure, not a skip: ``make test``
installs it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest

from veilmatch.softhsm import SoftToken, init_token, write_config


@pytest.fixture(scope="session")
def softhsm_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 config with an empty token directory, exported as ``SOFTHSM2_CONF``."""
    config = write_config(tmp_path_factory.mktemp("softhsm"))
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(config)
    yield config
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def soft_token(softhsm_config: Path) -> SoftToken:
    """A freshly initialised token with a unique label and a random PIN."""
    token = init_token(softhsm_config, f"t-{uuid.uuid4().hex[:12]}")
    pkcs11.lib(str(token.module)).reinitialize()  # see the module doc
    return token
