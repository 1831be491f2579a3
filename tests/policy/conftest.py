"""Shared fixtures: the shipped bundle, engines on it, and a local OPA-compatible server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from policy.bundles import PolicyBundle, default_bundle_dir
from policy.embedded import EmbeddedEngine
from policy.local_opa import LocalOpaServer
from policy.opa_http import HttpEngine


@pytest.fixture(scope="session")
def bundle() -> PolicyBundle:
    return PolicyBundle.from_dir(default_bundle_dir())


@pytest.fixture
def embedded(bundle: PolicyBundle) -> EmbeddedEngine:
    engine = EmbeddedEngine()
    engine.load(bundle)
    return engine


@pytest.fixture(scope="session")
def opa_server() -> Iterator[LocalOpaServer]:
    with LocalOpaServer() as server:
        yield server


@pytest.fixture
def http_engine(bundle: PolicyBundle) -> Iterator[HttpEngine]:
    # A fresh server per test: HTTP engines own their sidecar's state.
    with LocalOpaServer() as server:
        engine = HttpEngine(server.url)
        engine.load(bundle)
        yield engine
        engine.close()


def replace_in(bundle: PolicyBundle, path: str, old: str, new: str) -> PolicyBundle:
    """A copy of ``bundle`` with one textual edit in one file (the edit must apply)."""
    text = bundle.files[path].decode()
    assert old in text, f"{old!r} not in {path}"
    return bundle.with_file(path, text.replace(old, new, 1).encode())
