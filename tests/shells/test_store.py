"""The SQLite store: migrations, round trips, idempotence, batching, failures, retention.

Every test drives a real SQLite file (or a named in-memory database) through
the public `Store` API and checks rows or `load()` results, never mocks.
Failures are real too: a lock held by another connection beyond
`busy_timeout`, a read-only file, a directory without write permission.
Root ignores file modes, so those run as `nobody` when the suite runs as
root (`unprivileged`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from eggpool.core.config import Config, parse_config
from eggpool.core.effects import (
    AttemptEnded,
    BackoffChanged,
    CatalogChanged,
    OperationalEvent,
    Record,
    RequestFinalized,
    RequestStarted,
)
from eggpool.core.events import Now, StateLoaded, StoredBackoff, StoredCharge, StoredPending
from eggpool.core.usage import Usage
from eggpool.shells._store import CHARGE_HORIZON, LoadedState, Store, StoreError, WriterTiming
from eggpool.shells._store_schema import (
    INT64_MAX,
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaError,
    migrate,
    schema_version,
    unsigned64,
)

DAY = 86400.0
NOW = time.time()


# --- helpers ----------------------------------------------------------------------------


def make_config(path: Path | str, **sections: dict[str, object]) -> Config:
    database: dict[str, object] = {"path": str(path), **sections.pop("database", {})}
    return parse_config({"database": database, **sections}, {})


class Reports:
    """The `report` callback: collects (what, error), thread-safe, waitable."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._cond = threading.Condition()

    def __call__(self, what: str, error: str) -> None:
        with self._cond:
            self.items.append((what, error))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[str, str], bool], timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(predicate(w, e) for w, e in self.items), timeout
            )


@contextlib.contextmanager
def running(config: Config, reports: Reports | None = None, **timing: Any) -> Iterator[Store]:
    store = Store(config, report=reports or Reports(), timing=WriterTiming(**timing))
    store.open()
    store.start()
    try:
        yield store
    finally:
        store.close(timeout=5.0)


