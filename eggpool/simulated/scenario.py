"""Scenario files for `eggpool simulate`: the pool, the traffic, how providers behave.

Theory of operation. A scenario is a TOML file read with the same machinery
as `config.toml` (`core/_settings.py`): every key is typed and ranged, every
problem is reported by its key path (`traffic.rate: must be > 0, got -1`),
unknown keys are warnings naming the closest known key. It has three parts
(docs/simulate.md has the reference and docs/examples/ full files):

- `pool`: the EggPool config to simulate, inline (`[pool.server]`,
  `[pool.providers.<id>]`, ... exactly as in config.toml) or the path of a
  config file (`pool = "config.toml"`, relative to the scenario);
- `[traffic]`: duration, mean rate and arrival process (`constant` or
  `poisson`), the share of streamed and of Anthropic-protocol requests,
  mean input and output tokens, and `[[traffic.models]]` with weights;
- `[behaviour]`: how every account answers (time to first byte and its
  jitter, streaming speed, error and rate-limit rates), overridden per
  provider (`[behaviour.providers.<id>]`, which also says the models it
  lists) and per account (`[behaviour.accounts.<name>]`), with timed
  windows: `[[...throttled]]` (429 with a Retry-After) and `[[...down]]`
  (connections refused).

Environment variables a pool config names (`api_key_env`) are satisfied
with placeholders: nothing leaves the machine, and no secret is needed.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import attrs

from eggpool.core._settings import (
    MISSING,
    ConfigError,
    ConfigProblem,
    Problems,
    Seconds,
    Table,
    read_section,
    setting,
)
from eggpool.core.config import Config, parse_config

__all__ = [
    "Arrival",
    "Behaviour",
    "Burst",
    "ModelShare",
    "Scenario",
    "ScenarioError",
    "Traffic",
    "Window",
    "Withdrawal",
    "load_scenario",
    "parse_scenario",
]


class ScenarioError(ValueError):
    """The scenario is invalid: `problems` names each by its key path."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Arrival(enum.StrEnum):
    CONSTANT = "constant"  # evenly spaced, 1/rate apart
    POISSON = "poisson"  # exponential gaps of mean 1/rate


