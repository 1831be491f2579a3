"""The ``veilmatch`` command line: one group per component.

Component groups live next to their code (``gate/cli.py``, ``audit/cli.py``, …) and
import heavy libraries (SEAL, onnxruntime, OPA) inside their commands, so that
``veilmatch --help`` stays fast. Configuration errors print one line naming the
setting and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from audit.cli import app as audit_app
from core.db import make_engine
from core.dbroles import apply_script, grant_script, migration_engine
from core.errors import ConfigurationError, VeilmatchError
from core.migrate import current_revisions, upgrade
from core.settings import load_settings
from crypto.devcerts import make_dev_pki
from gate.cli import app as gate_app
from policy.cli import app as policy_app
from veilmatch.retention_cli import app as retention_app
from veilmatch.simulate import simulate as simulate_command

app = typer.Typer(
    help="veilmatch: encrypted, policy-governed, audited face matching for border gates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema and migrations.", no_args_is_help=True)
dev_app = typer.Typer(
    help="Development helpers: certificates, configuration.", no_args_is_help=True
)

app.add_typer(gate_app, name="gate")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(retention_app, name="retention")
app.add_typer(db_app, name="db")
app.add_typer(dev_app, name="dev")
app.command("simulate")(simulate_command)


@app.command()
def serve(
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Serve plain HTTP (development only).")
    ] = False,
    port: Annotated[int | None, typer.Option(help="Override the staff port.")] = None,
    gate_port: Annotated[int | None, typer.Option(help="Override the gate (mTLS) port.")] = None,
) -> None:
    """Serve the staff API (TLS) and the gate API (mutual TLS), migrating the database first."""
    # Deferred: the service stack (FastAPI, SEAL, OPA) takes seconds to import, and
    # every other command (and --help) would pay for it.
    from service.server import serve as run_server

    run_server(load_settings(), insecure_http=insecure_http, port=port, gate_port=gate_port)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version (idempotent), as the migration
    role (VEILMATCH_DATABASE_MIGRATION_URL, else VEILMATCH_DATABASE_URL)."""
    settings = load_settings()
    engine = migration_engine(settings)
    before = current_revisions(engine)
    upgrade(engine)
    after = current_revisions(engine)
    state = "already up to date" if before == after else "upgraded"
    typer.echo(f"database {state}: {', '.join(sorted(after)) or '(empty)'}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revisions the database is at."""
    revs = current_revisions(make_engine(load_settings()))
    typer.echo(", ".join(sorted(revs)) or "(no schema)")


@db_app.command("roles")
def db_roles(
    app_role: Annotated[str, typer.Option("--app", help="The service's application role.")],
    owner: Annotated[
        str | None,
        typer.Option(help="The schema owner (migration) role; default: the connecting role."),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Run the script as the migration role.")
    ] = False,
) -> None:
    """Print (or --apply) the GRANT script giving the application role least privilege:
    append-only audit tables, payload deletion only through the retention function."""
    settings = load_settings()
    schema = settings.database_schema or "public"
    if not apply:
        if owner is None:
            raise ConfigurationError(
                "--owner", "give the owner role, or --apply to use the connecting one"
            )
        typer.echo(grant_script(app_role, owner, schema), nl=False)
        return
    engine = migration_engine(settings)
    if engine.dialect.name != "postgresql":
        raise ConfigurationError("VEILMATCH_DATABASE_MIGRATION_URL", "roles need PostgreSQL")
    try:
        with engine.connect() as conn:
            owner = owner or str(conn.execute(text("SELECT current_user")).scalar_one())
        apply_script(engine, grant_script(app_role, owner, schema))
    finally:
        engine.dispose()
    typer.echo(f"granted least privilege on schema {schema} to {app_role} (owner {owner})")


@dev_app.command("config")
def dev_config() -> None:
    """Print the effective settings as JSON, secrets redacted."""
    typer.echo(json.dumps(load_settings().redacted(), indent=2, default=str))


@dev_app.command("certs")
def dev_certs(
    gate: Annotated[
        list[str] | None, typer.Option("--gate", help="Gate id to issue a client cert for.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Regenerate everything, CA included.")] = False,
) -> None:
    """Create a development CA, a localhost server certificate and gate client certificates."""
    settings = load_settings()
    assert settings.key_dir is not None
    pki = make_dev_pki(Path(settings.key_dir), gate or ["gate-dev-1"], force=force)
    typer.echo(f"CA:      {pki.ca_cert}")
    typer.echo(f"server:  {pki.server_cert}")
    for gate_id, (cert, _key) in pki.gate_certs.items():
        typer.echo(f"gate {gate_id}: {cert}")


@dev_app.command("sign-csr")
def dev_sign_csr(
    csr: Annotated[Path, typer.Argument(help="The gate's tls.csr (PEM).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the certificate (PEM).")],
    gate_id: Annotated[
        str | None, typer.Option("--gate-id", help="Refuse unless the CSR is for this gate.")
    ] = None,
    ca_cert: Annotated[
        Path | None, typer.Option(help="CA certificate (default: the development CA).")
    ] = None,
    ca_key: Annotated[Path | None, typer.Option(help="CA private key (with --ca-cert).")] = None,
    days: Annotated[int, typer.Option(min=1, max=825, help="Validity in days.")] = 365,
) -> None:
    """Issue a gate's client certificate from its CSR (for the CA holder).

    Without --ca-cert/--ca-key, the development CA in the key directory signs; a
    deployment CA kept offline can sign the same way on its own machine.
    """
    import datetime as dt

    from crypto.devcerts import load_ca, load_ca_files, sign_gate_csr

    if (ca_cert is None) != (ca_key is None):
        raise typer.BadParameter("give both --ca-cert and --ca-key, or neither")
    if ca_cert is not None and ca_key is not None:
        cert, key = load_ca_files(ca_cert, ca_key)
    else:
        settings = load_settings()
        cert, key = load_ca(Path(settings.key_dir or "."))
    try:
        pem = sign_gate_csr(
            csr.read_bytes(), cert, key, gate_id=gate_id, validity=dt.timedelta(days=days)
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    out.write_bytes(pem)
    typer.echo(f"certificate: {out}")


@dev_app.command("hsm-init")
def dev_hsm_init(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Token directory and PIN file; default data_dir/softhsm."),
    ] = None,
    label: Annotated[str, typer.Option(help="Token label.")] = "veilmatch",
    import_kek: Annotated[
        bool,
        typer.Option(
            "--import-kek",
            help="Copy the existing file KEK into the token, so sealed data keeps opening.",
        ),
    ] = False,
) -> None:
    """Initialise a local SoftHSM2 token and generate the service's keys in it (a try of
    key_provider=pkcs11; SoftHSM keeps its tokens in files, so it is not an HSM)."""
    # Deferred like serve's: veilmatch.softhsm builds the service's keys (service stack).
    from veilmatch.softhsm import hsm_init

    settings = load_settings()
    result = hsm_init(
        Path(directory or Path(settings.data_dir) / "softhsm"),
        label,
        settings,
        import_kek=import_kek,
    )
    typer.echo(f"token {label!r} initialised; PIN in {result.pin_file} (0600)")
    if result.kek_imported:
        typer.echo(f"file KEK imported; delete {settings.kek_file} once the service runs")
    typer.echo(f"audit log verifier key: {result.log_verifier}")
    typer.echo("point the service at it with:")
    for name, value in result.environment.items():
        typer.echo(f"  export {name}={value}")


def main() -> None:
    """Console-script entry point with one-line configuration errors."""
    try:
        app()
    except ConfigurationError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except VeilmatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        typer.echo(
            f"configuration error: VEILMATCH_DATABASE_URL: cannot connect: {reason}", err=True
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
