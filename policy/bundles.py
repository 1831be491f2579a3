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

**Profiles.** A bundle may hold jurisdiction profiles, one ``profiles/<id>/data.json``
each (loaded at ``data.profiles["<id>"]``; ids like ``cn-mainland``). Such a bundle is
always evaluated under exactly one *active* profile (default :data:`DEFAULT_PROFILE`),
mounted for the policies at ``data.active_profile.id``. The active profile is part of
the digest: one more line ``profile <id>\n`` after the file lines, so the same files
under two profiles have two digests and every decision names the law it applied::

    { find ... | xargs sha256sum; echo "profile eu"; } | sha256sum

A bundle without profiles has no such line (the digests of versions that predate
profiles are unchanged).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from policy.errors import BundleError, UnknownProfileError

__all__ = ["DEFAULT_PROFILE", "PolicyBundle", "default_bundle_dir"]

DATA_FILE = "data.json"
#: The profile a bundle with profiles is evaluated under when none is named.
DEFAULT_PROFILE = "eu"
#: Where the active profile's id is mounted for the policies (``data.active_profile.id``).
ACTIVE_PROFILE_PATH = "active_profile"
_PROFILES_DIR = "profiles"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROFILE_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
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
    segments are identifiers (it is loaded at ``data.<dir.path>``), except a profile id
    below ``profiles/``; no other file kinds. ``profile`` is None exactly when the bundle
    defines no profiles, else one of :attr:`profiles` (``UnknownProfileError`` if not).
    """

    files: Mapping[str, bytes]
    source: str = "<memory>"
    profile: str | None = None
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
        profile = _select_profile(self.source, _profiles_of(data), self.profile)
        if profile is not None:
            data[ACTIVE_PROFILE_PATH] = {"id": profile}
        manifest = tuple(
            (path, hashlib.sha256(self.files[path]).hexdigest())
            for path in sorted([*modules, *(p for p in self.files if p.endswith(DATA_FILE))])
        )
        text = "".join(f"{digest}  {path}\n" for path, digest in manifest)
        text += f"profile {profile}\n" if profile is not None else ""
        object.__setattr__(self, "profile", profile)
        object.__setattr__(self, "files", dict(self.files))
        object.__setattr__(self, "modules", modules)
        object.__setattr__(self, "tests", tests)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "manifest", manifest)
        object.__setattr__(self, "digest", "sha256:" + hashlib.sha256(text.encode()).hexdigest())

    @property
    def profiles(self) -> tuple[str, ...]:
        """Ids of the profiles this bundle defines, sorted (empty if none)."""
        return _profiles_of(self.data)

    @classmethod
    def from_dir(cls, path: Path, *, profile: str | None = None) -> PolicyBundle:
        """Read a bundle directory; ``.md`` files and hidden entries are ignored.

        ``profile`` selects the active profile (default :data:`DEFAULT_PROFILE` when the
        bundle defines profiles); an unknown one raises ``UnknownProfileError``.
        """
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root}: not a directory")
        files: dict[str, bytes] = {}
        for file in sorted(_walk(root)):
            rel = file.relative_to(root).as_posix()
            if rel.endswith(_IGNORED_SUFFIXES):
                continue
            files[rel] = file.read_bytes()
        return cls(files, source=str(root), profile=profile)

    def packages(self) -> dict[str, str]:
        """Module path → Rego package name, tests included."""
        return {
            path: package_of(text, path) for path, text in {**self.modules, **self.tests}.items()
        }

    def with_file(self, path: str, content: bytes) -> PolicyBundle:
        """A copy with one file added or replaced (tests use it to break a rule on purpose)."""
        return PolicyBundle({**self.files, path: content}, source=self.source, profile=self.profile)

    def with_profile(self, profile: str | None) -> PolicyBundle:
        """The same files under another active profile (None: the default)."""
        return PolicyBundle(self.files, source=self.source, profile=profile)


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
    if parts[0] == ACTIVE_PROFILE_PATH:
        raise BundleError(f"{path}: {ACTIVE_PROFILE_PATH!r} is reserved for the active profile")
    if parts[0] == _PROFILES_DIR:
        if len(parts) != 2 or not _PROFILE_ID.match(parts[1]):
            raise BundleError(
                f"{path}: a profile lives in profiles/<id>/data.json, id like 'cn-mainland'"
            )
        return ".".join(parts)
    for part in parts:
        if not _IDENTIFIER.match(part):
            raise BundleError(f"{path}: directory {part!r} is not a Rego identifier")
    return ".".join(parts)


def _profiles_of(data: Mapping[str, Any]) -> tuple[str, ...]:
    prefix = _PROFILES_DIR + "."
    return tuple(sorted(p.removeprefix(prefix) for p in data if p.startswith(prefix)))


def _select_profile(source: str, profiles: tuple[str, ...], wanted: str | None) -> str | None:
    """The active profile: ``wanted``, else the default; None for a bundle without any."""
    if not profiles:
        if wanted is not None:
            raise UnknownProfileError(wanted, profiles, source)
        return None
    chosen = DEFAULT_PROFILE if wanted is None else wanted
    if chosen not in profiles:
        raise UnknownProfileError(chosen, profiles, source)
    return chosen


def _parse_data(path: str, content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}: must hold a JSON object")
    return value
