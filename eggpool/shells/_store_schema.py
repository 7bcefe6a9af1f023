"""The store's schema: numbered migrations, and how records become rows.

Theory of operation. The database records which migrations it has had in
`schema_migrations(version, name, applied_at)`. `migrate` applies every
migration above the recorded maximum, each inside its own `BEGIN IMMEDIATE`
... `COMMIT` together with its `schema_migrations` row, so a crash or a
failing statement leaves the database at the previous version, never half
way (SQLite DDL is transactional). A database newer than this code is
refused rather than guessed at: running old code on a new schema could
write rows the new code misreads.

Rules for adding a version (docs/storage.md, "Migrations"):

- append to `MIGRATIONS`; never edit or reorder a released one, since
  databases in the field already have it;
- stay within SQLite 3.24 (UPSERT; Raspberry Pi OS 10 "buster" ships 3.27):
  no STRICT tables, no `DROP COLUMN`, no `RETURNING`, no generated columns;
- a data migration is a function taking the connection, like `_sql(...)`
  returns; it runs inside the same transaction as its version row.

Version 1 is the initial schema. Version 2 adds an index for per-account
attempt statistics; it is also what keeps the "upgrade from every earlier
version" test honest (tests/shells/test_store.py). Version 3 keeps each
request's routing entropy and session; version 4 adds the hourly rollups
the stats read (`_store_rollups`); version 5 the history of cooldowns
(`account_events`); version 6 routing decisions (`_store_routing`);
version 7 where an attempt's time went (`_store_phases`); version 8 the
provider's retry hint of a failed attempt.

Rows (`prepare_batch`, used by eggpool/shells/_store_writer.py). Times are
wall-clock Unix seconds as REAL; money is integer microdollars; a backoff's
`account` and `model` are '' for "none", because SQLite treats NULLs as
distinct in a primary key and the key must be unique. Every write is
idempotent, so a batch retried after a failure that SQLite in fact
committed (or a record the core sends twice) changes nothing:

- a start for a known id does nothing;
- a finalization updates the row only while it is 'pending' (the first one
  wins) and inserts it when it is unknown, so crash recovery can finalize
  rows it only knows from the previous run, and a replayed start cannot
  reopen a finalized request;
- an attempt is keyed by its id; a backoff by its scope (set = upsert,
  cleared = delete), applied in persist order;
- operational events are plain inserts (an event retried after an
  ambiguous commit failure could appear twice; they are informational).

Values are clamped to what SQLite stores, because one bad value must not
fail a whole batch: integers to 64 bits (the reference overflowed INTEGER,
reference-features.md section 12), NaN to NULL (a NaN timestamp to the
write time), lone surrogates replaced, long free text truncated.
Parameters are built before the transaction opens, to keep the lock short.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, assert_never

import attrs

from eggpool.core.effects import (
    AttemptEnded,
    BackoffChanged,
    CatalogChanged,
    OperationalEvent,
    Record,
    RequestFinalized,
    RequestStarted,
    RoutingDecided,
)
from eggpool.shells._store_phases import migrate_phases
from eggpool.shells._store_rollups import HOUR_TABLES, migrate_rollups
from eggpool.shells._store_routing import (
    INSERT_DECISION,
    INSERT_EXCLUSION,
    decision_rows,
    migrate_routing,
)

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "RETENTION_STATEMENTS",
    "Batch",
    "Migration",
    "SchemaError",
    "clamp_int",
    "migrate",
    "prepare_batch",
    "schema_version",
    "signed64",
    "unsigned64",
]


class SchemaError(Exception):
    """The database's schema cannot be used by this code (e.g. it is newer)."""


