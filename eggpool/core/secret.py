"""A string that does not show itself.

Credentials (server key, account keys, proxy URLs with a password, header
values read from the environment) travel through the config tree as
`Secret`. Its `repr` and `str` are masked, so an accidental f-string, log
effect or traceback prints `sk-a…wxyz`, never the key. Code that must send
the value (the upstream client building an `Authorization` header) asks for
it explicitly with `reveal()`, which makes every such place greppable.
"""

from __future__ import annotations

import hmac
from typing import final

__all__ = ["Secret", "mask"]

_SHOWN = 4
_MIN_LEN_TO_SHOW = 12


def mask(value: str) -> str:
    """Mask a credential: first and last four characters of long values, nothing of short ones.

    Short values (under 12 characters) would give away too large a share of
    themselves, so they become `****`.
    """
    if len(value) < _MIN_LEN_TO_SHOW:
        return "****"
    return f"{value[:_SHOWN]}…{value[-_SHOWN:]}"


@final
class Secret:
    """A credential. Equality is constant-time; the value leaves only via `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return mask(self._value)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))
