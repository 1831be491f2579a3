"""`veilmatch audit …` commands. Heavy imports stay inside the commands so `--help` is fast.

Operator commands (need the database and the log key): ``keygen``, ``checkpoint``,
``entries``, ``prove-inclusion``, ``prove-consistency``, ``export``,
``add-cosignatures``. Oversight commands (need only an export or URL and public keys):
``verify`` and ``witness``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from audit.log import AuditLog

app = typer.Typer(help="Audit commands.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Tamper-evident audit log: checkpoints, proofs, export, verification, witnessing."""


def _open_log(key: Path | None) -> AuditLog:
    from audit.keys import LOG_KEY_FILE, SEQUENCER_KEY_FILE, FileSequencerKey, load_signer
    from audit.log import AuditLog
    from core.db import make_engine
    from core.errors import ConfigurationError
    from core.migrate import is_up_to_date
    from core.settings import load_settings

    settings = load_settings()
    engine = make_engine(settings)
    if not is_up_to_date(engine):
        raise ConfigurationError(
            "VEILMATCH_DATABASE_URL", "schema is not up to date; run `veilmatch db upgrade`"
        )
    assert settings.key_dir is not None
    key_dir = Path(settings.key_dir)
    # The service's sequencer key when it has one (its bootstrap creates it); else the
    # key derived from the log key, as for a log only ever written through this CLI.
    sequencer_file = key_dir / SEQUENCER_KEY_FILE
    sequencer = FileSequencerKey.load(sequencer_file) if sequencer_file.exists() else None
    return AuditLog(engine, load_signer(key or key_dir / LOG_KEY_FILE), sequencer=sequencer)


KeyOpt = Annotated[
    Path | None, typer.Option("--key", help="Log private key (default <key_dir>/audit-log.key).")
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding a bearer token of a read-only (oversight) account for an https:// "
        "source; default: the VEILMATCH_AUDIT_TOKEN environment variable.",
    ),
]


def _token(token_file: Path | None) -> str | None:
    """The bearer token for an HTTPS source: from ``token_file``, else the environment.

    Never a command-line value: arguments are visible to every user of the machine.
    """
    if token_file is not None:
        return token_file.read_text().strip() or None
    return os.environ.get("VEILMATCH_AUDIT_TOKEN") or None


@app.command()
def keygen(
    name: Annotated[str, typer.Option(help="Key name, a schema-less URL (the log origin).")],
    kind: Annotated[str, typer.Option(help="'log' (signs checkpoints) or 'witness'.")] = "log",
    key_dir: Annotated[Path | None, typer.Option(help="Default: settings key_dir.")] = None,
    stem: Annotated[str | None, typer.Option(help="File name stem.")] = None,
) -> None:
    """Generate an Ed25519 key: <stem>.key (mode 0600, never commit it) and <stem>.vkey."""
    from audit.keys import generate_key
    from core.settings import load_settings

    directory = key_dir or load_settings().key_dir
    assert directory is not None
    private = generate_key(Path(directory), name, kind, stem)
    typer.echo(f"private key: {private}")
    typer.echo(f"verifier key: {private.with_suffix('.vkey').read_text().strip()}")


@app.command()
def checkpoint(key: KeyOpt = None) -> None:
    """Sign a checkpoint for the current tree now and print it."""
    log = _open_log(key)
    sys.stdout.write(log.checkpoint().to_bytes().decode())