@attrs.frozen(kw_only=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _sql(*statements: str) -> Callable[[sqlite3.Connection], None]:
    """A migration made of plain statements, run one by one (never `executescript`,
    which commits on its own and would break the one-transaction rule)."""

    def apply(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return apply


_V1 = _sql(
    # One row per client request. 'pending' from RequestStarted until its one
    # RequestFinalized; a pending row at startup is a request the previous run
    # never finished (crash recovery turns it into 'interrupted').
    """
    CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        started_at REAL NOT NULL,
        protocol TEXT,
        model TEXT,
        streamed INTEGER NOT NULL DEFAULT 0,
        client TEXT,
        outcome TEXT,
        http_status INTEGER,
        account TEXT,
        provider TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_tokens INTEGER NOT NULL DEFAULT 0,
        reasoning_estimated INTEGER NOT NULL DEFAULT 0,
        provider_cost_microdollars INTEGER,
        cost_microdollars INTEGER NOT NULL DEFAULT 0,
        exactness TEXT,
        latency REAL,
        ttft REAL,
        finalized_at REAL
    )
    """,
    # Startup reads the pending rows; a partial index keeps that read tiny
    # however many finalized rows there are.
    "CREATE INDEX requests_pending ON requests (started_at) WHERE status = 'pending'",
    # Charges of the last 30 days at startup, retention, and time-range stats.
    "CREATE INDEX requests_finalized_at ON requests (finalized_at)",
    """
    CREATE TABLE attempts (
        attempt_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        account TEXT NOT NULL,
        provider TEXT NOT NULL,
        ended_at REAL NOT NULL,
        http_status INTEGER,
        category TEXT,
        failover INTEGER NOT NULL DEFAULT 0,
        latency REAL
    )
    """,
    "CREATE INDEX attempts_request ON attempts (request_id)",
    "CREATE INDEX attempts_ended_at ON attempts (ended_at)",
    # One row per active cooldown scope: a provider ('', ''), an account
    # (account, '') or an account's model (account, model).
    """
    CREATE TABLE backoffs (
        provider TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        until REAL NOT NULL,
        probe_at REAL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (provider, account, model)
    )
    """,
    """
    CREATE TABLE catalog_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        taken_at REAL NOT NULL,
        snapshot TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE operational_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    )
    """,
    "CREATE INDEX operational_events_at ON operational_events (at)",
)

_V2 = _sql(
    # Per-account failure rates over a time range (dashboard, later issue).
    "CREATE INDEX attempts_account_ended_at ON attempts (account, ended_at)",
)

_V3 = _sql(
    # What `eggpool simulate replay` needs to route a recorded request as it was routed:
    # its routing entropy (64 bits, stored signed) and its session-affinity key.
    "ALTER TABLE requests ADD COLUMN entropy INTEGER",
    "ALTER TABLE requests ADD COLUMN session TEXT",
)

_V5 = _sql(
    # The history of cooldowns (the dashboard's account events): one row per change of a
    # backoff, kept `retain_event_days`. `backoffs` holds only the running ones.
    """
    CREATE TABLE account_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        provider TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        until REAL
    )
    """,
    "CREATE INDEX account_events_at ON account_events (at)",
)

_V8 = _sql(
    # The cooldown a failed attempt's provider asked for (Retry-After, a reset time in the
    # body...), so `eggpool simulate replay` answers a recorded 429 or 5xx as it came.
    "ALTER TABLE attempts ADD COLUMN retry_after REAL",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(version=1, name="initial schema", apply=_V1),
    Migration(version=2, name="index attempts by account and time", apply=_V2),
    Migration(version=3, name="requests keep their routing entropy and session", apply=_V3),
    Migration(version=4, name="hourly rollups of finalized requests", apply=migrate_rollups),
    Migration(version=5, name="account events: the history of cooldowns", apply=_V5),
    Migration(version=6, name="routing decisions and their rollups", apply=migrate_routing),
    Migration(version=7, name="attempt phases: connect and head times", apply=migrate_phases),
    Migration(version=8, name="attempts keep the provider's retry hint", apply=_V8),
)
LATEST_VERSION = MIGRATIONS[-1].version

_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest applied version; 0 for an empty database."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(
    conn: sqlite3.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    target: int | None = None,
) -> int:
    """Bring the database up to `target` (default: the latest); return its version.

    `conn` must be in autocommit mode (`isolation_level=None`) so that the
    explicit transactions here are the only ones. Raises `SchemaError` for a
    database newer than `migrations` knows, and whatever SQLite raises when
    a migration fails (that migration is rolled back; earlier ones stay).
    """
    known = migrations[-1].version if migrations else 0
    goal = known if target is None else target
    current = schema_version(conn)
    if current > known:
        raise SchemaError(
            f"the database is at schema version {current}, newer than this EggPool "
            f"knows ({known}); upgrade EggPool or restore an older backup"
        )
    for migration in migrations:
        if migration.version <= current or migration.version > goal:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Inside the transaction, so the very first migration and the
            # table that records it land together.
            conn.execute(_CREATE_MIGRATIONS_TABLE)
            migration.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        current = migration.version
    return current


# --- rows: how records become statement parameters ---------------------------------------

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_DETAIL_CHARS = 4096  # an operational event's detail; a runaway message must not bloat rows
_SHORT_CHARS = 512  # client, category, reason: short by nature
_KEPT_SNAPSHOTS = 3  # the latest catalog is read at startup; two older ones are fallbacks

# --- values -----------------------------------------------------------------------------


def clamp_int(value: int) -> int:
    return min(max(int(value), INT64_MIN), INT64_MAX)


def _opt_int(value: int | None) -> int | None:
    return None if value is None else clamp_int(value)


def _real(value: float | None) -> float | None:
    """SQLite stores NaN as NULL anyway; doing it here keeps NOT NULL columns safe.
    Infinity is kept: it is a valid REAL (a backoff 'until' can be forever)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _time(value: float) -> float:
    """A timestamp column: a non-finite time (a caller bug) becomes the write time."""
    number = float(value)
    return number if math.isfinite(number) else time.time()


def _text(value: str, limit: int | None = None) -> str:
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: sqlite3 refuses them outright
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _opt_text(value: str | None, limit: int | None = None) -> str | None:
    return None if value is None else _text(value, limit)


# --- statements -------------------------------------------------------------------------

_INSERT_STARTED = """
INSERT INTO requests (request_id, status, started_at, protocol, model, streamed, client,
                      entropy, session)
VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (request_id) DO NOTHING
"""

_INSERT_ATTEMPT = """
INSERT INTO attempts (attempt_id, request_id, account, provider, ended_at, http_status,
                      category, failover, latency, connect, head, retry_after)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (attempt_id) DO NOTHING
"""

# Crash recovery finalizes with model '' and streamed False: what the start
# recorded is better, so the update keeps those.
_UPSERT_FINALIZED = """
INSERT INTO requests (request_id, status, started_at, model, streamed, outcome, http_status,
                      account, provider, attempts, input_tokens, cache_read_tokens,
                      cache_write_tokens, output_tokens, reasoning_tokens, reasoning_estimated,
                      provider_cost_microdollars, cost_microdollars, exactness, latency, ttft,
                      finalized_at)
VALUES (?, 'finalized', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (request_id) DO UPDATE SET
    status = 'finalized',
    model = COALESCE(NULLIF(excluded.model, ''), requests.model),
    outcome = excluded.outcome,
    http_status = excluded.http_status,
    account = excluded.account,
    provider = excluded.provider,
    attempts = excluded.attempts,
    input_tokens = excluded.input_tokens,
    cache_read_tokens = excluded.cache_read_tokens,
    cache_write_tokens = excluded.cache_write_tokens,
    output_tokens = excluded.output_tokens,
    reasoning_tokens = excluded.reasoning_tokens,
    reasoning_estimated = excluded.reasoning_estimated,
    provider_cost_microdollars = excluded.provider_cost_microdollars,
    cost_microdollars = excluded.cost_microdollars,
    exactness = excluded.exactness,
    latency = excluded.latency,
    ttft = excluded.ttft,
    finalized_at = excluded.finalized_at
WHERE requests.status = 'pending'
"""

_INSERT_EVENT = "INSERT INTO operational_events (at, kind, detail) VALUES (?, ?, ?)"
_INSERT_ACCOUNT_EVENT = """
INSERT INTO account_events (at, provider, account, model, kind, reason, until)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

_UPSERT_BACKOFF = """
INSERT INTO backoffs (provider, account, model, reason, until, probe_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, account, model) DO UPDATE SET
    reason = excluded.reason,
    until = excluded.until,
    probe_at = excluded.probe_at,
    updated_at = excluded.updated_at
"""

_DELETE_BACKOFF = "DELETE FROM backoffs WHERE provider = ? AND account = ? AND model = ?"

_INSERT_SNAPSHOT = "INSERT INTO catalog_snapshots (taken_at, snapshot) VALUES (?, ?)"
_TRIM_SNAPSHOTS = f"""
DELETE FROM catalog_snapshots
WHERE id NOT IN (SELECT id FROM catalog_snapshots ORDER BY id DESC LIMIT {_KEPT_SNAPSHOTS})
"""

# Each: DELETE ... WHERE rowid IN (oldest :limit matching rows), so a pass is
# bounded however far behind retention is. Parameters are named; each
# statement uses the ones it needs.
RETENTION_STATEMENTS: tuple[tuple[str, str], ...] = (
    (
        "requests",
        """
        DELETE FROM requests WHERE rowid IN (
            SELECT rowid FROM requests
            WHERE finalized_at < :request_cutoff AND status = 'finalized'
              AND (cost_microdollars <= 0 OR account IS NULL
                   OR finalized_at < :charge_cutoff)
            ORDER BY finalized_at LIMIT :limit)
        """,
    ),
    (
        "attempts",
        """
        DELETE FROM attempts WHERE rowid IN (
            SELECT a.rowid FROM attempts AS a
            WHERE a.ended_at < :request_cutoff
              AND NOT EXISTS (SELECT 1 FROM requests AS r
                              WHERE r.request_id = a.request_id AND r.status = 'pending')
            ORDER BY a.ended_at LIMIT :limit)
        """,
    ),
    (
        "operational_events",
        """
        DELETE FROM operational_events WHERE id IN (
            SELECT id FROM operational_events WHERE at < :event_cutoff
            ORDER BY at LIMIT :limit)
        """,
    ),
    (
        "routing_decisions",
        """
        DELETE FROM routing_decisions WHERE rowid IN (
            SELECT rowid FROM routing_decisions WHERE at < :request_cutoff
            ORDER BY at LIMIT :limit)
        """,
    ),
    (
        "routing_exclusions",
        """
        DELETE FROM routing_exclusions WHERE rowid IN (
            SELECT rowid FROM routing_exclusions WHERE at < :request_cutoff
            ORDER BY at LIMIT :limit)
        """,
    ),
    (
        "account_events",
        """
        DELETE FROM account_events WHERE id IN (
            SELECT id FROM account_events WHERE at < :event_cutoff
            ORDER BY at LIMIT :limit)
        """,
    ),
    *(
        (
            table,
            f"""
            DELETE FROM {table} WHERE hour IN (
                SELECT hour FROM {table} WHERE hour < :hour_rows_cutoff
                ORDER BY hour LIMIT :limit)
            """,
        )
        for table in HOUR_TABLES
    ),
    (
        "backoffs",
        """
        DELETE FROM backoffs WHERE rowid IN (
            SELECT rowid FROM backoffs WHERE until <= :now LIMIT :limit)
        """,
    ),
)


# --- batches ----------------------------------------------------------------------------

Row = tuple[Any, ...]


@attrs.define
class Batch:
    started: list[Row] = attrs.Factory(list)
    attempts: list[Row] = attrs.Factory(list)
    finalized: list[Row] = attrs.Factory(list)
    events: list[Row] = attrs.Factory(list)
    backoffs: list[tuple[bool, list[Row]]] = attrs.Factory(list)  # runs of (is_set, rows)
    account_events: list[Row] = attrs.Factory(list)
    decisions: list[Row] = attrs.Factory(list)
    exclusions: list[Row] = attrs.Factory(list)
    snapshot: str | None = None
    snapshot_digest: bytes | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        if self.started:
            conn.executemany(_INSERT_STARTED, self.started)
        if self.attempts:
            conn.executemany(_INSERT_ATTEMPT, self.attempts)
        if self.finalized:
            conn.executemany(_UPSERT_FINALIZED, self.finalized)
        if self.events:
            conn.executemany(_INSERT_EVENT, self.events)
        for is_set, rows in self.backoffs:
            conn.executemany(_UPSERT_BACKOFF if is_set else _DELETE_BACKOFF, rows)
        if self.account_events:
            conn.executemany(_INSERT_ACCOUNT_EVENT, self.account_events)
        if self.decisions:
            conn.executemany(INSERT_DECISION, self.decisions)
        if self.exclusions:
            conn.executemany(INSERT_EXCLUSION, self.exclusions)
        if self.snapshot is not None:
            conn.execute(_INSERT_SNAPSHOT, (time.time(), self.snapshot))
            conn.execute(_TRIM_SNAPSHOTS)


def prepare_batch(
    records: Sequence[Record], catalog: CatalogChanged | None, last_digest: bytes | None
) -> Batch:
    """Turn records into statement parameters. Raises only for poison records."""
    batch = Batch()
    for record in records:
        match record:
            case RequestStarted():
                batch.started.append(_started_row(record))
            case AttemptEnded():
                batch.attempts.append(_attempt_row(record))
            case RequestFinalized():
                batch.finalized.append(_finalized_row(record))
            case OperationalEvent():
                batch.events.append(
                    (
                        _time(record.at),
                        _text(record.kind, _SHORT_CHARS),
                        _text(record.detail, _DETAIL_CHARS),
                    )
                )
            case BackoffChanged():
                batch.account_events.append(_account_event_row(record))
                is_set, row = _backoff_row(record)
                if batch.backoffs and batch.backoffs[-1][0] == is_set:
                    batch.backoffs[-1][1].append(row)
                else:
                    batch.backoffs.append((is_set, [row]))
            case CatalogChanged():
                catalog = record  # not held normally (coalesced); the latest wins anyway
            case RoutingDecided():
                decision, exclusions = decision_rows(record, _text, _time)
                batch.decisions.append(decision)
                batch.exclusions.extend(exclusions)
            case _:
                assert_never(record)
    if catalog is not None:
        text = json.dumps(dict(catalog.snapshot), separators=(",", ":"))
        digest = hashlib.sha256(text.encode("ascii")).digest()
        if digest != last_digest:
            batch.snapshot, batch.snapshot_digest = text, digest
    return batch


def _started_row(record: RequestStarted) -> Row:
    return (
        _text(record.request_id),
        _time(record.at),
        _text(record.protocol, _SHORT_CHARS),
        _text(record.model),
        int(bool(record.streamed)),
        _text(record.client, _SHORT_CHARS),
        signed64(record.entropy),
        _opt_text(record.session, _SHORT_CHARS),
    )


def signed64(value: int) -> int:
    """A 64-bit unsigned value as SQLite's signed INTEGER (`unsigned64` undoes it)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def unsigned64(value: int) -> int:
    return value & ((1 << 64) - 1)


def _attempt_row(record: AttemptEnded) -> Row:
    return (
        _text(record.attempt_id),
        _text(record.request_id),
        _text(record.account),
        _text(record.provider),
        _time(record.at),
        _opt_int(record.status),
        _opt_text(record.category, _SHORT_CHARS),
        int(bool(record.failover)),
        _real(record.latency),
        _real(record.connect),
        _real(record.head),
        _real(record.retry_after),
    )


def _finalized_row(record: RequestFinalized) -> Row:
    usage = record.usage
    at = _time(record.at)
    latency = _real(record.latency)
    # An unknown id (its start was never stored) gets a start time derived
    # from its latency rather than none at all.
    started = at - latency if latency is not None and math.isfinite(latency) else at
    return (
        _text(record.request_id),
        started,
        _text(record.model),
        int(bool(record.streamed)),
        _text(record.outcome, _SHORT_CHARS),
        clamp_int(record.status),
        _opt_text(record.account),
        _opt_text(record.provider),
        clamp_int(record.attempts),
        clamp_int(usage.input_tokens) if usage else 0,
        clamp_int(usage.cache_read_tokens) if usage else 0,
        clamp_int(usage.cache_write_tokens) if usage else 0,
        clamp_int(usage.output_tokens) if usage else 0,
        clamp_int(usage.reasoning_tokens) if usage else 0,
        int(bool(usage.reasoning_estimated)) if usage else 0,
        _opt_int(usage.cost_microdollars) if usage else None,
        clamp_int(record.cost_microdollars),
        _text(record.exactness, _SHORT_CHARS),
        latency,
        _real(record.ttft),
        at,
    )


def _backoff_row(record: BackoffChanged) -> tuple[bool, Row]:
    key = (_text(record.provider), _text(record.account or ""), _text(record.model or ""))
    until = _real(record.until)
    if until is None:  # ended (or a NaN, which no clock ever reaches)
        return False, key
    row = (*key, _text(record.reason, _SHORT_CHARS), until, _real(record.probe_at), time.time())
    return True, row


def _account_event_row(record: BackoffChanged) -> Row:
    """One line of an account's history: a cooldown set (or lengthened) or ended."""
    until = _real(record.until)
    return (
        _time(record.at),
        _text(record.provider),
        _text(record.account or ""),
        _text(record.model or ""),
        "cooldown" if until is not None else "cooldown_ended",
        _text(record.reason, _SHORT_CHARS),
        until,
    )
