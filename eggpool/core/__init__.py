"""The pure core of EggPool: decisions and parsers, no I/O, no clock, no entropy.

Everything here is a function of its inputs (see docs/architecture.md). This
module re-exports the curated public surface a shell needs: the config, the
`Pool` it drives, the events it feeds in and the effects it runs
(docs/effects.md). `tests/core/test_exports.py` pins it, so growing it is a
deliberate act.
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
from eggpool.core.effects import (
    AbortUpstream,
    ArmTimer,
    CancelTimer,
    Effect,
    FetchModelList,
    Log,
    Metric,
    OpenUpstream,
    Persist,
    Publish,
    Record,
    RespondBody,
    RespondEnd,
    RespondHead,
)
from eggpool.core.errors import ErrorResponse, FailureKind, LocalFailure, render_error
from eggpool.core.events import (
    ClientGone,
    ClientRequestReceived,
    Event,
    ModelListFailed,
    ModelListReceived,
    Now,
    PersistFailed,
    ShutdownRequested,
    StateLoaded,
    TimerFired,
    UpstreamBodyEnded,
    UpstreamBodyReceived,
    UpstreamFailed,
    UpstreamResponseStarted,
)
from eggpool.core.pool import Pool
from eggpool.core.retry import TransportFailure
from eggpool.core.secret import Secret

__all__ = [
    "AbortUpstream",
    "AccountConfig",
    "ArmTimer",
    "CancelTimer",
    "ClientGone",
    "ClientRequestReceived",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Effect",
    "ErrorResponse",
    "Event",
    "FailureKind",
    "FetchModelList",
    "LocalFailure",
    "Log",
    "Metric",
    "Microdollars",
    "ModelListFailed",
    "ModelListReceived",
    "Now",
    "OpenUpstream",
    "Persist",
    "PersistFailed",
    "Pool",
    "Protocol",
    "ProviderConfig",
    "Publish",
    "Record",
    "RespondBody",
    "RespondEnd",
    "RespondHead",
    "Seconds",
    "Secret",
    "ShutdownRequested",
    "StateLoaded",
    "TimerFired",
    "TransportFailure",
    "UpstreamBodyEnded",
    "UpstreamBodyReceived",
    "UpstreamFailed",
    "UpstreamResponseStarted",
    "parse_config",
    "render_error",
]
