"""The public surface of eggpool.core is pinned: growing it is a deliberate act."""

from __future__ import annotations

import eggpool.core

EXPECTED = [
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


def test_core_all_is_pinned() -> None:
    assert sorted(eggpool.core.__all__) == EXPECTED


def test_every_exported_name_exists() -> None:
    missing = [name for name in eggpool.core.__all__ if not hasattr(eggpool.core, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from eggpool.core import *", namespace)
    assert sorted(k for k in namespace if not k.startswith("__")) == EXPECTED


def test_core_package_defines_no_unlisted_public_names() -> None:
    public = {
        name
        for name, value in vars(eggpool.core).items()
        if not name.startswith("_") and not isinstance(value, type(eggpool))
    }
    assert public == set(EXPECTED)
