"""One typed settings object for the whole deployment.

Sources, highest priority first: keyword arguments, ``VEILMATCH_*`` environment
variables, the TOML file named by ``VEILMATCH_CONFIG`` (default ``./veilmatch.toml``
if it exists), then the embedded defaults below. Every default is usable on a fresh
checkout: SQLite in ``./var``, development keys in ``./var/keys``, embedded OPA.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigurationError

ENV_PREFIX = "VEILMATCH_"
CONFIG_FILE_ENV = "VEILMATCH_CONFIG"
DEFAULT_CONFIG_FILE = Path("veilmatch.toml")


def _config_file() -> Path | None:
    named = os.environ.get(CONFIG_FILE_ENV)
    if named:
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


class Settings(BaseSettings):
    """Effective configuration. Paths are resolved relative to the working directory."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(Path("var"), description="Where SQLite files, caches and state live.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means a SQLite file in data_dir."
    )
    database_schema: str | None = Field(
        None, description="PostgreSQL schema (search_path) to use; tests use one per test."
    )
    key_dir: Path | None = Field(None, description="Keys and certificates; default data_dir/keys.")
    tls_cert: Path | None = Field(None, description="Server certificate (PEM).")
    tls_key: Path | None = Field(None, description="Server private key (PEM).")
    tls_ca: Path | None = Field(None, description="CA that issues gate client certificates.")
    host: str = "127.0.0.1"
    staff_port: int = Field(8443, ge=1, le=65535, description="Staff API and console (TLS).")
    gate_port: int = Field(8444, ge=1, le=65535, description="Gate API (mutual TLS).")
    policy_engine: Literal["embedded", "http"] = "embedded"
    opa_url: str = Field("http://127.0.0.1:8181", description="OPA server for policy_engine=http.")
    policy_dir: Path | None = Field(None, description="Rego policies and data; default: bundled.")
    policy_profile: str = Field(
        "eu",
        pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$",
        description="Jurisdiction profile of the policy bundle (eu, hk, cn-mainland).",
    )
    model_dir: Path | None = Field(None, description="Face model cache; default data_dir/models.")
    gate_model_pack: str | None = Field(
        None,
        description="Directory under model_dir holding a licensed insightface pack (e.g. "
        "buffalo_l) to use instead of the bundled Apache-2.0 YuNet/SFace; non-commercial.",
    )
    gate_multiple_faces: Literal["largest", "refuse"] = Field(
        "largest", description="Gate: with several faces, embed the largest or refuse."
    )
    gate_min_inter_eye_px: float = Field(
        32.0, ge=0, description="Gate quality: minimum inter-eye distance in pixels."
    )
    gate_min_sharpness: float = Field(
        40.0, ge=0, description="Gate quality: minimum Laplacian variance of the aligned crop."
    )
    gate_max_roll_deg: float = Field(
        25.0, gt=0, le=180, description="Gate quality: maximum head tilt (eye line), degrees."
    )
    gate_max_yaw_ratio: float = Field(
        0.35, gt=0, description="Gate quality: maximum |nose offset| / inter-eye distance."
    )
    gate_max_image_pixels: int = Field(
        25_000_000, gt=0, description="Gate: refuse larger images before decoding them."
    )
    he_parameter_set: str = Field("ckks-v2", description="Named CKKS parameter set (crypto).")
    match_threshold: float = Field(
        0.42,
        gt=-1.0,
        lt=1.0,
        description=(
            "Cosine-similarity threshold for a watchlist hit (SFace 128-d). Calibrated on the "
            "shipped photos (docs/gate.md): same person >= 0.447, different people <= 0.375; "
            "0.42 keeps a margin on both sides. Recalibrate for another model."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    admin_password: SecretStr | None = Field(
        None, description="Bootstrap admin password; unset means no bootstrap account."
    )
    token_secret: SecretStr | None = Field(
        None, description="Signing secret for staff bearer tokens; generated per run if unset."
    )
    kek_file: Path | None = Field(
        None, description="Key-encryption key for data at rest (service); default key_dir/kek.bin."
    )
    key_provider: Literal["file", "pkcs11"] = Field(
        "file",
        description=(
            "Where the service's secret keys live (audit log signing key, KEK, token-signing "
            "secret, audit sequencer key): files in key_dir (development default) or a "
            "PKCS#11 token (HSM), where they are generated non-exportable on first start."
        ),
    )
    pkcs11_module: Path | None = Field(
        None, description="PKCS#11 module (.so) of the HSM, for key_provider=pkcs11."
    )
    pkcs11_token_label: str = Field(
        "veilmatch", min_length=1, max_length=32, description="Label of the PKCS#11 token."
    )
    pkcs11_pin: SecretStr | None = Field(
        None, description="User PIN of the PKCS#11 token (prefer pkcs11_pin_file)."
    )
    pkcs11_pin_file: Path | None = Field(
        None, description="File holding the token's user PIN (first line), e.g. a secret mount."
    )
    database_migration_url: str = Field(
        "",
        description=(
            "SQLAlchemy URL of the schema owner role that runs migrations (veilmatch db "
            "upgrade, and serve's start-up migration); empty means database_url."
        ),
    )
    scoring_backend: Literal["embedded"] = Field(
        "embedded",
        description=(
            "Scoring engine: embedded runs the HE scoring workers as processes of the "
            "service (service.scoring.inprocess)."
        ),
    )
    match_workers: int = Field(2, ge=1, le=64, description="HE scoring worker processes.")
    match_key_cache: int = Field(
        128,
        ge=1,
        le=100_000,
        description=(
            "Gate keys each scoring worker keeps ready (ckks-v2, d = 128: about 5 MB each); "
            "size it to the number of active gates."
        ),
    )
    match_prepare: bool = Field(
        True,
        description=(
            "Prepare each gate's next query in idle worker time from the probe seed the "
            "gate committed with its previous match (single-ciphertext sets, ckks-v2): "
            "4-5x lower scoring latency at 100k templates when the preparation is ready."
        ),
    )
    match_prepared_cache: int = Field(
        16,
        ge=0,
        le=10_000,
        description=(
            "Prepared queries each scoring worker keeps, one per gate key at most: about "
            "6.4 MB each at 100k watchlist templates of d = 128, proportional to the "
            "watchlist size; 0 turns preparation off."
        ),
    )
    match_queue_limit: int = Field(
        32, ge=1, le=10_000, description="Match queries queued or running before 503."
    )
    pending_query_ttl_s: int = Field(
        30, ge=1, le=600, description="Seconds a gate has to reveal before the mapping is dropped."
    )
    gate_key_ttl_days: int = Field(
        30, ge=1, le=3650, description="Validity of a gate's signing and HE keys before rotation."
    )
    login_account_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed sign-ins for one username before it is locked for login_lockout_s.",
    )
    login_address_failures: int = Field(
        20,
        ge=1,
        le=100_000,
        description="Failed sign-ins from one client address before it is locked.",
    )
    login_lockout_s: int = Field(
        900,
        ge=1,
        le=86_400,
        description="Seconds a lock-out lasts; failures older than this are forgotten.",
    )
    denial_window_s: int = Field(
        300,
        ge=1,
        le=86_400,
        description=(
            "Unauthenticated refusals are counted per client address and window of this "
            "many seconds and audited as one access.denied entry per address and window."
        ),
    )
    metrics_token: SecretStr | None = Field(
        None,
        description=(
            "Bearer token a Prometheus scraper sends to GET /metrics; unset means the "
            "file key_dir/metrics.token (created on first start)."
        ),
    )
    api_docs: bool = Field(
        False,
        description=(
            "Serve the interactive API pages /docs and /redoc (development; they load "
            "Swagger UI and ReDoc from a CDN). /openapi.json is always served."
        ),
    )

    @field_validator("database_url", "database_migration_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported backend {url.get_backend_name()!r}; use sqlite or postgresql"
            )
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        # Frozen model: derived defaults are set once, here, so every reader sees the same.
        keys = self.key_dir or self.data_dir / "keys"
        derived: dict[str, Any] = {
            "key_dir": keys,
            "tls_cert": self.tls_cert or keys / "server.crt",
            "tls_key": self.tls_key or keys / "server.key",
            "tls_ca": self.tls_ca or keys / "ca.crt",
            "model_dir": self.model_dir or self.data_dir / "models",
            "kek_file": self.kek_file or keys / "kek.bin",
        }
        if not self.database_url:
            derived["database_url"] = f"sqlite:///{self.data_dir / 'veilmatch.db'}"
        if self.key_provider == "pkcs11":
            # Not ValueError: pydantic would lose which setting is wrong.
            if self.pkcs11_module is None:
                raise ConfigurationError(
                    ENV_PREFIX + "PKCS11_MODULE", "key_provider pkcs11 needs a PKCS#11 module"
                )
            if (self.pkcs11_pin is None) == (self.pkcs11_pin_file is None):
                raise ConfigurationError(
                    ENV_PREFIX + "PKCS11_PIN",
                    "key_provider pkcs11 needs exactly one of pkcs11_pin and pkcs11_pin_file",
                )
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the psycopg 3 driver made explicit for PostgreSQL."""
        return _explicit_driver(self.database_url)

    @property
    def migration_sqlalchemy_url(self) -> str:
        """:attr:`sqlalchemy_url` of the migration (schema owner) role."""
        return _explicit_driver(self.database_migration_url or self.database_url)

    def pkcs11_user_pin(self) -> str:
        """The token PIN from ``pkcs11_pin`` or the first line of ``pkcs11_pin_file``."""
        if self.pkcs11_pin is not None:
            return self.pkcs11_pin.get_secret_value()
        if self.pkcs11_pin_file is None:
            raise ConfigurationError(ENV_PREFIX + "PKCS11_PIN", "no PIN configured")
        try:
            lines = self.pkcs11_pin_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            raise ConfigurationError(
                ENV_PREFIX + "PKCS11_PIN_FILE", f"cannot read {self.pkcs11_pin_file}"
            ) from None
        if not lines or not lines[0]:
            raise ConfigurationError(
                ENV_PREFIX + "PKCS11_PIN_FILE", f"{self.pkcs11_pin_file} is empty"
            )
        return lines[0]

    def redacted(self) -> dict[str, Any]:
        """Effective settings as plain data with secrets (and URL passwords) hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "**********" if value.get_secret_value() else ""
            elif name in ("database_url", "database_migration_url"):
                out[name] = make_url(value).render_as_string(hide_password=True) if value else ""
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = value
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _explicit_driver(database_url: str) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one ConfigurationError naming the setting."""
    path = _config_file()
    if path is not None and not path.exists():
        raise ConfigurationError(CONFIG_FILE_ENV, f"config file {path} does not exist")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise ConfigurationError(
            ENV_PREFIX + field.upper(), first["msg"].removeprefix("Value error, ")
        ) from None
    except ValueError as exc:  # e.g. malformed TOML
        raise ConfigurationError(CONFIG_FILE_ENV, str(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests build their own with ``load_settings``."""
    return load_settings()
