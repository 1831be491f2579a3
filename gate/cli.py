"""`veilmatch gate …` commands. Heavy imports stay inside the commands so `--help` is fast.

Operating a gate (``docs/gate.md``, *Operator's guide*):

* ``init --gate-id ID --site SITE --service URL --dir DIR --pseudonym-key FILE`` — the
  state directory: keys (0600), CSR, configuration; compiles the kernels;
* ``register --dir DIR`` — send the gate's public keys (pending until an admin approves);
* ``status --dir DIR [--json]`` — registration, certificate, keys, queue, heartbeat;
* ``run --dir DIR --frames DIR | --camera N`` — the agent (``gate.agent``).

Tools:

* ``embed IMAGE… [--json]`` — quality, box, landmarks and template of every face (a
  debugging and enrolment-preparation tool: its output is biometric data);
* ``run --source DIR`` — a local preview of the face pipeline: prints verdicts, never
  templates, sends nothing;
* ``models [--rebuild]`` — convert/verify the bundled models and show their licences;
* ``calibrate [--json]`` — score distributions on the shipped sample photos and the
  recommended ``match_threshold``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gate.pipeline import FacePipeline, FaceResult

app = typer.Typer(help="Gate commands.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Gate commands: init, register, status and run a gate; face pipeline tools."""


StateDir = Annotated[Path, typer.Option("--dir", help="The gate's state directory.")]
#: Tests and the demo pin the service's clock to opening hours; the gate follows it.
ClockOffset = Annotated[float, typer.Option("--clock-offset-s", hidden=True)]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@app.command()
def init(
    gate_id: Annotated[str, typer.Option("--gate-id", help="This gate's id (the CSR's CN).")],
    site: Annotated[str, typer.Option(help="The checkpoint this gate belongs to.")],
    service: Annotated[str, typer.Option(help="Gate API URL, https://host:port.")],
    state_dir: StateDir,
    pseudonym_key: Annotated[
        Path, typer.Option("--pseudonym-key", help="The deployment's pseudonymisation key file.")
    ],
    ca: Annotated[Path | None, typer.Option(help="The deployment CA certificate (PEM).")] = None,
    parameter_set: Annotated[str, typer.Option(help="HE parameter set.")] = "ckks-v2",
    compile_kernels: Annotated[
        bool, typer.Option("--compile/--no-compile", help="Compile the kernels now.")
    ] = True,
) -> None:
    """Create the gate's state directory: keys (0600), TLS key and CSR, configuration."""
    from gate.errors import GateError
    from gate.secretfile import read_secret
    from gate.state import GateConfig, GateState, init_state
    from gate.warmup import warm_up

    try:
        config = GateConfig.new(gate_id, site, service, parameter_set)
        secret = read_secret(pseudonym_key)
        ca_pem = ca.read_bytes() if ca is not None else None
        paths = init_state(
            state_dir, config, pseudonym_key=secret, ca_cert=ca_pem, progress=typer.echo
        )
        if compile_kernels:
            gate = GateState.load(state_dir)
            warm_up(gate.he.keys, 128, typer.echo, models=_pipeline)
    except (GateError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"gate {gate_id} initialised in {paths.root}")
    if not paths.tls_cert.exists():
        typer.echo(
            f"next: have the deployment CA sign {paths.tls_csr} (e.g. `veilmatch dev sign-csr "
            f"{paths.tls_csr} --gate-id {gate_id} --out {paths.tls_cert}`), put the CA "
            f"certificate at {paths.ca_cert}, then `veilmatch gate register --dir {paths.root}`"
        )


@app.command()
def register(state_dir: StateDir, clock_offset_s: ClockOffset = 0.0) -> None:
    """Register this gate's public keys with the service (pending until an admin approves)."""
    import time

    from gate.errors import GateError
    from gate.state import GateState

    try:
        gate = GateState.load(state_dir)
        client = gate.client(clock=lambda: time.time() + clock_offset_s)
        try:
            answer = client.register(site=gate.config.site)
        finally:
            client.close()
    except GateError as exc:
        raise _fail(str(exc)) from None
    typer.echo(json.dumps(answer))
    typer.echo("registered: an administrator must now approve the gate", err=True)


