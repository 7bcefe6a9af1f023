"""The request machine's states, the moves between them, and its diagram.

Theory of operation. `ALLOWED` lists every state change the machine may make
(`RequestMachine._goto` enforces it); `lifecycle.TRANSITIONS` says which
events each state takes. `state_diagram` draws both as Mermaid, which
docs/lifecycle.md embeds (a test keeps the two in step).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["ALLOWED", "State", "state_diagram"]


class State(enum.StrEnum):
    RECEIVED = "received"
    ROUTED = "routed"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    FINALIZING = "finalizing"
    DONE = "done"
    FAILED = "failed"


ALLOWED: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.ROUTED, State.FINALIZING, State.FAILED}),
    State.ROUTED: frozenset({State.CONNECTING, State.FAILED}),
    State.CONNECTING: frozenset({State.STREAMING, State.RECEIVED, State.FINALIZING, State.FAILED}),
    State.STREAMING: frozenset({State.FINALIZING, State.FAILED}),
    State.FINALIZING: frozenset({State.DONE, State.FAILED}),
    State.DONE: frozenset(),
    State.FAILED: frozenset(),
}
"""Every state change the machine may make (`_goto` enforces it; the diagram shows it)."""

_EDGE_LABELS: dict[tuple[State, State], str] = {
    (State.RECEIVED, State.ROUTED): "an account is eligible",
    (State.RECEIVED, State.FINALIZING): "unknown model, no account, over limits",
    (State.ROUTED, State.CONNECTING): "OpenUpstream",
    (State.CONNECTING, State.STREAMING): "first bytes go to the client",
    (State.CONNECTING, State.RECEIVED): "failure before the first byte: fail over",
    (State.CONNECTING, State.FINALIZING): "error passed through, cancel, deadline",
    (State.STREAMING, State.FINALIZING): "end, failure, cancel, deadline",
    (State.FINALIZING, State.DONE): "RequestFinalized",
}


def state_diagram(transitions: Iterable[tuple[State, type]]) -> str:
    """The request machine as a Mermaid state diagram, generated from `ALLOWED` and the
    (state, event type) pairs of `transitions`."""
    lines = ["stateDiagram-v2", "    [*] --> received"]
    for source, targets in ALLOWED.items():
        for target in sorted(targets):
            if target is State.FAILED:
                continue
            label = _EDGE_LABELS.get((source, target), "")
            lines.append(f"    {source} --> {target}" + (f": {label}" if label else ""))
    lines.append("    done --> [*]")
    lines.append("    note right of failed: any live state, on an event it does not accept")
    events: dict[State, list[str]] = {}
    for state, kind in transitions:
        events.setdefault(state, []).append(kind.__name__)
    for state, names in events.items():
        lines.append(f"    note left of {state}: takes {', '.join(sorted(names))}")
    return "\n".join(lines) + "\n"
