"""`eggpool simulate replay`: the requests a real database recorded, through a pool again.

Theory of operation. Each recorded request (from `requests`, with its
`attempts`) becomes a planned request at the same offset from the first:
its model, protocol, streaming, input and output tokens, the routing
entropy it had and its session (schema version 3; older rows get entropy 0
and no session). The Pool under the given config routes them. When it
sends a request to an account that served (or failed) that request in the
recording, the account answers as it did then, attempt by attempt: a 200
after the recorded time to first token and total time, another status as
recorded (with the cooldown hint its provider gave, Retry-After or the
like, when the database kept it: schema 8), a transport failure as a
refused connection. Any other account
answers as the scenario's `[behaviour]` says, or with its defaults. So a
replay under the unchanged config routes every request as recorded (the
report says how many), and under another config shows what would differ.

Nothing is read but the requests' metadata: no prompt or answer is stored.
"""

from __future__ import annotations

import random
import sqlite3
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import attrs

from eggpool.core.config import Config
from eggpool.core.effects import OpenUpstream
from eggpool.shells._store_schema import unsigned64
from eggpool.simulated.engine import START
from eggpool.simulated.provider import Reply
from eggpool.simulated.scenario import Behaviour
from eggpool.simulated.simulate import Planned, Report, answer, complete, run_plans

__all__ = ["Recorded", "ReplayError", "read_recording", "replay"]


class ReplayError(ValueError):
    """The database cannot be replayed; the message says why."""


@attrs.frozen(kw_only=True)
class Attempt:
    account: str
    status: int | None
    latency: float | None
    retry_after: float | None = None  # the provider's hint, when the database kept it


@attrs.frozen(kw_only=True)
class Recorded:
    request_id: str
    started_at: float
    plan: Planned
    account: str | None
    ttft: float | None
    attempts: tuple[Attempt, ...]


_REQUESTS = """
SELECT request_id, started_at, protocol, model, streamed, account, input_tokens,
       cache_read_tokens, cache_write_tokens, output_tokens, ttft, entropy, session
FROM requests
WHERE status = 'finalized' AND started_at >= ?
ORDER BY started_at, request_id
"""
_ATTEMPTS = """
SELECT request_id, account, http_status, latency, {retry_after} FROM attempts
WHERE request_id IN (SELECT request_id FROM requests WHERE status = 'finalized'
                     AND started_at >= ?)
ORDER BY ended_at, attempt_id
"""


def read_recording(db: Path, *, since: float | None = None) -> list[Recorded]:
    """The finalized requests of `db` started in the last `since` seconds (all if None)."""
    if not db.is_file():
        raise ReplayError(f"{db}: no such database")
    uri = f"file:{db.resolve()}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True) as conn:
            latest = conn.execute("SELECT max(started_at) FROM requests").fetchone()[0]
            if latest is None:
                return []
            floor = float("-inf") if since is None else latest - since
            attempts: dict[str, list[Attempt]] = {}
            columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)")}
            # Databases before schema 8 did not keep the provider's retry hint.
            hint = "retry_after" if "retry_after" in columns else "NULL"
            query = _ATTEMPTS.format(retry_after=hint)
            for rid, account, status, latency, retry_after in conn.execute(query, (floor,)):
                attempts.setdefault(rid, []).append(
                    Attempt(
                        account=account, status=status, latency=latency, retry_after=retry_after
                    )
                )
            rows = conn.execute(_REQUESTS, (floor,)).fetchall()
    except sqlite3.Error as exc:
        raise ReplayError(f"{db}: cannot read it as an EggPool database ({exc})") from None
    sessions: dict[str, int] = {}
    recorded = []
    start = rows[0][1] if rows else 0.0
    for number, row in enumerate(rows):
        (rid, started_at, protocol, model, streamed, account, fresh, cache_read, cache_write,
         output, ttft, entropy, session) = row  # fmt: skip
        # One number per recorded session; a request without one is a conversation alone.
        group = -1 - number if session is None else sessions.setdefault(session, len(sessions))
        plan = Planned(
            at=started_at - start,
            model=model or "",
            stream=bool(streamed),
            anthropic=protocol == "anthropic",
            input_tokens=max(int(fresh) + int(cache_read) + int(cache_write), 1),
            output_tokens=max(int(output), 1),
            entropy=unsigned64(int(entropy or 0)),
            session=group,
        )
        recorded.append(
            Recorded(
                request_id=rid,
                started_at=started_at,
                plan=plan,
                account=account,
                ttft=ttft,
                attempts=tuple(attempts.get(rid, ())),
            )
        )
    return recorded


def replay(
    config: Config,
    recorded: Sequence[Recorded],
    *,
    behaviour: Behaviour | None = None,
    seed: int = 0,
) -> Report:
    """Route `recorded` through `config`'s Pool; accounts replay what they recorded."""
    rng = random.Random(seed)
    elsewhere = behaviour or Behaviour()
    duration = max((r.plan.at for r in recorded), default=0.0) + 1.0
    report = Report(seed=seed, duration=duration, start_wall=START.wall)
    report.recorded = {r.request_id: r.account for r in recorded}
    by_id = {r.request_id: r for r in recorded}
    pending: dict[tuple[str, str], deque[Attempt]] = {}
    for r in recorded:
        for attempt in r.attempts:
            pending.setdefault((r.request_id, attempt.account), deque()).append(attempt)
    models = sorted({r.plan.model for r in recorded})

    def reply(effect: OpenUpstream, plan: Planned, t: float) -> Reply:
        queue = pending.get((effect.request_id, effect.account))
        if not queue:  # this account never saw this request: the behaviour model answers
            spent = report.accounts[effect.account].spend_microdollars
            return answer(elsewhere, plan, t, rng, spent)
        attempt = queue.popleft()
        if attempt.status is None:
            return Reply.refused()
        if attempt.status != 200:
            return Reply.status(
                attempt.status, latency=attempt.latency or 0.05, retry_after=attempt.retry_after
            )
        ttft = by_id[effect.request_id].ttft or attempt.latency or elsewhere.latency
        total = max(attempt.latency or ttft, ttft)
        return complete(plan, ttft, plan.output_tokens / max(total - ttft, 1e-3))

    plans = [(r.request_id, r.plan) for r in recorded]
    return run_plans(config, plans, report, reply=reply, models=lambda _a, _t: models)