@attrs.frozen(kw_only=True)
class Traffic:
    duration: Seconds = setting(Seconds(3600.0), "How long the simulated traffic runs.", lo=1)
    rate: float = setting(1.0, "Mean requests per second.", lo=0, lo_exclusive=True)
    arrival: Arrival = setting(Arrival.POISSON, "constant or poisson.")
    stream_share: float = setting(0.5, "Share of requests that stream.", lo=0, hi=1)
    anthropic_share: float = setting(
        0.0, "Share of requests sent to /v1/messages (the rest to chat completions).", lo=0, hi=1
    )
    input_tokens: int = setting(1000, "Mean input tokens of a request.", lo=1)
    output_tokens: int = setting(200, "Mean output tokens of an answer.", lo=1)
    session_length: float = setting(
        1.0, "Mean requests per conversation (1: every request opens its own).", lo=1
    )
    daily_curve: tuple[float, ...] = ()  # 24 hourly weights; the rate follows them
    models: tuple[ModelShare, ...] = ()
    bursts: tuple[Burst, ...] = ()

    def rate_at(self, t: float) -> float:
        """Requests per second at `t` seconds into the run (curve and bursts applied)."""
        rate = self.rate
        if self.daily_curve:
            mean = sum(self.daily_curve) / len(self.daily_curve)
            rate *= self.daily_curve[int(t // 3600) % 24] / mean
        return rate + sum(b.rate for b in self.bursts if b.start <= t < b.end)

    @property
    def peak_rate(self) -> float:
        rate = self.rate
        if self.daily_curve:
            rate *= max(self.daily_curve) / (sum(self.daily_curve) / len(self.daily_curve))
        return rate + sum(b.rate for b in self.bursts)


@attrs.frozen(kw_only=True)
class Burst:
    start: Seconds = setting(Seconds(0.0), "Start, from the beginning of the run.", lo=0)
    end: Seconds = setting(Seconds(0.0), "End (excluded), from the beginning of the run.", lo=0)
    rate: float = setting(1.0, "Requests per second added during the burst.", lo=0)


@attrs.frozen(kw_only=True)
class ModelShare:
    name: str
    weight: float


@attrs.frozen(kw_only=True)
class Window:
    """A stretch of the run, in seconds from its start: [start, end)."""

    start: Seconds = setting(Seconds(0.0), "Start, from the beginning of the run.", lo=0)
    end: Seconds = setting(Seconds(0.0), "End (excluded), from the beginning of the run.", lo=0)
    retry_after: Seconds = setting(Seconds(30.0), "Retry-After sent with each 429.", lo=0)

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


@attrs.frozen(kw_only=True)
class Behaviour:
    """How an account answers. Unset keys of an override fall back to the level above."""

    latency: Seconds = setting(Seconds(0.8), "Mean time to the first byte.", lo=0)
    jitter: float = setting(0.25, "Latency varies uniformly by this share either way.", lo=0, hi=1)
    tokens_per_second: float = setting(
        60.0, "Streaming speed of an answer.", lo=0, lo_exclusive=True
    )
    error_rate: float = setting(0.0, "Share of calls answered 500.", lo=0, hi=1)
    rate_limit_rate: float = setting(0.0, "Share of calls answered 429.", lo=0, hi=1)
    retry_after: Seconds = setting(Seconds(30.0), "Retry-After sent with a random 429.", lo=0)
    cut_rate: float = setting(0.0, "Share of streamed answers cut off midway.", lo=0, hi=1)
    spend_cap_usd: float | None = setting(
        None, "Once an account has spent this much, it answers 402 (quota exhausted).", lo=0
    )
    throttled: tuple[Window, ...] = ()
    down: tuple[Window, ...] = ()
    withdrawn: tuple[Withdrawal, ...] = ()


@attrs.frozen(kw_only=True)
class Withdrawal:
    """A model the provider stops serving for a while: 404 for it, and unlisted."""

    model: str = setting("", "The model withdrawn.", nonempty=True)
    start: Seconds = setting(Seconds(0.0), "Start, from the beginning of the run.", lo=0)
    end: Seconds = setting(
        Seconds(float("inf")), "End (excluded); unset: until the end of the run.", lo=0
    )

    def covers(self, model: str, t: float) -> bool:
        return model == self.model and self.start <= t < self.end


@attrs.frozen(kw_only=True)
class Scenario:
    config: Config
    traffic: Traffic
    behaviour: Behaviour
    providers: Mapping[str, Behaviour]
    accounts: Mapping[str, Behaviour]
    models: Mapping[str, tuple[str, ...]]  # provider id -> the models it lists
    seed: int
    warnings: tuple[ConfigProblem, ...] = ()  # unknown keys, and the pool config's warnings

    def behaviour_of(self, account: str, provider: str) -> Behaviour:
        return self.accounts.get(account) or self.providers.get(provider) or self.behaviour


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file; `ScenarioError` names every problem by key path."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ScenarioError([ConfigProblem("", f"cannot read {path}: {exc.strerror}")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError([ConfigProblem("", f"{path}: malformed TOML: {exc}")]) from None
    return parse_scenario(document, base_dir=path.parent)


def parse_scenario(document: Mapping[str, object], *, base_dir: Path) -> Scenario:
    problems = Problems()
    root = Table(document, "", problems)
    seed = root.read("seed", int, 0)
    config = _pool(root, base_dir, problems)
    traffic_table = root.table("traffic")
    models = _models(traffic_table)
    bursts = _spans(traffic_table, "bursts", Burst)
    curve = _daily_curve(traffic_table)
    traffic = read_section(Traffic, traffic_table, models=models, bursts=bursts, daily_curve=curve)
    traffic_table.finish()
    if not models:
        problems.error("traffic.models", "name at least one model ([[traffic.models]])")
    top = root.table("behaviour")
    base = _behaviour(top, None, finish=False)  # its providers and accounts come next
    providers: dict[str, Behaviour] = {}
    listed: dict[str, tuple[str, ...]] = {}
    for name, table in top.named_tables("providers"):
        listed[name] = tuple(table.read("models", tuple[str, ...], ()) or ())
        providers[name] = _behaviour(table, base)
        if config is not None and name not in config.providers:
            problems.error(table.path, "no such provider in the pool")
    accounts: dict[str, Behaviour] = {}
    known = {a.name: a.provider_id for a in config.accounts} if config is not None else {}
    for name, table in top.named_tables("accounts"):
        parent = providers.get(known.get(name, ""), base)
        accounts[name] = _behaviour(table, parent)
        if config is not None and name not in known:
            problems.error(table.path, "no such account in the pool")
    top.finish()
    root.finish()
    if problems.errors or config is None:
        raise ScenarioError(problems.errors)
    everything = tuple(dict.fromkeys(m.name for m in models))
    served = {pid: listed.get(pid) or everything for pid in config.providers}
    return Scenario(
        config=config,
        traffic=traffic,
        behaviour=base,
        providers=providers,
        accounts=accounts,
        models=served,
        seed=seed,
        warnings=tuple(problems.warnings)
        + tuple(
            ConfigProblem(f"pool.{w.path}" if w.path else "pool", w.message)
            for w in config.warnings
        ),
    )


def _pool(root: Table, base_dir: Path, problems: Problems) -> Config | None:
    raw = root.take("pool")
    if isinstance(raw, str):
        path = base_dir / raw
        try:
            document: Mapping[str, object] = tomllib.loads(path.read_text("utf-8"))
        except OSError as exc:
            problems.error("pool", f"cannot read {path}: {exc.strerror}")
            return None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.error("pool", f"{path}: malformed TOML: {exc}")
            return None
        prefix, base = f"pool ({raw})", str(path.parent)
    elif isinstance(raw, Mapping):
        document, prefix, base = raw, "pool", str(base_dir)
    else:
        problems.error("pool", "the pool to simulate: a table (as config.toml) or a file path")
        return None
    try:
        return parse_config(document, _Placeholders(os.environ), base_dir=base)
    except ConfigError as exc:
        for problem in exc.problems:
            problems.error(f"{prefix}.{problem.path}" if problem.path else prefix, problem.message)
        return None


class _Placeholders(dict[str, str]):
    """The environment a simulated pool reads: the real one, where a variable that names a
    credential (KEY, TOKEN, SECRET, PASSWORD) and is unset gets a placeholder, since the
    simulator sends nothing. Others (a proxy URL) must be set, as for a real run."""

    def __missing__(self, key: str) -> str:
        if _CREDENTIAL.search(key):
            return f"sk-simulated-{key.lower()}-0123456789"
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (
            isinstance(key, str) and _CREDENTIAL.search(key) is not None
        )

    def get(self, key: str, default: object = None) -> str | None:  # type: ignore[override]
        return self[key] if key in self else default  # type: ignore[return-value]  # noqa: SIM401


_CREDENTIAL = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


def _daily_curve(table: Table) -> tuple[float, ...]:
    raw = table.take("daily_curve")
    if raw is MISSING:
        return ()
    numbers = raw if isinstance(raw, list) else []
    valid = (
        len(numbers) == 24
        and all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)
        and min(numbers) >= 0
        and any(numbers)
    )
    if not valid:
        table.error("daily_curve", "expected 24 hourly weights, none negative and not all 0")
        return ()
    return tuple(float(n) for n in numbers)


def _models(table: Table) -> tuple[ModelShare, ...]:
    shares = []
    for entry in table.tables("models"):
        name = entry.str_("name")
        weight = entry.read("weight", float, 1.0)
        if weight is not None and weight <= 0:
            entry.error("weight", f"must be greater than 0, got {weight}")
        entry.finish()
        if name:
            shares.append(ModelShare(name=name, weight=float(weight)))
    return tuple(shares)


def _behaviour(table: Table, parent: Behaviour | None, *, finish: bool = True) -> Behaviour:
    throttled = _spans(table, "throttled", Window)
    down = _spans(table, "down", Window)
    withdrawn = _spans(table, "withdrawn", Withdrawal)
    if parent is None:
        own = read_section(Behaviour, table, throttled=throttled, down=down, withdrawn=withdrawn)
    else:
        # Keys this table sets override the parent's; the rest are inherited, and the
        # parent's windows (a provider's outage) apply here too.
        given: dict[str, object] = {
            field.name: getattr(parent, field.name)
            for field in attrs.fields(Behaviour)
            if field.name not in _WINDOWS and field.name not in table
        }
        own = read_section(
            Behaviour,
            table,
            throttled=parent.throttled + throttled,
            down=parent.down + down,
            withdrawn=parent.withdrawn + withdrawn,
            **given,
        )
    if finish:
        table.finish()
    return own


_WINDOWS = ("throttled", "down", "withdrawn")
_Span = TypeVar("_Span", Window, Burst, Withdrawal)


def _spans(table: Table, key: str, kind: type[_Span]) -> tuple[_Span, ...]:
    """The array of tables `key`, each a `kind` with a `start` and an `end` after it."""
    spans = []
    for entry in table.tables(key):
        span = read_section(kind, entry)
        entry.finish()
        if span.end <= span.start:
            entry.error("end", f"must be after start ({span.start:g}s), got {span.end:g}s")
        spans.append(span)
    return tuple(spans)
