"""Reading TOML tables into typed settings, collecting every problem on the way.

Theory of operation: a config file is read once, top-down, by `Table`
objects that wrap one TOML table and its key path (`providers.openai`).
Every key the parser asks for is recorded; whatever the file holds that no
one asked for is reported as an unknown key (a warning naming the closest
known key, so typos are caught without breaking a file written for a newer
version). Every bad value is recorded as an error naming its key path, and
parsing goes on with the default, so one run reports every problem in the
file instead of the first.

Simple sections are declared, not coded: an attrs class whose fields are
made with `setting(default, doc, lo=..., hi=...)` is read by
`read_section`, which coerces each key by the field's annotation (`bool`,
`int`, `float`, `str`, `Seconds`, `Microdollars`, a `StrEnum`, a tuple of
strings, or any of these `| None`). The annotation is the type contract;
the metadata is the range.

Bare TOML has no duration or money types, so both accept a number (seconds,
integer microdollars) or a string (`"90s"`, `"5m"`, `"1h30m"`; `"$12.50"`),
and are stored typed.
"""

from __future__ import annotations

import difflib
import enum
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, NewType, TypeVar

import attrs

__all__ = [
    "MISSING",
    "ConfigError",
    "ConfigProblem",
    "Microdollars",
    "Problems",
    "Seconds",
    "Table",
    "describe",
    "duplicates",
    "join_path",
    "read_section",
    "setting",
    "value_range",
]

Seconds = NewType("Seconds", float)
"""A duration in seconds (config accepts `30`, `2.5`, `"90s"`, `"5m"`, `"1h30m"`)."""

Microdollars = NewType("Microdollars", int)
"""Money in millionths of a US dollar (config accepts `12000000` or `"$12"`)."""

_S = TypeVar("_S")
_META = "eggpool.setting"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_MONEY = re.compile(r"\$\s*(\d[\d,]*(?:\.\d+)?)")
MISSING: Any = object()
"""What `Table.take` returns for a key the file does not set."""


@attrs.frozen
class ConfigProblem:
    """One problem found in a config: where (a key path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """The configuration is invalid. `problems` lists every error found, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Problems:
    """Errors and warnings found while reading, plus every key path that was asked for."""

    def __init__(self) -> None:
        self.errors: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        self.asked: set[str] = set()

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigProblem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ConfigProblem(path, message))