def rows(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def read(store: Store, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    db = store.reader()
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def started(rid: str, at: float = NOW, *, model: str = "gpt-x", streamed: bool = True) -> Record:
    return RequestStarted(
        request_id=rid, at=at, protocol="openai", model=model, streamed=streamed, client="10.0.0.2"
    )


def attempt(rid: str, n: int, account: str, at: float = NOW) -> Record:
    return AttemptEnded(
        request_id=rid,
        attempt_id=f"{rid}#{n}",
        account=account,
        provider="prov",
        at=at,
        status=429,
        category="rate_limited",
        failover=True,
        latency=0.2,
    )


def finalized(
    rid: str,
    at: float = NOW,
    *,
    account: str | None = "acct-a",
    cost: int = 1500,
    outcome: str = "completed",
    model: str = "gpt-x",
    usage: Usage | None = None,
    latency: float = 1.25,
    ttft: float | None = 0.3,
) -> Record:
    return RequestFinalized(
        request_id=rid,
        at=at,
        outcome=outcome,
        status=200,
        model=model,
        account=account,
        provider="prov",
        attempts=1,
        usage=usage or Usage(input_tokens=10, output_tokens=5),
        cost_microdollars=cost,
        exactness="exact",
        latency=latency,
        ttft=ttft,
        streamed=True,
    )


def backoff(account: str | None, until: float | None, *, model: str | None = None) -> Record:
    return BackoffChanged(
        provider="prov", account=account, model=model, reason="rate_limited", until=until,
        at=NOW,
    )  # fmt: skip


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as `nobody` when the suite runs as root: root ignores file modes.

    `seteuid` applies to every thread of the process (glibc), the writer included."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory `nobody` can use (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="eggpool-store-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- migrations -------------------------------------------------------------------------


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    return [
        (kind, name, " ".join(sql.split()))
        for kind, name, sql in rows(
            path,
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            " AND name != 'sqlite_sequence' ORDER BY type, name",
        )
    ]


def test_open_creates_the_directory_and_applies_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "usage.sqlite3"
    store = Store(make_config(path), report=Reports())
    assert store.open() == LATEST_VERSION
    store.close()
    applied = rows(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert applied == [(m.version, m.name) for m in MIGRATIONS]
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_wal_off_in_the_config_turns_a_wal_database_back_to_a_rollback_journal(
    tmp_path: Path,
) -> None:
    # open() then close() without start() (what `eggpool migrate` does) must close the
    # connection too: a leaked one kept the database locked against the mode switch.
    path = tmp_path / "usage.sqlite3"
    for wal, mode in ((True, "wal"), (False, "delete")):
        store = Store(make_config(path, database={"wal": wal}), report=Reports())
        store.open()
        store.close()
        assert rows(path, "PRAGMA journal_mode") == [(mode,)]


def test_reopening_an_up_to_date_database_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    for _ in range(2):
        store = Store(make_config(path), report=Reports())
        assert store.open() == LATEST_VERSION
        store.close()
    assert rows(path, "SELECT count(*) FROM schema_migrations") == [(len(MIGRATIONS),)]


@pytest.mark.parametrize("start", range(LATEST_VERSION))
def test_upgrading_from_an_earlier_version_gives_the_fresh_schema(
    tmp_path: Path, start: int
) -> None:
    fresh = tmp_path / "fresh.sqlite3"
    store = Store(make_config(fresh), report=Reports())
    store.open()
    store.close()
    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old, isolation_level=None)
    assert migrate(conn, target=start) == start
    if start >= 1:  # a row written by the old version must survive the upgrade
        conn.execute(
            "INSERT INTO requests (request_id, status, started_at) VALUES ('old', 'pending', 1)"
        )
    conn.close()
    store = Store(make_config(old), report=Reports())
    assert store.open() == LATEST_VERSION
    store.close()
    assert schema_of(old) == schema_of(fresh)
    if start >= 1:
        assert rows(old, "SELECT request_id, status FROM requests") == [("old", "pending")]


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    conn = sqlite3.connect(tmp_path / "usage.sqlite3", isolation_level=None)
    steps = (MIGRATIONS[0], Migration(version=2, name="broken", apply=broken))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, migrations=steps)
    assert schema_version(conn) == 1
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables
    conn.close()


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (999,))
    conn.close()
    with pytest.raises(SchemaError):
        migrate(sqlite3.connect(path, isolation_level=None))
    store = Store(make_config(path), report=Reports())
    with pytest.raises(StoreError, match="newer"):
        store.open()


# --- round trips ------------------------------------------------------------------------


def load_after(path: Path, records: list[Record], now: float = NOW) -> LoadedState:
    """Persist `records`, close, reopen, load: what a restart sees."""
    with running(make_config(path)) as store:
        for record in records:
            store.persist(record)
    store = Store(make_config(path), report=Reports())
    store.open()
    try:
        return store.load(now)
    finally:
        store.close()


def test_pending_requests_come_back_with_their_last_account(tmp_path: Path) -> None:
    loaded = load_after(
        tmp_path / "usage.sqlite3",
        [
            started("done", NOW - 50),
            finalized("done", NOW - 40),
            started("p1", NOW - 30),
            attempt("p1", 1, "acct-a", NOW - 29),
            attempt("p1", 2, "acct-b", NOW - 28),
            started("p2", NOW - 20),
        ],
    )
    assert loaded.pending == (
        StoredPending(request_id="p1", account="acct-b", started_at=NOW - 30),
        StoredPending(request_id="p2", account=None, started_at=NOW - 20),
    )


def test_charges_come_back_dated_by_their_finalization(tmp_path: Path) -> None:
    loaded = load_after(
        tmp_path / "usage.sqlite3",
        [
            started("a", NOW - 100),
            finalized("a", NOW - 90, account="acct-a", cost=1500),
            started("b", NOW - 10 * DAY),
            finalized("b", NOW - 10 * DAY + 5, account="acct-b", cost=700),
            finalized("free", NOW - 5, account="acct-a", cost=0),
            finalized("no-account", NOW - 5, account=None, cost=900),
            finalized("too-old", NOW - CHARGE_HORIZON - 60, account="acct-a", cost=5),
        ],
    )
    assert loaded.charges == (
        StoredCharge(account="acct-b", at=NOW - 10 * DAY + 5, microdollars=700),
        StoredCharge(account="acct-a", at=NOW - 90, microdollars=1500),
    )


