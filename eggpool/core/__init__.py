"""The pure core of EggPool: decisions and parsers, no I/O, no clock, no entropy.

Everything here is a function of its inputs (see docs/architecture.md). This
module re-exports the curated public surface; `tests/core/test_exports.py`
pins it, so growing it is a deliberate act.
"""

from eggpool.core.config import (
    AccountConfig,
    Config,
    ConfigError,
    ConfigProblem,
    Microdollars,
    Protocol,
    ProviderConfig,
    Seconds,
    parse_config,
)
from eggpool.core.errors import ErrorResponse, FailureKind, LocalFailure, render_error
from eggpool.core.secret import Secret

__all__ = [
    "AccountConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ErrorResponse",
    "FailureKind",
    "LocalFailure",
    "Microdollars",
    "Protocol",
    "ProviderConfig",
    "Seconds",
    "Secret",
    "parse_config",
    "render_error",
]
