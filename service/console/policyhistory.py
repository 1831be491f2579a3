"""Policy versions for the legal pages: the active bundle and its git history.

Policies are reviewed and versioned in git, so the history of the bundle directory is
the history of the policy. When the active bundle directory lies inside a git work
tree, each commit that touched it is a version: its files are exported once with
``git archive`` into a cache directory (keyed by commit id, immutable) and read with
:meth:`policy.bundles.PolicyBundle.from_dir`, which computes the digest the engines
record in the audit log. Rule-level differences come from
:func:`policy.diff.diff_bundles`. Without git, only the active bundle is listed.
Every version is read under the service's jurisdiction profile when it defines
profiles (versions that predate profiles keep the digest they were loaded with).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from policy.bundles import PolicyBundle
from policy.diff import Change, diff_bundles
from policy.errors import BundleError

__all__ = ["ACTIVE", "PolicyHistory", "PolicyVersion"]

#: The version id of the bundle loaded from disk (which may differ from every commit).
ACTIVE: Final = "active"
_REV = re.compile(r"^[0-9a-f]{40}$")
_SEP: Final = "\x1f"


@dataclass(frozen=True)
class PolicyVersion:
    """One version: ``rev`` is a commit id or :data:`ACTIVE`; ``date`` is ISO 8601."""

    rev: str
    date: str
    author: str
    subject: str
    digest: str

    @property
    def short(self) -> str:
        """Seven hex digits of a commit id, or ``active``."""
        return self.rev[:7] if self.rev != ACTIVE else ACTIVE


class PolicyHistory:
    """Versions of the bundle at ``bundle_dir``, exported under ``cache_dir``."""

    def __init__(self, bundle_dir: Path, cache_dir: Path, profile: str | None = None) -> None:
        self.bundle_dir = Path(bundle_dir).resolve()
        self.cache_dir = Path(cache_dir)
        self.profile = profile
        self._lock = threading.Lock()
        self._repo: Path | None = None
        self._prefix = ""
        top = self._git_text("rev-parse", "--show-toplevel", cwd=self.bundle_dir)
        if top is not None:
            prefix = self._git_text("rev-parse", "--show-prefix", cwd=self.bundle_dir)
            self._repo, self._prefix = Path(top), (prefix or "").rstrip("/")

    @property
    def in_git(self) -> bool:
        """Whether the bundle directory is inside a git work tree."""
        return self._repo is not None

    def active(self) -> PolicyBundle:
        """The bundle on disk (what the service loaded at start)."""
        return self._under_profile(PolicyBundle.from_dir(self.bundle_dir))

    def _under_profile(self, bundle: PolicyBundle) -> PolicyBundle:
        """``bundle`` under this history's profile, if it defines profiles."""
        if bundle.profiles and self.profile is not None:
            return bundle.with_profile(self.profile)
        return bundle

    def versions(self, limit: int = 30) -> list[PolicyVersion]:
        """Newest first: the active bundle if it differs from the newest commit, then the
        commits that changed the bundle directory (at most ``limit``)."""
        active = self.active()
        out: list[PolicyVersion] = []
        if self._repo is not None:
            log = self._git_text(
                "log",
                f"-n{limit}",
                f"--format=%H{_SEP}%cI{_SEP}%an{_SEP}%s",
                "--",
                ".",
                cwd=self.bundle_dir,
            )
            for line in (log or "").splitlines():
                rev, date, author, subject = [*line.split(_SEP), "", "", ""][:4]
                if _REV.match(rev):
                    try:
                        digest = self.bundle(rev).digest
                    except BundleError as exc:
                        digest = f"unreadable ({exc})"
                    out.append(PolicyVersion(rev, date, author, subject, digest))
        if not out or out[0].digest != active.digest:
            out.insert(0, PolicyVersion(ACTIVE, "", "", "bundle on disk (loaded)", active.digest))
        return out

    def bundle(self, rev: str) -> PolicyBundle:
        """The bundle at commit ``rev`` (40 hex) or :data:`ACTIVE`."""
        if rev == ACTIVE:
            return self.active()
        if not _REV.match(rev) or self._repo is None:
            raise BundleError(f"unknown policy version {rev[:40]!r}")
        target = self.cache_dir / rev
        with self._lock:
            if not target.is_dir():
                self._export(rev, target)
        return self._under_profile(
            PolicyBundle.from_dir(target / self._prefix if self._prefix else target)
        )

    def diff(self, old: str, new: str) -> tuple[PolicyBundle, PolicyBundle, list[Change]]:
        """Both bundles and every rule, metadata, data and test change between them."""
        before, after = self.bundle(old), self.bundle(new)
        return before, after, diff_bundles(before, after)

    def _export(self, rev: str, target: Path) -> None:
        assert self._repo is not None
        args = ["archive", "--format=tar", rev]
        if self._prefix:
            args += ["--", self._prefix]
        data = self._git_bytes(*args, cwd=self._repo)
        if data is None:
            raise BundleError(f"git archive failed for {rev[:12]}")
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(staging, filter="data")  # refuses links and paths outside
        staging.rename(target)

    @staticmethod
    def _git_bytes(*args: str, cwd: Path) -> bytes | None:
        try:
            return subprocess.run(  # noqa: S603 - fixed executable, no shell
                ["git", "-C", str(cwd), *args],  # noqa: S607 - git from PATH
                check=True,
                capture_output=True,
                timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    def _git_text(self, *args: str, cwd: Path) -> str | None:
        out = self._git_bytes(*args, cwd=cwd)
        return out.decode("utf-8", errors="replace").strip() if out is not None else None
