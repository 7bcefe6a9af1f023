"""Per-account listing state of the catalog: the two-strikes rule and its snapshot form.

Theory of operation. Each configured account keeps the model ids its own
listings named, each with the number of consecutive authoritative listings
that have omitted it since (0 or 1). `apply` folds in a successful,
non-empty listing: every listed id is (re)set to 0; only an authoritative
listing (complete, no malformed rows) adds an omission to the others, and
the `WITHDRAW_AFTER`-th omission removes the id. A failed or empty listing
only touches bookkeeping (`fail`). Nothing here reads another account.

The snapshot form is plain JSON data; `restore_account` is lenient (a
corrupt or foreign value is dropped, never raised on), since it reads rows
the shell loaded from disk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

from eggpool.core._config_model import AccountConfig, ModelsMethod, ProviderConfig
from eggpool.core._model_lists import ModelListPage, valid_model_id

__all__ = [
    "MAX_ERROR_CHARS",
    "WITHDRAW_AFTER",
    "AccountListing",
    "plain",
    "time_or_none",
]

WITHDRAW_AFTER = 2  # consecutive authoritative listings that must omit a model
MAX_ERROR_CHARS = 200


@attrs.define(kw_only=True)
class AccountListing:
    config: AccountConfig
    provider: ProviderConfig
    listed: dict[str, int] = attrs.field(factory=dict)  # model id -> omissions so far
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    last_skipped: int = 0

    @property
    def lists_models(self) -> bool:
        return self.provider.models_endpoint.method is not ModelsMethod.DISABLED

    def fail(self, now: float, reason: str) -> None:
        self.last_failure = now
        self.last_error = reason[:MAX_ERROR_CHARS]
        self.consecutive_failures += 1

    def apply(self, page: ModelListPage, now: float) -> None:
        """Fold in a successful listing that named at least one model."""
        for model in page.models:
            self.listed[model.id] = 0
        if page.authoritative:
            named = {model.id for model in page.models}
            for model_id in [m for m in self.listed if m not in named]:
                self.listed[model_id] += 1
                if self.listed[model_id] >= WITHDRAW_AFTER:
                    del self.listed[model_id]
        self.last_success = now
        self.last_error = None
        self.consecutive_failures = 0
        self.last_skipped = page.skipped

    def snapshot(self) -> dict[str, object]:
        return {
            "provider_id": self.provider.id,
            "models": dict(sorted(self.listed.items())),
            "last_success": self.last_success,
            "last_failure": self.last_failure,
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "last_skipped": self.last_skipped,
        }

    def restore(self, raw: object) -> None:
        """Take back what `snapshot()` gave, if it still belongs to this account."""
        if not isinstance(raw, Mapping) or raw.get("provider_id") != self.provider.id:
            return
        models = raw.get("models")
        if self.lists_models and isinstance(models, Mapping):
            for model_id, omissions in models.items():
                if isinstance(model_id, str) and valid_model_id(model_id):
                    count = _count(omissions)
                    if count == omissions and count < WITHDRAW_AFTER:
                        self.listed[model_id] = count
        self.last_success = time_or_none(raw.get("last_success"))
        self.last_failure = time_or_none(raw.get("last_failure"))
        error = raw.get("last_error")
        self.last_error = error[:MAX_ERROR_CHARS] if isinstance(error, str) else None
        self.consecutive_failures = _count(raw.get("consecutive_failures"))
        self.last_skipped = _count(raw.get("last_skipped"))


def plain(value: object) -> object:
    """Metadata as plain JSON data (read-only views and tuples back to dicts and lists)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return value


def time_or_none(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: object) -> int:
    """A non-negative count, or 0 for anything else (booleans included)."""
    return value if type(value) is int and value > 0 else 0
