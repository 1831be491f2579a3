"""Run the service under uvicorn: HTTPS by default, plain HTTP only when asked."""

from __future__ import annotations

import ssl
from pathlib import Path

import uvicorn

from service.app import create_app
from veilmatch.db import make_engine
from veilmatch.errors import ConfigurationError
from veilmatch.logs import configure_logging
from veilmatch.migrate import upgrade
from veilmatch.settings import Settings


def check_tls_files(settings: Settings) -> tuple[Path, Path]:
    """Return (cert, key) or raise ConfigurationError naming the missing setting."""
    assert settings.tls_cert is not None and settings.tls_key is not None
    for name, path in (
        ("VEILMATCH_TLS_CERT", settings.tls_cert),
        ("VEILMATCH_TLS_KEY", settings.tls_key),
    ):
        if not path.is_file():
            raise ConfigurationError(
                name, f"file {path} not found (run `veilmatch dev certs` for development)"
            )
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            "VEILMATCH_TLS_CERT", f"cannot load certificate/key: {exc}"
        ) from None
    return settings.tls_cert, settings.tls_key


def serve(settings: Settings, insecure_http: bool = False, port: int | None = None) -> None:
    """Migrate the schema, then serve until interrupted (SIGINT/SIGTERM stop cleanly)."""
    configure_logging(settings.log_level)
    tls = None if insecure_http else check_tls_files(settings)
    engine = make_engine(settings)
    try:
        upgrade(engine)
    except Exception as exc:
        raise ConfigurationError(
            "VEILMATCH_DATABASE_URL",
            f"cannot migrate database: {type(exc).__name__}: {exc}".splitlines()[0],
        ) from None
    app = create_app(settings, engine)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port or settings.staff_port,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        log_config=None,
        access_log=False,
    )
    uvicorn.Server(config).run()
