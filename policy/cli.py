"""`veilmatch policy …` commands. Heavy imports stay inside the commands so `--help` is fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from policy.bundles import PolicyBundle

app = typer.Typer(help="Policy commands.", no_args_is_help=True)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir", help="Bundle directory (default: VEILMATCH_POLICY_DIR or the bundled one)."
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Jurisdiction profile (eu, hk, cn-mainland; default: VEILMATCH_POLICY_PROFILE).",
    ),
]
DOCS_DIR = Path("docs")


@app.callback()
def _group() -> None:
    """Policy commands."""


def _bundle(directory: Path | None, profile: str | None = None) -> PolicyBundle:
    """The bundle under ``profile``, else the configured profile if the bundle has it."""
    from core.settings import load_settings
    from policy.bundles import PolicyBundle
    from policy.errors import PolicyError
    from policy.factory import bundle_dir

    settings = load_settings()
    try:
        bundle = PolicyBundle.from_dir(directory or bundle_dir(settings))
        if profile is not None:
            return bundle.with_profile(profile)
        if bundle.profiles:
            return bundle.with_profile(settings.policy_profile)
        return bundle
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("test")
def test(
    directory: DirOption = None,
    profile: ProfileOption = None,
    min_coverage: Annotated[
        float, typer.Option(help="Fail below this line coverage (percent).")
    ] = 100.0,
) -> None:
    """Run the Rego tests with coverage, once per profile (or only --profile); exit 1 on
    a failure or low coverage in any."""
    from policy.rego_tests import run_all_profiles, run_tests

    bundle = _bundle(directory, profile)
    reports = [run_tests(bundle)] if profile else run_all_profiles(bundle)
    for report in reports:
        for line in report.lines():
            typer.echo(line)
    if not all(report.ok(min_coverage) for report in reports):
        typer.echo(f"FAILED (coverage must be at least {min_coverage:.2f}%)", err=True)
        raise typer.Exit(1)


@app.command("docs")
def docs(
    directory: DirOption = None,
    profile: ProfileOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the Markdown (only with one profile)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only check that the files are up to date (exit 1).")
    ] = False,
) -> None:
    """Render the legal documentation per profile from the policies' METADATA, data and
    test tables: docs/policies.md (eu) and docs/policies-<profile>.md; --profile P only P."""
    from policy.docs import docs_path, render

    base = _bundle(directory, profile)
    every = [base.with_profile(p) for p in base.profiles]
    bundles = [base] if profile or not every else every
    if out is not None and len(bundles) > 1:
        typer.echo("error: --out needs --profile (one document per profile)", err=True)
        raise typer.Exit(2)
    stale = False
    for bundle in bundles:
        target = out or docs_path(bundle.profile, DOCS_DIR)
        stale |= _write_or_check(target, render(bundle), check)
    if stale:
        raise typer.Exit(1)


def _write_or_check(target: Path, text: str, check: bool) -> bool:
    """Write ``text`` to ``target``, or with ``check`` report whether it differs."""
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            typer.echo(f"{target} is stale: run `veilmatch policy docs`", err=True)
            return True
        typer.echo(f"{target} is up to date")
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")
    return False


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="Old bundle: a directory or REV:path, [#profile].")],
    new: Annotated[str, typer.Argument(help="New bundle: a directory or REV:path, [#profile].")],
    profile: ProfileOption = None,
) -> None:
    """List rule-level changes between two policy versions or two profiles.

    Examples: veilmatch policy diff HEAD:policy/bundle policy/bundle;
    veilmatch policy diff policy/bundle#eu policy/bundle#cn-mainland
    """
    from policy.diff import bundle_from_spec, diff_bundles, format_changes
    from policy.errors import PolicyError

    try:
        before, after = bundle_from_spec(old, profile), bundle_from_spec(new, profile)
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in format_changes(before, after, diff_bundles(before, after)):
        typer.echo(line)


@app.command("digest")
def digest(directory: DirOption = None, profile: ProfileOption = None) -> None:
    """Print the bundle digest, the per-file hashes and the profile it covers."""
    bundle = _bundle(directory, profile)
    typer.echo(bundle.digest)
    for path, sha in bundle.manifest:
        typer.echo(f"  {sha}  {path}")
    if bundle.profile is not None:
        typer.echo(f"  profile {bundle.profile}")


@app.command("eval")
def evaluate(
    query: Annotated[str, typer.Argument(help="e.g. veilmatch.access.decision")],
    input_json: Annotated[
        str, typer.Option("--input", help="Input document as JSON, or @file.json, or - for stdin.")
    ] = "{}",
) -> None:
    """Evaluate one query with the configured engine and print the decision as JSON."""
    from core.settings import load_settings
    from policy.factory import engine_from_settings

    if input_json == "-":
        raw = sys.stdin.read()
    elif input_json.startswith("@"):
        raw = Path(input_json[1:]).read_text(encoding="utf-8")
    else:
        raw = input_json
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        typer.echo(f"error: --input is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    engine, _ = engine_from_settings(load_settings())
    try:
        decision = engine.evaluate(query, document)
    finally:
        engine.close()
    typer.echo(json.dumps({"result": decision.result, **decision.provenance()}, indent=2))


@app.command("serve-local")
def serve_local(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (OPA's default is 8181).")] = 8181,
) -> None:
    """Run the development stand-in for `opa run --server` (OPA REST data/policies API)."""
    from policy.local_opa import LocalOpaServer

    server = LocalOpaServer(host, port)
    typer.echo(f"serving OPA REST API stand-in on {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