@app.command()
def entries(
    start: Annotated[int, typer.Option(help="First sequence number.")] = 0,
    end: Annotated[int | None, typer.Option(help="End (exclusive).")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Only these event types (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    key: KeyOpt = None,
) -> None:
    """Print entries as JSON lines: seq, header, payload (null once deleted)."""
    log = _open_log(key)
    for e in log.entries(start, end, types=event_type or None, limit=limit):
        typer.echo(json.dumps({"seq": e.seq, "header": e.header.to_dict(), "payload": e.payload}))


@app.command("prove-inclusion")
def prove_inclusion(
    seq: int,
    size: Annotated[
        int | None, typer.Option(help="Tree size (default: latest checkpoint).")
    ] = None,
    key: KeyOpt = None,
) -> None:
    """Print an RFC 9162 inclusion proof (JSON, hashes in base64)."""
    p = _open_log(key).inclusion_proof(seq, size)
    out = {
        "seq": p.seq,
        "size": p.size,
        "leaf_hash": base64.b64encode(p.leaf_hash).decode(),
        "proof": [base64.b64encode(h).decode() for h in p.hashes],
    }
    typer.echo(json.dumps(out))


@app.command("prove-consistency")
def prove_consistency(
    old_size: int,
    new_size: Annotated[int | None, typer.Argument(help="Default: latest checkpoint.")] = None,
    key: KeyOpt = None,
) -> None:
    """Print an RFC 9162 consistency proof (JSON, hashes in base64)."""
    log = _open_log(key)
    proof = log.consistency_proof(old_size, new_size)
    n = new_size if new_size is not None else log.latest_checkpoint().checkpoint.size
    out = {
        "old_size": old_size,
        "new_size": n,
        "proof": [base64.b64encode(h).decode() for h in proof],
    }
    typer.echo(json.dumps(out))


@app.command()
def export(dest: Path, key: KeyOpt = None) -> None:
    """Export the log at its latest checkpoint to DEST (same layout as the tile URLs)."""
    from audit.export import export_log

    summary = export_log(_open_log(key), dest)
    typer.echo(f"exported size {summary.size} ({summary.files} files) to {dest}")


@app.command("add-cosignatures")
def add_cosignatures(
    cosigned: Annotated[Path, typer.Argument(help="Checkpoint note cosigned by a witness.")],
    witness_key: Annotated[
        list[str], typer.Option("--witness-key", help="Witness verifier key or file (repeatable).")
    ],
    key: KeyOpt = None,
) -> None:
    """Attach verified witness cosignatures to the stored checkpoint."""
    from audit.keys import load_verifier

    names = _open_log(key).add_cosignatures(
        cosigned.read_bytes(), [load_verifier(w) for w in witness_key]
    )
    typer.echo(f"stored cosignatures from: {', '.join(names)}")


@app.command()
def verify(
    source: Annotated[str, typer.Argument(help="Export directory or base URL.")],
    log_key: Annotated[str, typer.Option(help="Trusted log verifier key (string or file).")],
    state: Annotated[Path, typer.Option(help="State file: last checkpoint accepted.")],
    witness_key: Annotated[
        list[str] | None, typer.Option("--witness-key", help="Witness verifier key (repeatable).")
    ] = None,
    quorum: Annotated[
        int | None, typer.Option(help="Cosignatures required (default: all).")
    ] = None,
    ca: Annotated[Path | None, typer.Option(help="CA bundle for an https:// source.")] = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Verify a log completely; name the exact entry or range on failure (exit 1)."""
    from audit.errors import AuditError
    from audit.keys import load_verifier
    from audit.sources import open_source
    from audit.verify import describe, verify_log

    try:
        report = verify_log(
            open_source(source, verify=str(ca) if ca else True, token=_token(token_file)),
            load_verifier(log_key),
            witnesses=[load_verifier(w) for w in witness_key or []],
            quorum=quorum,
            state_path=state,
        )
    except AuditError as exc:
        for line in describe(exc):
            typer.echo(f"FAIL {line}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"ok": True, **report.to_dict()}))


@app.command()
def witness(
    source: Annotated[str, typer.Argument(help="Export directory or base URL of the log.")],
    log_key: Annotated[str, typer.Option(help="The log's verifier key (string or file).")],
    key: Annotated[Path, typer.Option(help="This witness's private key file (0600).")],
    state: Annotated[Path, typer.Option(help="Witness state file (last checkpoint cosigned).")],
    out: Annotated[Path | None, typer.Option(help="Write the cosigned checkpoint here.")] = None,
    ca: Annotated[Path | None, typer.Option(help="CA bundle for an https:// source.")] = None,
    token_file: TokenFileOpt = None,
) -> None:
    """Cosign the log's latest checkpoint if it extends the last one this witness saw."""
    from audit.keys import load_signer, load_verifier
    from audit.sources import open_source
    from audit.witness import Witness

    w = Witness(load_signer(key), load_verifier(log_key), state)
    cosigned = w.witness_source(
        open_source(source, verify=str(ca) if ca else True, token=_token(token_file))
    )
    data = cosigned.to_bytes()
    if out is not None:
        out.write_bytes(data)
        typer.echo(f"cosigned size {cosigned.checkpoint.size}; wrote {out}")
    else:
        sys.stdout.write(data.decode())