def join_path(parent: str, key: str | int) -> str:
    """`join_path("providers", "open ai")` -> `providers."open ai"`; ints index arrays."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    return f"{parent}.{shown}" if parent else shown


def describe(value: object) -> str:
    """Name a TOML value in an error message: `string "abc"`, `integer 5`, `a table`."""
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


@attrs.frozen
class _Spec:
    doc: str
    lo: float | None
    hi: float | None
    lo_exclusive: bool
    nonempty: bool


def setting(
    default: object,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_exclusive: bool = False,
    nonempty: bool = False,
) -> Any:
    """Declare a config key as an attrs field: its default, one line of doc and its range."""
    return attrs.field(
        default=default, metadata={_META: _Spec(doc, lo, hi, lo_exclusive, nonempty)}
    )


def setting_doc(cls: type, name: str) -> str:
    """The one-line documentation of a declared setting (for generated references)."""
    spec: _Spec = attrs.fields_dict(cls)[name].metadata[_META]
    return spec.doc


class _Invalid(Exception):
    """Internal: a value failed coercion; the message completes `path: ...`."""


class Table:
    """One TOML table being read, with its key path; records what was asked for."""

    __slots__ = ("_asked", "_data", "path", "problems")

    def __init__(self, data: Mapping[str, object], path: str, problems: Problems) -> None:
        self._data = data
        self.path = path
        self.problems = problems
        self._asked: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def at(self, key: str | int) -> str:
        return join_path(self.path, key)

    def error(self, key: str | int | None, message: str) -> None:
        self.problems.error(self.path if key is None else self.at(key), message)

    def warn(self, key: str | int | None, message: str) -> None:
        self.problems.warn(self.path if key is None else self.at(key), message)

    def take(self, key: str) -> Any:
        """The raw value of `key`, or `MISSING`; marks the key as known either way."""
        self._asked.add(key)
        self.problems.asked.add(self.at(key))
        return self._data.get(key, MISSING)

    def has(self, key: str) -> bool:
        """Whether the file sets `key` (and mark it known)."""
        return self.take(key) is not MISSING

    def table(self, key: str) -> Table:
        """The sub-table `key` (empty when absent; an error when not a table)."""
        raw = self.take(key)
        if raw is MISSING:
            return Table({}, self.at(key), self.problems)
        if not isinstance(raw, Mapping):
            self.error(key, f"expected a table, got {describe(raw)}")
            return Table({}, self.at(key), self.problems)
        return Table(raw, self.at(key), self.problems)

    def tables(self, key: str) -> list[Table]:
        """The array of tables `key` (`[[key]]` or `key = [{...}]`); empty when absent."""
        raw = self.take(key)
        if raw is MISSING:
            return []
        if not isinstance(raw, list):
            self.error(key, f"expected an array of tables, got {describe(raw)}")
            return []
        result = []
        for index, item in enumerate(raw):
            path = join_path(self.at(key), index)
            if isinstance(item, Mapping):
                result.append(Table(item, path, self.problems))
            else:
                self.problems.error(path, f"expected a table, got {describe(item)}")
        return result

    def named_tables(self, key: str) -> list[tuple[str, Table]]:
        """The sub-tables of table `key`, by name (`[proxies.<name>]`)."""
        parent = self.table(key)
        result = []
        for name in parent.keys():  # noqa: SIM118 (Table is not a dict)
            result.append((name, parent.table(name)))
        return result

    def read(self, key: str, kind: object, default: object, spec: _Spec | None = None) -> Any:
        """Coerce `key` to `kind` (an annotation); record an error and keep the default if bad."""
        raw = self.take(key)
        if raw is MISSING:
            return default
        try:
            return _coerce(kind, raw, spec or _NO_SPEC)
        except _Invalid as exc:
            self.error(key, str(exc))
            return default

    def str_(self, key: str, default: str | None = None, *, nonempty: bool = True) -> Any:
        spec = attrs.evolve(_NO_SPEC, nonempty=nonempty)
        return self.read(key, str | None, default, spec)

    def finish(self) -> None:
        """Warn about every key of this table that the parser never asked for."""
        for key in self._data:
            if key in self._asked:
                continue
            hint = difflib.get_close_matches(key, sorted(self._asked), n=1, cutoff=0.75)
            suffix = f' (did you mean "{hint[0]}"?)' if hint else ""
            self.warn(key, f"unknown key, ignored{suffix}")


_NO_SPEC = _Spec("", None, None, False, False)


def value_range(lo: float | None = None, hi: float | None = None, *, excl: bool = False) -> _Spec:
    """A range for `Table.read` of a key outside a declared section (`excl`: lo excluded)."""
    return _Spec("", lo, hi, excl, False)


def read_section(cls: type[_S], table: Table, **given: object) -> _S:
    """Build the attrs class `cls` from `table`: every `setting()` field by its annotation.

    Fields passed in `given` (the ones a section computes itself) are not read.
    The caller calls `table.finish()` once it has read its own extra keys.
    """
    hints = _hints(cls)
    kwargs = dict(given)
    for field in attrs.fields(cls):  # type: ignore[arg-type]
        spec = field.metadata.get(_META)
        if spec is None or field.name in given:
            continue
        kwargs[field.name] = table.read(field.name, hints[field.name], field.default, spec)
    return cls(**kwargs)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _coerce(kind: object, raw: object, spec: _Spec) -> object:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _coerce(inner, raw, spec)
    if kind is bool:
        if not isinstance(raw, bool):
            raise _Invalid(f"expected true or false, got {describe(raw)}")
        return raw
    if kind is Seconds:
        return Seconds(_check_range(_duration(raw), spec, lo_default=0.0, unit="seconds"))
    if kind is Microdollars:
        return Microdollars(int(_check_range(_money(raw), spec, lo_default=0)))
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _Invalid(f"expected an integer, got {describe(raw)}")
        return int(_check_range(raw, spec))
    if kind is float:
        return _check_range(_number(raw), spec)
    if kind is str:
        if not isinstance(raw, str):
            raise _Invalid(f"expected a string, got {describe(raw)}")
        if spec.nonempty and not raw.strip():
            raise _Invalid("must not be empty")
        return raw
    if isinstance(kind, type) and issubclass(kind, enum.StrEnum):
        return _enum(kind, raw)
    if typing.get_origin(kind) is tuple:
        return _str_tuple(raw)
    raise TypeError(f"no coercion for setting type {kind!r}")  # a declaration bug


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid(f"expected a number, got {describe(raw)}")
    if not math.isfinite(raw):
        raise _Invalid(f"expected a finite number, got {describe(raw)}")
    return float(raw)


def _duration(raw: object) -> float:
    if isinstance(raw, str):
        text = raw.strip().lower()
        parts = _DURATION_PART.findall(text)
        if not text or _DURATION_PART.sub("", text).strip():
            raise _Invalid(
                f'expected seconds or a duration such as "90s", "5m", "1h30m", got {describe(raw)}'
            )
        return sum(float(amount) * _DURATION_UNITS[unit] for amount, unit in parts)
    try:
        return _number(raw)
    except _Invalid:
        raise _Invalid(
            f'expected seconds or a duration such as "90s", "5m", "1h30m", got {describe(raw)}'
        ) from None


def _money(raw: object) -> int:
    if isinstance(raw, str):
        match = _MONEY.fullmatch(raw.strip())
        try:
            if match is None:
                raise InvalidOperation
            amount = Decimal(match.group(1).replace(",", "")) * 1_000_000
        except InvalidOperation:
            raise _Invalid(
                f'expected integer microdollars or a dollar amount such as "$12.50", '
                f"got {describe(raw)}"
            ) from None
        if amount != amount.to_integral_value():
            raise _Invalid(f"{raw!r} is finer than one microdollar")
        return int(amount)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _Invalid(
            f'expected integer microdollars or a dollar amount such as "$12.50", '
            f"got {describe(raw)}"
        )
    return raw


_N = TypeVar("_N", int, float)


def _check_range(value: _N, spec: _Spec, *, lo_default: float | None = None, unit: str = "") -> _N:
    lo = spec.lo if spec.lo is not None else lo_default
    hi = spec.hi
    shown = (f"{value:g}" if isinstance(value, float) else str(value)) + (
        f" {unit}" if unit else ""
    )
    if lo is not None and (value <= lo if spec.lo_exclusive else value < lo):
        if spec.lo_exclusive:
            raise _Invalid(f"must be greater than {lo:g}, got {shown}")
        if hi is not None:
            raise _Invalid(f"must be between {lo:g} and {hi:g}, got {shown}")
        raise _Invalid(f"must be at least {lo:g}, got {shown}")
    if hi is not None and value > hi:
        if lo is not None:
            raise _Invalid(f"must be between {lo:g} and {hi:g}, got {shown}")
        raise _Invalid(f"must be at most {hi:g}, got {shown}")
    return value


_E = TypeVar("_E", bound=enum.StrEnum)


def _enum(kind: type[_E], raw: object) -> _E:
    choices = [member.value for member in kind]
    if isinstance(raw, str):
        for member in kind:
            if raw.strip().lower() == member.value.lower():
                return member
    shown = ", ".join(f'"{c}"' for c in choices)
    raise _Invalid(f"expected one of {shown}, got {describe(raw)}")


def _str_tuple(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise _Invalid(f"expected an array of strings, got {describe(raw)}")
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise _Invalid(f"item {index}: expected a string, got {describe(item)}")
    return tuple(raw)


def duplicates(values: Iterable[str]) -> list[str]:
    """Values that occur more than once, case-insensitively, in first-seen order."""
    seen: set[str] = set()
    dupes: list[str] = []
    for value in values:
        folded = value.lower()
        if folded in seen and value not in dupes:
            dupes.append(value)
        seen.add(folded)
    return dupes
