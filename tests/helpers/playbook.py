"""Scenario tests as playbooks: event in, expected effects out (STYLE rule 17).

Theory of operation. In the spirit of mitmproxy's
`test/mitmproxy/proxy/tutils.py`, a test states what goes into a machine
and what must come out, and patterns keep it to the fields that matter:

    attempt = Placeholder(str)
    assert (
        Playbook(pool)
        >> request_event(at(0), OPENAI_PATH, chat_body("gpt-4.1-mini"))
        << like(Persist, record=like(RequestStarted, model="gpt-4.1-mini"))
        << like(OpenUpstream, account="openai-1", attempt_id=attempt)
        >> UpstreamResponseStarted(now=at(0.2), attempt_id=attempt(), status=429, headers=())
        << like(AbortUpstream, attempt_id=attempt())
        ...
    )

`>>` feeds an event at once (so a placeholder bound by a `<<` earlier in
the same expression can be read when the next event is built: Python
evaluates the left operand first); `<<` checks the next unasserted effect.
`Playbook` is strict: every effect must be asserted, in order, before the
next event goes in (`Log`, `Metric` and `Publish` are skipped unless
`ignore=()`). For looser checks on one answer, `expect(effects)` offers
`contains` (any order), `in_order` (a subsequence), `exactly`, `lacks` and
`one`.

Patterns, used wherever a value is expected:

- `like(Cls, **fields)`: an instance of `Cls` whose listed fields match;
- a whole attrs instance: same type, every field matches (fields may hold
  patterns, since attrs does not check types: `RespondEnd(request_id=ANY)`);
- `ANY`; a `Placeholder` (binds the first value it meets, then must equal
  it; bindings only stick when the whole pattern matched);
- a compiled `re.Pattern` (searched in a str or bytes value);
- `Satisfies(predicate, "description")`, and `with_headers(("name", value))`
  for header tuples (names case-insensitive, values may be patterns);
- tuples / lists and mappings, matched element by element;
- anything else compares with `==`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

import attrs

from eggpool.core.effects import Effect, Log, Metric, Publish
from eggpool.core.events import Event, Now
from tests.helpers.harness import START, PoolLike

__all__ = [
    "ANY",
    "Expect",
    "Like",
    "Placeholder",
    "Playbook",
    "Satisfies",
    "at",
    "expect",
    "like",
    "matches",
    "with_headers",
]

T = TypeVar("T")


def at(t: float, start: Now = START) -> Now:
    """The clock `t` seconds after `start` (both clocks move together)."""
    return Now(mono=start.mono + t, wall=start.wall + t)


# --- patterns ---------------------------------------------------------------------------


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Matches any value."""


class Placeholder(Generic[T]):
    """A value learnt from an effect and used later: `p = Placeholder(str)`, then `p()`."""

    def __init__(self, cls: type[T] | None = None) -> None:
        self._cls = cls
        self._value: T | None = None
        self.bound = False

    def __call__(self) -> T:
        if not self.bound:
            raise AssertionError("placeholder read before an effect bound it")
        return self._value  # type: ignore[return-value]

    def _bind(self, value: Any) -> None:
        self._value, self.bound = value, True

    def __repr__(self) -> str:
        return f"Placeholder({self._value!r})" if self.bound else "Placeholder(<unbound>)"


@attrs.frozen(slots=True)
class Satisfies:
    """Matches a value for which `check(value)` is true."""

    check: Callable[[Any], bool]
    description: str = "a predicate"

    def __repr__(self) -> str:
        return f"<{self.description}>"


def with_headers(*pairs: tuple[str, object]) -> Satisfies:
    """Header tuples containing each (name, value pattern); names are case-insensitive."""

    def check(headers: object) -> bool:
        if not isinstance(headers, tuple):
            return False
        present = [(str(k).lower(), v) for k, v in headers if isinstance(k, str)]
        return all(
            any(key == name.lower() and matches(value, got) for key, got in present)
            for name, value in pairs
        )

    return Satisfies(check, f"headers with {pairs!r}")


@attrs.frozen(slots=True)
class Like(Generic[T]):
    """An instance of `cls` whose named fields match (build with `like`)."""

    cls: type[T]
    fields: Mapping[str, object]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.fields.items())
        return f"{self.cls.__name__}({shown}{', …' if shown else '…'})"


def like(cls: type[T], **fields: object) -> Like[T]:
    if attrs.has(cls):
        names = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    return Like(cls, fields)


def _match(pattern: object, value: object, bound: dict[int, tuple[Placeholder[Any], Any]]) -> bool:
    if pattern is ANY:
        return True
    if isinstance(pattern, Placeholder):
        if pattern.bound:
            return bool(pattern() == value)
        if id(pattern) in bound:
            return bool(bound[id(pattern)][1] == value)
        if pattern._cls is not None and not isinstance(value, pattern._cls):
            return False
        bound[id(pattern)] = (pattern, value)
        return True
    if isinstance(pattern, Like):
        return isinstance(value, pattern.cls) and all(
            _match(want, getattr(value, name), bound) for name, want in pattern.fields.items()
        )
    if isinstance(pattern, re.Pattern):
        if isinstance(value, str) and isinstance(pattern.pattern, str):
            return pattern.search(value) is not None
        if isinstance(value, bytes) and isinstance(pattern.pattern, bytes):
            return pattern.search(value) is not None
        return False
    if isinstance(pattern, Satisfies):
        return bool(pattern.check(value))
    if attrs.has(type(pattern)):
        names = [field.name for field in attrs.fields(type(pattern))]  # type: ignore[arg-type]
        return type(value) is type(pattern) and all(
            _match(getattr(pattern, name), getattr(value, name), bound) for name in names
        )
    if isinstance(pattern, tuple | list):
        return (
            type(value) is type(pattern)
            and len(pattern) == len(value)
            and all(_match(p, v, bound) for p, v in zip(pattern, value, strict=False))
        )
    if isinstance(pattern, Mapping):
        return (
            isinstance(value, Mapping)
            and pattern.keys() == value.keys()
            and all(_match(pattern[k], value[k], bound) for k in pattern)
        )
    return bool(pattern == value)


