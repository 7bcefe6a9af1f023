"""Per (model, provider) resolution: effective token limits and the protocol a model speaks.

Theory of operation. Both are pure functions of the config and of what the
catalog knows about one (model, provider) pair; the catalog calls them once
per pair when it rebuilds its indexes, never per request.

Limits, per field (context, input, output), first known value wins:
provider `model_overrides` > global `model_overrides` > upstream list
metadata > static model (its explicit `max_*_tokens`, then its
`source_metadata`) > unknown. `enforce` comes from the provider override,
then the global override, and defaults to true (reference feature list 2.9).

Protocol, first candidate the provider lists wins: provider override >
global override > upstream metadata (`api_type` / `protocol`) > static model
`protocol` > family rules. A candidate the provider does not list is
skipped, never used. A provider that speaks exactly one protocol always
gets that one: every request to it goes through that dialect anyway. Only
a provider that lists both can leave a model unresolved (then it is hidden
and unroutable there, as in the reference).

Family rules therefore only ever decide for providers listing both
protocols; in the reference's template catalogue that is OpenCode Go
(`opencode-go`, the default provider), which serves GLM, Kimi, DeepSeek,
MiMo and GPT models on `/chat/completions` and MiniMax and Qwen 3 models on
`/messages`. The rules follow that split (and the reference's list:
`claude-`, `minimax-`, `qwen3` -> anthropic; `gpt-`, `o1`/`o3`/`o4`,
`glm-`, `kimi-`, `mimo-`, `deepseek-` -> openai), plus families that are
only ever served OpenAI-style (`chatgpt-`, other `qwen`/`qwq`, `llama`,
`mistral`, `codestral`, `gemma`, `grok-`). They match the last path segment
of the id, case-insensitively (`Pro/deepseek-ai/DeepSeek-V3` -> `deepseek-v3`).
"""

from __future__ import annotations

import enum
import re

import attrs

from eggpool.core._config_model import ModelOverride, Protocol, ProviderConfig, StaticModel
from eggpool.core._model_lists import TokenLimits

__all__ = [
    "EffectiveLimits",
    "LimitSource",
    "ProtocolSource",
    "ResolvedProtocol",
    "family_protocol",
    "resolve_limits",
    "resolve_protocol",
    "static_limits",
]


class LimitSource(enum.StrEnum):
    PROVIDER_OVERRIDE = "provider_override"
    GLOBAL_OVERRIDE = "global_override"
    UPSTREAM = "upstream"
    STATIC = "static"
    UNKNOWN = "unknown"


class ProtocolSource(enum.StrEnum):
    PROVIDER_OVERRIDE = "provider_override"
    GLOBAL_OVERRIDE = "global_override"
    UPSTREAM = "upstream"
    STATIC = "static"
    FAMILY = "family"
    ONLY_PROTOCOL = "only_protocol"  # the provider speaks exactly one
    UNRESOLVED = "unresolved"


@attrs.frozen(kw_only=True, slots=True)
class EffectiveLimits:
    """The limits the pre-flight guard checks for one (model, provider); None is unknown."""

    context: int | None = None
    input: int | None = None
    output: int | None = None
    enforce: bool = True
    context_source: LimitSource = LimitSource.UNKNOWN
    input_source: LimitSource = LimitSource.UNKNOWN
    output_source: LimitSource = LimitSource.UNKNOWN


@attrs.frozen(kw_only=True, slots=True)
class ResolvedProtocol:
    protocol: Protocol | None
    source: ProtocolSource


_ANTHROPIC_FAMILIES = re.compile(r"claude-|minimax-|qwen3")
_OPENAI_FAMILIES = re.compile(
    r"gpt-|chatgpt-|o[134](?:-|$)|glm-|kimi-|mimo-|deepseek-|qwen|qwq|llama|mistral|codestral"
    r"|gemma|grok-"
)


def family_protocol(model_id: str) -> Protocol | None:
    """The protocol a model family is served with on a two-protocol provider, if known."""
    name = model_id.rpartition("/")[2].lower()
    if _ANTHROPIC_FAMILIES.match(name):  # before `qwen`: qwen3 is served on /messages
        return Protocol.ANTHROPIC
    if _OPENAI_FAMILIES.match(name):
        return Protocol.OPENAI
    return None


def resolve_protocol(
    model_id: str,
    provider: ProviderConfig,
    global_override: ModelOverride | None,
    upstream_hint: Protocol | None,
    static_protocol: Protocol | None,
) -> ResolvedProtocol:
    provider_override = provider.model_overrides.get(model_id)
    chain = (
        (provider_override and provider_override.protocol, ProtocolSource.PROVIDER_OVERRIDE),
        (global_override and global_override.protocol, ProtocolSource.GLOBAL_OVERRIDE),
        (upstream_hint, ProtocolSource.UPSTREAM),
        (static_protocol, ProtocolSource.STATIC),
        (family_protocol(model_id), ProtocolSource.FAMILY),
    )
    for protocol, source in chain:
        if protocol is not None and protocol in provider.protocols:
            return ResolvedProtocol(protocol=protocol, source=source)
    if len(provider.protocols) == 1:
        only = provider.protocols[0]
        return ResolvedProtocol(protocol=only, source=ProtocolSource.ONLY_PROTOCOL)
    return ResolvedProtocol(protocol=None, source=ProtocolSource.UNRESOLVED)


def resolve_limits(
    provider_override: ModelOverride | None,
    global_override: ModelOverride | None,
    upstream: TokenLimits | None,
    static: TokenLimits | None,
) -> EffectiveLimits:
    layers: tuple[tuple[TokenLimits | None, LimitSource], ...] = (
        (_override_limits(provider_override), LimitSource.PROVIDER_OVERRIDE),
        (_override_limits(global_override), LimitSource.GLOBAL_OVERRIDE),
        (upstream, LimitSource.UPSTREAM),
        (static, LimitSource.STATIC),
    )
    context, context_source = _first_known(layers, "context")
    max_in, input_source = _first_known(layers, "input")
    max_out, output_source = _first_known(layers, "output")
    enforce = True
    for override in (provider_override, global_override):
        if override is not None and override.enforce_context_limit is not None:
            enforce = override.enforce_context_limit
            break
    return EffectiveLimits(
        context=context,
        input=max_in,
        output=max_out,
        enforce=enforce,
        context_source=context_source,
        input_source=input_source,
        output_source=output_source,
    )


def _first_known(
    layers: tuple[tuple[TokenLimits | None, LimitSource], ...], name: str
) -> tuple[int | None, LimitSource]:
    for limits, source in layers:
        value: int | None = getattr(limits, name) if limits is not None else None
        if value is not None:
            return value, source
    return None, LimitSource.UNKNOWN


def static_limits(static: StaticModel, from_metadata: TokenLimits) -> TokenLimits:
    """A static model's limits: its explicit fields, then its `source_metadata`."""
    return TokenLimits(
        context=static.max_context_tokens or from_metadata.context,
        input=static.max_input_tokens or from_metadata.input,
        output=static.max_output_tokens or from_metadata.output,
    )


def _override_limits(override: ModelOverride | None) -> TokenLimits | None:
    if override is None:
        return None
    return TokenLimits(
        context=override.max_context_tokens,
        input=override.max_input_tokens,
        output=override.max_output_tokens,
    )