def test_every_backoff_change_is_kept_as_an_account_event(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(make_config(path)) as store:
        for record in (
            backoff("acct-a", NOW + 300),
            backoff("acct-a", NOW + 600, model="gpt-x"),
            backoff("acct-a", None),
            backoff("acct-d", math.inf),
        ):
            store.persist(record)
        assert store.flush()
    assert rows(
        path, "SELECT account, model, kind, reason, until FROM account_events ORDER BY id"
    ) == [
        ("acct-a", "", "cooldown", "rate_limited", NOW + 300),
        ("acct-a", "gpt-x", "cooldown", "rate_limited", NOW + 600),
        ("acct-a", "", "cooldown_ended", "rate_limited", None),
        ("acct-d", "", "cooldown", "rate_limited", math.inf),
    ]
    assert {at for (at,) in rows(path, "SELECT at FROM account_events")} == {NOW}


def test_only_running_backoffs_come_back(tmp_path: Path) -> None:
    loaded = load_after(
        tmp_path / "usage.sqlite3",
        [
            backoff("acct-a", NOW + 300),
            backoff("acct-a", NOW + 600, model="gpt-x"),
            backoff(None, NOW + 60),  # the whole provider
            backoff("acct-b", NOW - 1),  # expired
            backoff("acct-c", NOW + 900),
            backoff("acct-c", None),  # cleared
            backoff("acct-d", math.inf),  # until further notice
        ],
    )
    assert set(loaded.backoffs) == {
        StoredBackoff(
            provider="prov", account="acct-a", model=None, reason="rate_limited", until=NOW + 300
        ),
        StoredBackoff(
            provider="prov",
            account="acct-a",
            model="gpt-x",
            reason="rate_limited",
            until=NOW + 600,
        ),
        StoredBackoff(
            provider="prov", account=None, model=None, reason="rate_limited", until=NOW + 60
        ),
        StoredBackoff(
            provider="prov", account="acct-d", model=None, reason="rate_limited", until=math.inf
        ),
    }


def test_the_latest_catalog_snapshot_comes_back_and_few_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(make_config(path)) as store:
        for n in range(6):
            store.persist(CatalogChanged(snapshot={"generation": n, "models": ["m"] * n}))
            assert store.flush()
    loaded = load_after(path, [])
    assert loaded.catalog == {"generation": 5, "models": ["m"] * 5}
    assert rows(path, "SELECT count(*) FROM catalog_snapshots") == [(3,)]


def test_catalog_changes_in_one_batch_are_coalesced_and_repeats_skipped(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(make_config(path), batch_window=0.5) as store:
        for n in range(50):
            store.persist(CatalogChanged(snapshot={"generation": n}))
        assert store.flush()
        store.persist(CatalogChanged(snapshot={"generation": 49}))  # unchanged
        assert store.flush()
    assert rows(path, "SELECT snapshot FROM catalog_snapshots") == [('{"generation":49}',)]


def test_no_catalog_loads_as_none(tmp_path: Path) -> None:
    assert load_after(tmp_path / "usage.sqlite3", []).catalog is None


def test_loaded_state_fills_a_state_loaded_event(tmp_path: Path) -> None:
    loaded = load_after(
        tmp_path / "usage.sqlite3",
        [started("p", NOW - 1), finalized("f", NOW - 1), CatalogChanged(snapshot={"a": 1})],
    )
    event = StateLoaded(
        now=Now(mono=0.0, wall=NOW),
        pending=loaded.pending,
        charges=loaded.charges,
        backoffs=loaded.backoffs,
        catalog=loaded.catalog,
    )
    assert [p.request_id for p in event.pending] == ["p"]
    assert event.catalog == {"a": 1}


# --- idempotence and values -------------------------------------------------------------

REQUEST_COLUMNS = "status, outcome, model, account, cost_microdollars, streamed, finalized_at"


def test_finalization_is_idempotent_and_the_first_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(make_config(path)) as store:
        store.persist(started("r", NOW - 10))
        store.persist(finalized("r", NOW - 5, cost=100, outcome="completed"))
        store.persist(finalized("r", NOW - 1, cost=999, outcome="cancelled"))
        store.persist(started("r", NOW))  # a replayed start does not reopen it
    assert rows(path, f"SELECT {REQUEST_COLUMNS} FROM requests") == [
        ("finalized", "completed", "gpt-x", "acct-a", 100, 1, NOW - 5)
    ]


def test_finalizing_an_unknown_request_stores_it(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(make_config(path)) as store:
        store.persist(finalized("ghost", NOW, latency=2.0))
    assert rows(path, "SELECT status, started_at, finalized_at FROM requests") == [
        ("finalized", NOW - 2.0, NOW)
    ]


def test_crash_recovery_keeps_what_the_start_recorded(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(make_config(path)) as store:
        store.persist(started("r", NOW - 10, model="claude-x", streamed=True))
    # What Pool._state_loaded persists for a pending row after a restart:
    recovery = RequestFinalized(
        request_id="r",
        at=NOW,
        outcome="interrupted",
        status=0,
        model="",
        account=None,
        provider=None,
        attempts=0,
        usage=None,
        cost_microdollars=0,
        exactness="unknown",
        latency=10.0,
        ttft=None,
        streamed=False,
    )
    with running(make_config(path)) as store:
        store.persist(recovery)
    assert rows(path, f"SELECT {REQUEST_COLUMNS} FROM requests") == [
        ("finalized", "interrupted", "claude-x", None, 0, 1, NOW)
    ]


def test_extreme_values_are_clamped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    huge = 10**30
    with running(make_config(path)) as store:
        store.persist(started("r", NOW, model="bad-\udcff-model"))
        store.persist(
            finalized(
                "r",
                NOW,
                model="bad-\udcff-model",
                cost=huge,
                usage=Usage(input_tokens=huge, output_tokens=-huge, cost_microdollars=huge),
                latency=math.nan,
                ttft=math.inf,
            )
        )
        store.persist(OperationalEvent(at=math.nan, kind="test", detail="x" * 100_000))
    assert rows(
        path,
        "SELECT model, cost_microdollars, input_tokens, output_tokens,"
        " provider_cost_microdollars, latency, ttft FROM requests",
    ) == [("bad-?-model", INT64_MAX, INT64_MAX, -(2**63), INT64_MAX, None, math.inf)]
    ((at, length),) = rows(path, "SELECT at, length(detail) FROM operational_events")
    assert math.isfinite(at)
    assert length == 4096
    store = Store(make_config(path), report=Reports())
    store.open()
    assert store.load(NOW).charges == (
        StoredCharge(account="acct-a", at=NOW, microdollars=INT64_MAX),
    )
    store.close()


# --- the write path ---------------------------------------------------------------------


def test_close_writes_everything_persisted_before_it(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    # A batch window far longer than the test: only close() can have written these.
    with running(make_config(path), batch_window=60.0) as store:
        for n in range(1000):
            store.persist(started(f"r{n}"))
        store.persist(OperationalEvent(at=NOW, kind="shutdown", detail="bye"))
    assert rows(path, "SELECT count(*) FROM requests") == [(1000,)]
    assert rows(path, "SELECT kind FROM operational_events") == [("shutdown",)]


def test_records_persisted_before_start_are_written(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    store = Store(make_config(path), report=Reports())
    store.open()
    store.persist(started("early"))
    assert not store.flush(timeout=0.1)  # nothing writes before start()
    store.start()
    assert store.flush()
    assert read(store, "SELECT request_id FROM requests") == [("early",)]
    store.close()


def test_a_record_is_committed_within_the_batch_window(tmp_path: Path) -> None:
    with running(make_config(tmp_path / "usage.sqlite3")) as store:
        store.persist(started("r"))
        began = time.monotonic()
        assert wait_until(lambda: read(store, "SELECT count(*) FROM requests") == [(1,)], 2.0)
        assert time.monotonic() - began < 0.5


def test_persist_after_close_is_refused(tmp_path: Path) -> None:
    store = Store(make_config(tmp_path / "usage.sqlite3"), report=Reports())
    store.open()
    store.start()
    store.close()
    with pytest.raises(StoreError):
        store.persist(started("late"))
    store.close()  # idempotent


def test_the_reader_cannot_write(tmp_path: Path) -> None:
    with running(make_config(tmp_path / "usage.sqlite3")) as store:
        db = store.reader()
        with pytest.raises(sqlite3.OperationalError):
            db.execute("DELETE FROM requests")
        db.close()


def test_an_in_memory_database_is_shared_with_readers(tmp_path: Path) -> None:
    with running(make_config(":memory:")) as store:
        store.persist(started("r"))
        assert store.flush()
        assert read(store, "SELECT request_id FROM requests") == [("r",)]


def test_no_statement_runs_on_the_thread_that_persists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving loop never waits for SQLite: once started, every statement of the
    store's write connection runs on the writer's thread, whatever the load. (How much
    the loop still feels a heavy load is `make bench`'s `store_loop_lag`.)"""
    threads: list[int] = []
    connect = Store._connect

    def traced(store: Store) -> sqlite3.Connection:
        conn = connect(store)
        conn.set_trace_callback(lambda statement: threads.append(threading.get_ident()))
        return conn

    monkeypatch.setattr(Store, "_connect", traced)
    with running(make_config(tmp_path / "usage.sqlite3")) as store:
        del threads[:]  # open() and load() run on the caller's thread, before serving
        for n in range(3000):
            store.persist(started(f"r{n}"))
            store.persist(attempt(f"r{n}", 1, "acct-a"))
            store.persist(finalized(f"r{n}"))
        assert store.flush()
        assert read(store, "SELECT count(*) FROM requests WHERE status = 'finalized'") == [(3000,)]
    assert threads  # the records were written, by someone
    assert threading.get_ident() not in threads


def test_persist_returns_at_once_while_the_database_is_locked(tmp_path: Path) -> None:
    """Another process holding the write lock makes the writer wait, never the caller."""
    path = tmp_path / "usage.sqlite3"
    reports = Reports()
    config = make_config(path, database={"busy_timeout_ms": 60_000})
    with running(config, reports) as store, locked(path) as release:
        persisting = threading.Thread(
            target=lambda: [store.persist(started(f"r{n}")) for n in range(2000)]
        )
        persisting.start()
        persisting.join(timeout=30)  # a minute's busy timeout would hold a blocked caller
        assert not persisting.is_alive()
        assert read(store, "SELECT count(*) FROM requests") == [(0,)]  # still locked out
        release()
        assert store.flush()
        assert read(store, "SELECT count(*) FROM requests") == [(2000,)]
    assert reports.items == []


# --- failures ---------------------------------------------------------------------------


@contextlib.contextmanager
def locked(path: Path) -> Iterator[Callable[[], None]]:
    """Another connection holding the write lock; call the yielded function to release."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")

    def release() -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        conn.close()


def test_a_lock_held_beyond_busy_timeout_is_reported_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    reports = Reports()
    config = make_config(path, database={"busy_timeout_ms": 50})
    with running(config, reports) as store, locked(path) as release:
        store.persist(started("r"))
        assert reports.wait_for(lambda what, error: "locked" in error)
        assert reports.items[0][0] == "RequestStarted"
        release()
        assert store.flush()
        assert read(store, "SELECT request_id FROM requests") == [("r",)]


def test_exhausted_retries_are_reported_and_the_records_kept(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    reports = Reports()
    config = make_config(path, database={"busy_timeout_ms": 20})
    timing = {"retry_delays": (0.01, 0.01), "slow_retry": 0.2}
    with running(config, reports, **timing) as store, locked(path) as release:
        store.persist(started("r"))
        assert reports.wait_for(lambda what, error: "retries exhausted" in error)
        assert read(store, "SELECT count(*) FROM requests") == [(0,)]
        release()
        # No flush (which would retry at once): the slow retry writes it on its own.
        assert wait_until(lambda: read(store, "SELECT count(*) FROM requests") == [(1,)])


def test_the_backlog_held_during_an_outage_is_bounded_and_overflow_reported(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.sqlite3"
    reports = Reports()
    config = make_config(path, database={"busy_timeout_ms": 20})
    with running(config, reports, max_held=5) as store, locked(path) as release:
        store.persist(started("r0"))
        assert reports.wait_for(lambda what, error: "locked" in error)
        for n in range(1, 8):
            store.persist(started(f"r{n}"))
        release()
        assert store.flush()
        assert read(store, "SELECT count(*) FROM requests") == [(5,)]
    assert reports.wait_for(lambda what, error: error.startswith("3 record(s) dropped"))


def test_close_reports_records_it_could_not_write(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    reports = Reports()
    store = Store(make_config(path, database={"busy_timeout_ms": 20}), report=reports)
    store.open()
    store.start()
    with locked(path):
        store.persist(started("r"))
        store.persist(finalized("r"))
        store.close(timeout=0.5)
    lost = {what for what, error in reports.items if "not written before close" in error}
    assert lost == {"RequestStarted", "RequestFinalized"}


def test_a_poison_record_is_dropped_with_a_report_and_the_rest_written(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    reports = Reports()
    with running(make_config(path), reports) as store:
        store.persist(started("a"))
        store.persist(CatalogChanged(snapshot={"not json": object()}))
        store.persist(started("b"))
        assert store.flush()
    assert rows(path, "SELECT request_id FROM requests ORDER BY 1") == [("a",), ("b",)]
    assert [what for what, _ in reports.items] == ["CatalogChanged"]
    assert "dropped" in reports.items[0][1]


@pytest.mark.parametrize("fault", ["read-only file", "read-only directory"])
def test_an_unwritable_database_is_reported_then_written_once_writable(
    shared_dir: Path, fault: str
) -> None:
    directory = shared_dir / "data"
    path = directory / "usage.sqlite3"
    # A journal file per transaction needs a writable directory; the WAL does not.
    config = make_config(path, database={"wal": fault == "read-only file"})
    reports = Reports()
    with unprivileged():
        setup = Store(config, report=Reports())
        setup.open()
        setup.close()
        if fault == "read-only file":
            path.chmod(0o444)
        else:
            directory.chmod(0o555)
        with running(config, reports) as store:
            store.persist(started("r"))
            assert reports.wait_for(lambda what, error: what == "RequestStarted")
            assert not store.flush(timeout=0.2)
            if fault == "read-only file":
                for suffix in ("", "-wal", "-shm"):  # SQLite made its files read-only too
                    with contextlib.suppress(FileNotFoundError):
                        Path(f"{path}{suffix}").chmod(0o644)
            else:
                directory.chmod(0o755)
            assert store.flush()
            assert read(store, "SELECT request_id FROM requests") == [("r",)]
    error = reports.items[0][1]
    assert "readonly" in error or "unable to open" in error


# --- retention --------------------------------------------------------------------------


def retention_config(path: Path, max_rows: int) -> Config:
    return make_config(
        path,
        dashboard={"retain_request_stats_days": 2, "retain_event_days": 3},
        metrics={"cleanup_max_rows_per_pass": max_rows},
    )


def old_and_new_rows() -> list[Record]:
    old = NOW - 5 * DAY
    records: list[Record] = []
    for n in range(250):  # old, free: deletable
        records += [started(f"old{n}", old), attempt(f"old{n}", 1, "acct-a", old)]
        records.append(finalized(f"old{n}", old + 1, cost=0))
    records.append(finalized("old-charge-expired", NOW - CHARGE_HORIZON - DAY, cost=10))
    for n in range(3):  # old but still in the ledger's month: kept
        records.append(finalized(f"charged{n}", old, cost=500))
    for n in range(5):  # never finalized: kept, with their attempts
        records += [started(f"pending{n}", old), attempt(f"pending{n}", 1, "acct-a", old)]
    for n in range(10):
        records += [started(f"new{n}"), finalized(f"new{n}")]
    records += [OperationalEvent(at=old, kind="old", detail="") for _ in range(120)]
    records.append(OperationalEvent(at=NOW, kind="new", detail=""))
    records += [attrs.evolve(backoff("acct-old", None), at=old) for _ in range(3)]
    records += [
        backoff("acct-x", NOW - 10),
        backoff("acct-y", NOW - 5),
        backoff("acct-z", NOW + DAY),  # NOW is taken at import: leave the suite time to run
    ]
    return records


def test_retention_deletes_old_rows_in_bounded_passes(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    with running(retention_config(path, max_rows=100), cleanup_delay=3600.0) as store:
        for record in old_and_new_rows():
            store.persist(record)
        assert store.flush()
        passes = [store.cleanup() for _ in range(4)]
    assert [p["requests"] for p in passes if p] == [100, 100, 51, 0]
    assert [p["attempts"] for p in passes if p] == [100, 100, 50, 0]
    assert [p["operational_events"] for p in passes if p] == [100, 20, 0, 0]
    assert [p["backoffs"] for p in passes if p] == [2, 0, 0, 0]
    assert [p["account_events"] for p in passes if p] == [3, 0, 0, 0]
    kept = {rid for (rid,) in rows(path, "SELECT request_id FROM requests")}
    assert kept == (
        {f"pending{n}" for n in range(5)}
        | {f"charged{n}" for n in range(3)}
        | {f"new{n}" for n in range(10)}
    )
    assert rows(path, "SELECT request_id FROM attempts ORDER BY 1") == [
        (f"pending{n}",) for n in range(5)
    ]
    assert rows(path, "SELECT kind FROM operational_events") == [("new",)]
    assert rows(path, "SELECT account FROM backoffs") == [("acct-z",)]
    assert rows(path, "SELECT account FROM account_events ORDER BY id") == [
        ("acct-x",),
        ("acct-y",),
        ("acct-z",),
    ]


def test_retention_runs_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    store = Store(
        retention_config(path, max_rows=40),
        report=Reports(),
        timing=WriterTiming(cleanup_delay=0.0, cleanup_followup=0.01),
    )
    store.open()
    for record in old_and_new_rows():  # queued before start: the first pass finds them
        store.persist(record)
    store.start()
    try:
        assert wait_until(
            lambda: (
                read(store, "SELECT count(*) FROM requests") == [(18,)]
                and read(store, "SELECT count(*) FROM operational_events") == [(1,)]
            )
        )
    finally:
        store.close()


def test_a_requests_entropy_and_session_are_kept_for_replay(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    big = (1 << 64) - 5  # above SQLite's signed range
    with running(make_config(path)) as store:
        store.persist(
            RequestStarted(
                request_id="r1", at=NOW, protocol="openai", model="m", streamed=False,
                client="", entropy=big, session="m\x00abc123",
            )
        )  # fmt: skip
        store.persist(started("r2"))
        assert store.flush()
    stored = dict(rows(path, "SELECT request_id, entropy FROM requests"))
    assert unsigned64(stored["r1"]) == big
    assert stored["r2"] == 0
    assert rows(path, "SELECT session FROM requests ORDER BY request_id") == [
        ("m\x00abc123",),
        (None,),
    ]


def test_retention_drops_old_hour_rollups_and_keeps_the_days(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    ancient = NOW - 500 * DAY
    with running(retention_config(path, max_rows=100), cleanup_delay=3600.0) as store:
        for record in (started("old", ancient), finalized("old", ancient + 1, cost=0),
                       started("new"), finalized("new")):  # fmt: skip
            store.persist(record)
        assert store.flush()
        passes = [store.cleanup() for _ in range(2)]
    assert [p["request_hours"] for p in passes if p] == [1, 0]
    hours = rows(path, "SELECT hour * 3600 FROM request_hours")
    days = rows(path, "SELECT day * 86400 FROM request_days ORDER BY day")
    assert [hour for (hour,) in hours] == [int(NOW // 3600) * 3600]
    assert [day for (day,) in days] == [int(ancient // DAY) * DAY, int(NOW // DAY) * DAY]