@app.command()
def status(
    state_dir: StateDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    offline: Annotated[bool, typer.Option(help="Do not contact the service.")] = False,
    clock_offset_s: ClockOffset = 0.0,
) -> None:
    """Registration, certificate, key age, queue depth, service reachability, heartbeat."""
    from gate.errors import GateError
    from gate.state import GateState
    from gate.status import gate_status

    try:
        report = gate_status(
            GateState.load(state_dir),
            contact_service=not offline,
            clock_offset_s=clock_offset_s,
        )
    except GateError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        typer.echo(f"{key:16s} {value}")


def _pipeline() -> FacePipeline:
    from core.settings import load_settings
    from gate.pipeline import FacePipeline

    return FacePipeline.from_settings(load_settings())


def _face_dict(face: FaceResult) -> dict[str, Any]:
    q = face.quality
    return {
        "box": [round(v, 2) for v in face.box],
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        "score": round(face.score, 4),
        "quality": {
            "accepted": q.accepted,
            "code": q.code.value if q.code else None,
            "detail": q.detail,
            "metrics": q.metrics.as_dict(),
        },
        "template": None if face.template is None else [float(v) for v in face.template],
    }


@app.command()
def embed(
    images: Annotated[list[Path], typer.Argument(help="Image files to process.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
) -> None:
    """Print quality, box, landmarks and template for every face in each image.

    Exit status 1 if any image has no accepted face (or could not be read).
    """
    from gate.errors import QualityError

    pipeline = _pipeline()
    failed = False
    for path in images:
        record: dict[str, Any] = {"image": str(path), "dimension": pipeline.dimension}
        try:
            faces = pipeline.process(path.read_bytes())
            record["faces"] = [_face_dict(f) for f in faces]
            record["error"] = None
            failed |= not any(f.template is not None for f in faces)
        except OSError as exc:
            error = {"code": "unreadable_image", "detail": exc.strerror}
            record["faces"], record["error"] = [], error
            failed = True
        except QualityError as exc:
            record["faces"], record["error"] = [], {"code": exc.code.value, "detail": exc.detail}
            failed = True
        if as_json:
            typer.echo(json.dumps(record))
            continue
        if record["error"]:
            typer.echo(f"{path}: refused ({record['error']['code']}): {record['error']['detail']}")
            continue
        if not record["faces"]:
            typer.echo(f"{path}: no face")
        for i, face in enumerate(record["faces"]):
            q = face["quality"]
            verdict = "accepted" if q["accepted"] else f"refused ({q['code']}: {q['detail']})"
            typer.echo(f"{path} face {i}: {verdict}")
            typer.echo(f"  box {face['box']}  score {face['score']}")
            typer.echo(f"  landmarks {face['landmarks']}")
            typer.echo(f"  quality {q['metrics']}")
            if face["template"] is not None:
                values = " ".join(f"{v:.4f}" for v in face["template"])
                typer.echo(f"  template ({len(face['template'])}-d) {values}")
    if failed:
        raise typer.Exit(1)


@app.command()
def run(
    state_dir: Annotated[
        Path | None, typer.Option("--dir", help="The gate's state directory (agent mode).")
    ] = None,
    frames_dir: Annotated[
        Path | None, typer.Option("--frames", help="Directory of travellers (agent mode).")
    ] = None,
    source: Annotated[
        Path | None, typer.Option("--source", help="Directory of frames (local preview).")
    ] = None,
    camera: Annotated[int | None, typer.Option("--camera", help="OpenCV camera index.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output.")] = False,
    once: Annotated[bool, typer.Option(help="Agent: stop when no traveller is waiting.")] = False,
    verdict_socket: Annotated[
        Path | None,
        typer.Option(help="Agent: Unix socket for verdicts (default DIR/verdict.sock)."),
    ] = None,
    offline_policy: Annotated[
        str, typer.Option(help="Agent: verdict while the service is unreachable.")
    ] = "proceed",
    holder_threshold: Annotated[
        float, typer.Option(help="Agent: live face vs chip portrait, minimum cosine.")
    ] = 0.36,
    heartbeat_s: Annotated[float, typer.Option(help="Agent: seconds between heartbeats.")] = 60.0,
    rotate_before_s: Annotated[
        float, typer.Option(help="Agent: rotate the keys when less than this many seconds remain.")
    ] = 7 * 86400.0,
    clock_offset_s: ClockOffset = 0.0,
) -> None:
    """The gate agent (--dir DIR --frames DIR), or a local preview (--source DIR |
    --camera N) that prints pipeline verdicts and sends nothing."""
    if state_dir is not None:
        if frames_dir is None:
            raise typer.BadParameter("the agent needs --frames DIR (camera capture: not yet)")
        if offline_policy not in ("proceed", "secondary"):
            raise typer.BadParameter("--offline-policy is proceed or secondary")
        _run_agent(
            state_dir,
            frames_dir,
            once=once,
            socket_path=verdict_socket,
            options={
                "offline_policy": offline_policy,
                "holder_threshold": holder_threshold,
                "heartbeat_s": heartbeat_s,
                "rotate_before_s": rotate_before_s,
            },
            clock_offset_s=clock_offset_s,
        )
        return
    _preview(source, camera, max_frames, as_json)


def _run_agent(
    state_dir: Path,
    frames_dir: Path,
    *,
    once: bool,
    socket_path: Path | None,
    options: dict[str, Any],
    clock_offset_s: float,
) -> None:
    import signal
    import threading
    import time

    from gate.agent import Agent, AgentOptions
    from gate.errors import GateError
    from gate.state import GateState
    from gate.travellers import FrameDirectory
    from gate.verdicts import Verdict, VerdictSocket
    from gate.warmup import warm_up

    def clock() -> float:
        return time.time() + clock_offset_s

    def emit(verdict: Verdict) -> None:
        typer.echo(verdict.to_json())

    try:
        gate = GateState.load(state_dir)
        client = gate.client(clock=clock)
    except GateError as exc:
        raise _fail(str(exc)) from None
    pipeline = _pipeline()
    warm_up(
        gate.he.keys,
        pipeline.dimension,
        lambda line: typer.echo(line, err=True),
        models=pipeline.warmup,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    broadcast = VerdictSocket(socket_path or gate.paths.root / "verdict.sock")
    queue = gate.queue()
    agent = Agent(
        gate,
        pipeline,
        client,
        queue,
        [emit, broadcast.publish],
        AgentOptions(**options),
        clock=clock,
    )
    try:
        agent.run(FrameDirectory(frames_dir), stop, once=once)
    finally:
        broadcast.close()
        queue.close()
        client.close()


def _preview(
    source: Path | None, camera: int | None, max_frames: int | None, as_json: bool
) -> None:
    from gate.runner import CameraSource, DirectorySource, FrameSource, PrintSink, run_frames

    if (source is None) == (camera is None):
        raise typer.BadParameter("give exactly one of --source DIR or --camera N")
    frames: FrameSource = (
        DirectorySource(source) if source is not None else CameraSource(int(camera or 0))
    )
    pipeline = _pipeline()
    pipeline.warmup()
    summary = run_frames(
        frames, pipeline, PrintSink(echo=typer.echo, as_json=as_json), max_frames=max_frames
    )
    totals = {"frames": summary.frames, "accepted": summary.accepted, **summary.refusals}
    typer.echo(json.dumps({"summary": totals}) if as_json else f"summary: {totals}")


@app.command()
def models(
    rebuild: Annotated[bool, typer.Option(help="Reconvert the bundled models.")] = False,
) -> None:
    """Convert (once) and verify the bundled models; print digests and licences."""
    from core.settings import load_settings
    from gate.models import DETECTOR, RECOGNISER, ensure_converted

    settings = load_settings()
    assert settings.model_dir is not None
    for model in (DETECTOR, RECOGNISER):
        converted = ensure_converted(model, Path(settings.model_dir), rebuild=rebuild)
        typer.echo(f"{model.name}: {model.licence}")
        typer.echo(f"  source    {converted.source_path} sha256 {converted.source_sha256}")
        typer.echo(f"  converted {converted.path} sha256 {converted.sha256}")
    info = _pipeline().model_info
    typer.echo(
        f"active: detector {info.detector}, recogniser {info.recogniser} "
        f"({info.dimension}-d), model id {info.model_id}"
    )
    typer.echo(f"licences: {info.licence}")


@app.command()
def calibrate(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Genuine/impostor cosine scores on the shipped sample photos; recommend a threshold."""
    from gate.calibrate import calibrate as run_calibration

    summary = run_calibration(_pipeline()).summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for key, value in summary.items():
        typer.echo(f"{key:24s} {value}")
