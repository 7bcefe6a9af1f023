"""`ParsedRequest`: what the proxy knows of a client request (`requests.parse_request`).

Its own module because the accelerated build compiles requests.py with mypyc, which
cannot compile a module whose attrs classes declare `attrs.field()` class attributes
(the body stays out of reprs). Re-exported by `eggpool.core.requests`.
"""

from __future__ import annotations

import attrs

from eggpool.core.config import Protocol

__all__ = ["ParsedRequest"]


@attrs.frozen(kw_only=True)
class ParsedRequest:
    """What the proxy needs to know about a client request, and the body to send upstream."""

    protocol: Protocol
    requested_model: str  # as the client sent it, suffix included
    model: str  # without a provider suffix
    pinned_provider: str | None
    stream: bool
    max_output_tokens: int | None  # the client's requested output limit, if any
    max_output_param: str | None  # the field it came from (for error messages)
    client_include_usage: bool  # an OpenAI stream whose client asked for the usage chunk
    usage_injected: bool  # the proxy turned include_usage on: drop the usage-only chunk
    input_tokens_estimate: int
    body: bytes = attrs.field(repr=False)  # prompts stay out of logs and reprs
    fingerprint: str | None = None  # of the system prompt and first message (session affinity)
