"""Error root shared by all veilmatch components.

Each component defines its own subclasses (``crypto.errors.CryptoError`` and so on);
one place in the service maps them to HTTP problem responses. Messages must never
contain templates, images, ciphertexts, keys or raw document numbers.
"""


class VeilmatchError(Exception):
    """Root of every error veilmatch raises on purpose."""


class ConfigurationError(VeilmatchError):
    """A setting is missing or invalid; ``setting`` names it (e.g. ``VEILMATCH_TLS_CERT``)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
