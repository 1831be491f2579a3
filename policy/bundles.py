"""Policy bundles: the exact set of Rego and JSON files an engine evaluates, and its digest.

A bundle is a directory laid out like an OPA bundle::

    veilmatch/access/access.rego        package veilmatch.access
    veilmatch/access/access_test.rego   package veilmatch.access_test (tests)
    params/access/data.json             loaded at data.params.access

**Digest.** ``sha256:`` + SHA-256 over a manifest with one line per *decision file*
(every ``*.rego`` that is not a ``*_test.rego``, and every ``data.json``), sorted by
path (bytewise), each line ``<sha256 hex of the file bytes>  <path>\\n``: exactly the
output of ``sha256sum`` over those files, so anyone can recompute it::

    cd policy/bundle && find . -type f \\( -name '*.rego' ! -name '*_test.rego' \\
        -o -name data.json \\) | sed 's|^\\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum

Test files are excluded on purpose: they never influence a decision and are not
loaded into serving engines, so the digest names exactly what decided. Changing only a
test leaves the digest unchanged; ``veilmatch policy diff`` still shows test changes.
Files are hashed as bytes (no newline or encoding normalisation).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from policy.errors import BundleError

__all__ = ["PolicyBundle", "default_bundle_dir"]

DATA_FILE = "data.json"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IGNORED_SUFFIXES = (".md",)


def default_bundle_dir() -> Path:
    """The bundle shipped with veilmatch (package data)."""
    return Path(__file__).with_name("bundle")


def _is_test(path: str) -> bool:
    return path.endswith("_test.rego")


@dataclass(frozen=True)
class PolicyBundle:
    """An immutable, validated set of bundle files keyed by POSIX relative path.

    Invariants (checked on construction): at least one non-test ``.rego`` file; every
    ``.rego`` file is UTF-8; every ``data.json`` is a JSON object under a directory whose
    segments are identifiers (it is loaded at ``data.<dir.path>``); no other file kinds.
    """

    files: Mapping[str, bytes]
    source: str = "<memory>"
    modules: Mapping[str, str] = field(init=False, repr=False)
    tests: Mapping[str, str] = field(init=False, repr=False)
    data: Mapping[str, dict[str, Any]] = field(init=False, repr=False)
    manifest: tuple[tuple[str, str], ...] = field(init=False, repr=False)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        modules: dict[str, str] = {}
        tests: dict[str, str] = {}
        data: dict[str, dict[str, Any]] = {}
        for path in sorted(self.files):
            content = self.files[path]
            _check_path(path)
            if path.endswith(".rego"):
                try:
                    text = content.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BundleError(f"{path}: not UTF-8 ({exc.reason})") from None
                (tests if _is_test(path) else modules)[path] = text
            elif PurePosixPath(path).name == DATA_FILE:
                data[_data_path(path)] = _parse_data(path, content)
            else:
                raise BundleError(
                    f"{path}: unexpected file; a bundle holds only .rego files and data.json"
                )
        if not modules:
            raise BundleError(f"{self.source}: no policy (.rego) files")
        manifest = tuple(
            (path, hashlib.sha256(self.files[path]).hexdigest())
            for path in sorted([*modules, *(p for p in self.files if p.endswith(DATA_FILE))])
        )
        text = "".join(f"{digest}  {path}\n" for path, digest in manifest)
        object.__setattr__(self, "files", dict(self.files))
        object.__setattr__(self, "modules", modules)
        object.__setattr__(self, "tests", tests)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "digest", "sha256:" + hashlib.sha256(text.encode()).hexdigest())

    @classmethod
    def from_dir(cls, path: Path) -> PolicyBundle:
        """Read a bundle directory; ``.md`` files and hidden entries are ignored."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root}: not a directory")
        files: dict[str, bytes] = {}
        for file in sorted(_walk(root)):
            rel = file.relative_to(root).as_posix()
            if rel.endswith(_IGNORED_SUFFIXES):
                continue
            files[rel] = file.read_bytes()
        return cls(files, source=str(root))

    def packages(self) -> dict[str, str]:
        """Module path → Rego package name, tests included."""
        return {
            path: package_of(text, path) for path, text in {**self.modules, **self.tests}.items()
        }

    def with_file(self, path: str, content: bytes) -> PolicyBundle:
        """A copy with one file added or replaced (tests use it to break a rule on purpose)."""
        return PolicyBundle({**self.files, path: content}, source=self.source)


def package_of(text: str, path: str = "<module>") -> str:
    """The package a Rego module declares (first ``package`` line)."""
    match = re.search(r"^package\s+([A-Za-z_][\w.]*)\s*$", text, re.MULTILINE)
    if match is None:
        raise BundleError(f"{path}: no package declaration")
    return match.group(1)


def _walk(root: Path) -> Iterator[Path]:
    for entry in root.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def _check_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise BundleError(f"{path!r}: not a relative path inside the bundle")


def _data_path(path: str) -> str:
    parts = PurePosixPath(path).parent.parts
    if not parts:
        raise BundleError(f"{path}: data.json must live in a directory naming its data path")
    for part in parts:
        if not _IDENTIFIER.match(part):
            raise BundleError(f"{path}: directory {part!r} is not a Rego identifier")
    return ".".join(parts)


def _parse_data(path: str, content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}: must hold a JSON object")
    return value
