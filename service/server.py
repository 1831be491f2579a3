"""Run both listeners in one process and one event loop.

- staff API on ``staff_port``: server TLS 1.2+ (or plain HTTP with ``--insecure-http``,
  development only);
- gate API on ``gate_port``: mutual TLS 1.2+, client certificates from ``tls_ca``.

SIGINT/SIGTERM stop both: uvicorn stops accepting, finishes in-flight requests
(including matches being scored), then :func:`service.lifecycle.stop` drains the
workers and writes a final audit checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import ssl
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import uvicorn

from core.db import make_engine
from core.dbroles import migration_engine
from core.errors import ConfigurationError
from core.logs import configure_logging
from core.migrate import upgrade
from core.settings import Settings
from service.app import create_app, create_gate_app
from service.context import ServiceContext, system_clock
from service.enrol_photos import PhotoEmbedder
from service.lifecycle import build_context, housekeeping_loop, start, stop
from service.tls import ClientCertH11Protocol, gate_ssl_context, staff_ssl_context

__all__ = ["Listeners", "check_tls_files", "serve"]


def check_tls_files(settings: Settings, *, need_ca: bool = False) -> tuple[Path, Path]:
    """Return (cert, key) or raise ConfigurationError naming the missing setting."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    files = [("VEILMATCH_TLS_CERT", settings.tls_cert), ("VEILMATCH_TLS_KEY", settings.tls_key)]
    if need_ca:
        assert settings.tls_ca is not None
        files.append(("VEILMATCH_TLS_CA", settings.tls_ca))
    for name, path in files:
        if not path.is_file():
            raise ConfigurationError(
                name, f"file {path} not found (run `veilmatch dev certs` for development)"
            )
    try:
        staff_ssl_context(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            "VEILMATCH_TLS_CERT", f"cannot load certificate/key: {exc}"
        ) from None
    return settings.tls_cert, settings.tls_key


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :class:`Listeners`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _config(
    app: Any, settings: Settings, port: int, ssl_context: ssl.SSLContext | None, **extra: Any
) -> uvicorn.Config:
    factory = None
    if ssl_context is not None:
        context = ssl_context

        def factory(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
            return context

    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
        ssl_context_factory=factory,
        **extra,
    )


class Listeners:
    """The two uvicorn servers of one process, started and stopped together."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        staff_port: int,
        gate_port: int | None,
        insecure_http: bool = False,
    ) -> None:
        settings = ctx.settings
        self.ctx = ctx
        assert settings.tls_cert and settings.tls_key and settings.tls_ca
        staff_tls = (
            None if insecure_http else staff_ssl_context(settings.tls_cert, settings.tls_key)
        )
        self.staff = _QuietServer(
            _config(create_app(settings, ctx.engine, ctx), settings, staff_port, staff_tls)
        )
        self.gate: _QuietServer | None = None
        if gate_port is not None:
            gate_tls = gate_ssl_context(settings.tls_cert, settings.tls_key, settings.tls_ca)
            self.gate = _QuietServer(
                _config(
                    create_gate_app(ctx), settings, gate_port, gate_tls, http=ClientCertH11Protocol
                )
            )

    @property
    def servers(self) -> list[_QuietServer]:
        """Both servers (the gate one only when configured)."""
        return [s for s in (self.staff, self.gate) if s is not None]

    def request_exit(self) -> None:
        """Begin a graceful shutdown of both servers."""
        for server in self.servers:
            server.should_exit = True

    async def run(self) -> None:
        """Serve until :meth:`request_exit`; then drain and flush."""
        self.ctx.bus.bind(asyncio.get_running_loop())
        chores = asyncio.create_task(housekeeping_loop(self.ctx))
        try:
            await asyncio.gather(*(server.serve() for server in self.servers))
        finally:
            chores.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chores
            await asyncio.to_thread(stop, self.ctx)

    @property
    def started(self) -> bool:
        """True once every server is accepting connections."""
        return all(server.started for server in self.servers)


def serve(
    settings: Settings,
    insecure_http: bool = False,
    port: int | None = None,
    gate_port: int | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> None:
    """Migrate the schema, start the service, serve until SIGINT/SIGTERM.

    ``clock`` replaces the service's time source (the demo and load tests pin it to
    opening hours); the default is the system clock.
    """
    configure_logging(settings.log_level)
    check_tls_files(settings, need_ca=not insecure_http)
    engine = make_engine(settings)
    migrator = migration_engine(settings)
    try:
        upgrade(migrator)
    except Exception as exc:
        raise ConfigurationError(
            "VEILMATCH_DATABASE_URL",
            f"cannot migrate database: {type(exc).__name__}: {exc}".splitlines()[0],
        ) from None
    finally:
        migrator.dispose()
    ctx = build_context(
        settings, engine, clock=clock or system_clock, face_embedder=_face_embedder(settings)
    )
    start(ctx)
    listeners = Listeners(
        ctx,
        staff_port=port or settings.staff_port,
        gate_port=None if insecure_http else (gate_port or settings.gate_port),
        insecure_http=insecure_http,
    )
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        listeners.request_exit()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(listeners.run())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        engine.dispose()


def _face_embedder(settings: Settings) -> Any:
    """Enrolment from photos with the gate pipeline, loaded lazily on first use."""
    return PhotoEmbedder(settings)