def matches(pattern: object, value: object) -> bool:
    """Whether `value` matches `pattern`; placeholders bind only on a match."""
    bound: dict[int, tuple[Placeholder[Any], Any]] = {}
    if not _match(pattern, value, bound):
        return False
    for placeholder, got in bound.values():
        placeholder._bind(got)
    return True


# --- one answer -------------------------------------------------------------------------


def _listing(items: Iterable[object]) -> str:
    lines = [f"  [{index}] {item!r}" for index, item in enumerate(items)]
    return "\n".join(lines) if lines else "  (none)"


class Expect:
    """Assertions over one list of effects; each returns `self` to chain (or the match)."""

    def __init__(self, effects: Iterable[object]) -> None:
        self.effects = list(effects)

    def _fail(self, message: str) -> AssertionError:
        return AssertionError(f"{message}\neffects:\n{_listing(self.effects)}")

    def ignoring(self, *types: type) -> Expect:
        """The same effects without those of the given types."""
        return Expect(e for e in self.effects if not isinstance(e, types))

    def contains(self, *patterns: object) -> Expect:
        """Each pattern matches a distinct effect, in any order."""
        used: set[int] = set()
        for pattern in patterns:
            index = next(
                (i for i, e in enumerate(self.effects) if i not in used and matches(pattern, e)),
                None,
            )
            if index is None:
                raise self._fail(f"no (unclaimed) effect matches {pattern!r}")
            used.add(index)
        return self

    def in_order(self, *patterns: object) -> Expect:
        """The patterns match effects in this order (others may come between)."""
        position = 0
        for pattern in patterns:
            while position < len(self.effects) and not matches(pattern, self.effects[position]):
                position += 1
            if position == len(self.effects):
                raise self._fail(f"no effect matches {pattern!r} in order")
            position += 1
        return self

    def exactly(self, *patterns: object) -> Expect:
        """The effects are exactly these, in this order."""
        if len(patterns) != len(self.effects):
            raise self._fail(f"expected {len(patterns)} effects:\n{_listing(patterns)}\ngot")
        for index, (pattern, effect) in enumerate(zip(patterns, self.effects, strict=True)):
            if not matches(pattern, effect):
                raise self._fail(f"effect [{index}] does not match {pattern!r}")
        return self

    def lacks(self, *patterns: object) -> Expect:
        """No effect matches any of the patterns."""
        for pattern in patterns:
            for index, effect in enumerate(self.effects):
                if matches(pattern, effect):
                    raise self._fail(f"effect [{index}] matches {pattern!r}, which must not come")
        return self

    @overload
    def all(self, pattern: Like[T]) -> list[T]: ...
    @overload
    def all(self, pattern: object) -> list[object]: ...
    def all(self, pattern: object) -> list[Any]:
        """Every effect matching the pattern."""
        return [effect for effect in self.effects if matches(pattern, effect)]

    @overload
    def one(self, pattern: Like[T]) -> T: ...
    @overload
    def one(self, pattern: object) -> object: ...
    def one(self, pattern: object) -> Any:
        """The only effect matching the pattern."""
        found = self.all(pattern)
        if len(found) != 1:
            raise self._fail(f"{len(found)} effects match {pattern!r}, expected exactly one")
        return found[0]


def expect(effects: Iterable[object]) -> Expect:
    return Expect(effects)


# --- a whole exchange -------------------------------------------------------------------


class Playbook:
    """`assert Playbook(pool) >> event << pattern << pattern >> event ...` (see the module doc)."""

    def __init__(
        self, pool: PoolLike, *, ignore: tuple[type, ...] = (Log, Metric, Publish)
    ) -> None:
        self.pool = pool
        self.ignore = ignore
        self.transcript: list[str] = []
        self.last: list[Effect] = []  # every effect of the last event, ignored ones too
        self._pending: list[Effect] = []

    def _fail(self, message: str) -> AssertionError:
        rest = [f"?? {effect!r}" for effect in self._pending]
        return AssertionError("\n".join([message, "playbook:", *self.transcript, *rest]))

    def _drained(self, before: str) -> None:
        if self._pending:
            raise self._fail(f"{len(self._pending)} effect(s) left unasserted {before}")

    def __rshift__(self, event: Event) -> Playbook:
        self._drained(f"before {type(event).__name__}")
        self.transcript.append(f">> {event!r}")
        self.last = list(self.pool.handle(event))
        self._pending = [e for e in self.last if not isinstance(e, self.ignore)]
        return self

    def __lshift__(self, pattern: object) -> Playbook:
        if pattern is None:  # `<< None`: nothing (more) comes
            self._drained("after `<< None`")
            return self
        if not self._pending:
            raise self._fail(f"expected {pattern!r}, but no effect is left")
        if not matches(pattern, self._pending[0]):
            raise self._fail(f"expected {pattern!r}\n     got {self._pending[0]!r}")
        self.transcript.append(f"<< {self._pending.pop(0)!r}")
        return self

    def __bool__(self) -> bool:
        self._drained("at the end")
        return True
