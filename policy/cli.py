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
DEFAULT_DOCS = Path("docs/policies.md")


@app.callback()
def _group() -> None:
    """Policy commands."""


def _bundle(directory: Path | None) -> PolicyBundle:
    from core.settings import load_settings
    from policy.bundles import PolicyBundle
    from policy.factory import bundle_dir

    return PolicyBundle.from_dir(directory or bundle_dir(load_settings()))


@app.command("test")
def test(
    directory: DirOption = None,
    min_coverage: Annotated[
        float, typer.Option(help="Fail below this line coverage (percent).")
    ] = 100.0,
) -> None:
    """Run the Rego tests with coverage; exit 1 on a failure or low coverage."""
    from policy.rego_tests import run_tests

    report = run_tests(_bundle(directory))
    for line in report.lines():
        typer.echo(line)
    if not report.ok(min_coverage):
        typer.echo(f"FAILED (coverage must be at least {min_coverage:.2f}%)", err=True)
        raise typer.Exit(1)


@app.command("docs")
def docs(
    directory: DirOption = None,
    out: Annotated[Path, typer.Option(help="Where to write the Markdown.")] = DEFAULT_DOCS,
    check: Annotated[
        bool, typer.Option("--check", help="Only check that OUT is up to date (exit 1 if not).")
    ] = False,
) -> None:
    """Render docs/policies.md from the policies' METADATA, data and test tables."""
    from policy.docs import render

    text = render(_bundle(directory))
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            typer.echo(f"{out} is stale: run `veilmatch policy docs`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(help="Old bundle: a directory or REV:path.")],
    new: Annotated[str, typer.Argument(help="New bundle: a directory or REV:path.")],
) -> None:
    """List rule-level changes between two policy versions.

    Example: veilmatch policy diff HEAD:policy/bundle policy/bundle
    """
    from policy.diff import bundle_from_spec, diff_bundles, format_changes

    before, after = bundle_from_spec(old), bundle_from_spec(new)
    for line in format_changes(before, after, diff_bundles(before, after)):
        typer.echo(line)


@app.command("digest")
def digest(directory: DirOption = None) -> None:
    """Print the bundle digest and the per-file hashes it covers."""
    bundle = _bundle(directory)
    typer.echo(bundle.digest)
    for path, sha in bundle.manifest:
        typer.echo(f"  {sha}  {path}")


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
