"""The store's writer thread: one connection, one queue, short batched transactions.

Theory of operation. SQLite allows one writer at a time, and a commit is
the expensive part (on a microSD card, each fsync is milliseconds to tens of
milliseconds). So exactly one thread writes, fed by a `queue.SimpleQueue`
that the event loop fills without ever blocking (STYLE rule 13), and it
commits *groups* of records: it takes what is queued, waits up to
`batch_window` (50 ms) for more, and commits them all in one `BEGIN
IMMEDIATE` transaction. A record is therefore committed within about
50 ms of `persist`, and a burst of thousands costs a handful of commits.
`IMMEDIATE` takes the write lock up front, so lock waits happen (bounded by
`busy_timeout`) before any work, never as a failed lock upgrade half way.
Parameters are prepared before the transaction opens, to keep the lock
short. Nothing else ever writes, and the event loop never waits for a lock:
the reference's convoy of requests behind SQLite locks
(reference-features.md section 12) cannot form.

Order. Records are taken in the order they were persisted and chunks of
`max_batch` are prefixes of that order, so a request's start is never
committed after its finalization. Inside a transaction the statements are
grouped by kind (`_store_schema.prepare_batch`). `CatalogChanged` is
coalesced: only the latest matters, and one identical to the last one
written is not written again (wear). What each record becomes, and why
replays are harmless, is `_store_schema`'s business.

Failures. A batch that fails for a reason that may pass (locked beyond
`busy_timeout`, read-only file, disk full, I/O error) is rolled back, the
connection is dropped (a file that became writable again needs a fresh
open: SQLite falls back to read-only at open time and stays so), `report`
is told, and the same records are retried after `retry_delays` (50 ms
growing to 10 s). When those are exhausted `report` says so and the
records stay held in memory, retried every `slow_retry` seconds and once
more at close; nothing is dropped silently. Memory is bounded: beyond
`max_held` records, new ones are dropped and counted, and the count is
reported. A failure that retrying cannot fix (a value SQLite refuses, a
catalog that is not JSON) is a poison record: the batch is retried one
record at a time and only the poison one is dropped, with a report, so one
bad record can never block the queue.

Retention runs on this thread too (it is a writer), every
`cleanup_interval_s`, the first time `cleanup_delay` after start: one pass
deletes at most `max_rows` rows per table, each table in its own short
transaction, oldest first; while a pass hits that cap the next one follows
after `cleanup_followup` instead of a full interval, so queued records get
in between. Pending requests are never deleted, nor the attempts of one,
and a request that carries a charge is kept at least as long as the
ledger's monthly window needs it (`charge_seconds`), whatever
`retain_request_stats_days` says, so quota accounting survives a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import attrs

from eggpool.core.effects import CatalogChanged, Record
from eggpool.shells._store_rollups import HOUR_ROWS_DAYS
from eggpool.shells._store_schema import RETENTION_STATEMENTS, prepare_batch

__all__ = ["Retention", "Writer", "WriterTiming", "describe"]


@attrs.frozen(kw_only=True)
class WriterTiming:
    """The writer's clock settings. Defaults suit production; tests shorten them."""

    batch_window: float = 0.05  # the longest a correctness record waits for company
    max_batch: int = 2000  # records per transaction, so one never holds the lock long
    retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    slow_retry: float = 60.0  # once retry_delays are exhausted
    max_held: int = 100_000  # records kept in memory while the database refuses writes
    cleanup_delay: float = 60.0  # first retention pass after start (not during startup)
    cleanup_followup: float = 1.0  # next pass when the last one hit max_rows


@attrs.frozen(kw_only=True)
class Retention:
    request_seconds: float
    event_seconds: float
    charge_seconds: float  # charge-bearing requests are kept at least this long
    max_rows: int  # per table per pass
    interval: float


# --- errors -----------------------------------------------------------------------------

# Retrying cannot fix these: the record itself is at fault (or our code is).
_POISON = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)


def describe(exc: BaseException) -> str:
    code = getattr(exc, "sqlite_errorname", None)
    kind = type(exc).__name__ + (f" ({code})" if code else "")
    return f"{kind}: {exc}"


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled back already (e.g. SQLITE_FULL): the original error matters.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


# --- control messages -------------------------------------------------------------------


class _Flush:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class _Cleanup:
    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: dict[str, int] | None = None


class _Stop:
    __slots__ = ("deadline",)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


_Item = Record | _Flush | _Cleanup | _Stop
_CATALOG = CatalogChanged.__name__


class Writer:
    """Owns the write connection once started; every method but `_run` and its helpers
    is called from other threads and only touches the queue."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        connect: Callable[[], sqlite3.Connection],
        retention: Retention,
        timing: WriterTiming,
        report: Callable[[str, str], None],
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._connect = connect
        self._retention = retention
        self._timing = timing
        self._report = report
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Below: the writer thread's own state.
        self._held: list[Record] = []
        self._catalog: CatalogChanged | None = None
        self._catalog_digest: bytes | None = None
        self._dropped: Counter[str] = Counter()
        self._waiters: list[_Flush] = []
        self._cleanups: list[_Cleanup] = []
        self._stop: _Stop | None = None
        self._kick = False  # a control message asks for a write attempt now
        self._window_end = 0.0
        self._failures = 0
        self._retry_at: float | None = None
        self._last_error = ""
        self._next_cleanup = math.inf

    # -- other threads -------------------------------------------------------------------

    def remember_catalog(self, text: str) -> None:
        """The snapshot text already stored (call before `start`): not written again."""
        self._catalog_digest = hashlib.sha256(text.encode("utf-8")).digest()

    def start(self) -> None:
        self._next_cleanup = time.monotonic() + self._timing.cleanup_delay
        self._thread = threading.Thread(target=self._run, name="eggpool-store-writer", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def put(self, item: Record) -> None:
        self._queue.put(item)

    def idle(self) -> bool:
        """Nothing queued (meaningful only before `start`)."""
        return self._queue.empty()

    def flush(self, timeout: float) -> bool:
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout) and marker.ok

    def cleanup(self, timeout: float) -> dict[str, int] | None:
        marker = _Cleanup()
        self._queue.put(marker)
        marker.done.wait(timeout)
        return marker.result

    def stop(self, timeout: float) -> bool:
        """Write what is queued (retrying until shortly before `timeout`), then exit.
        True when the thread has ended."""
        thread = self._thread
        if thread is None:  # never started: only the connection to close
            self._close_connection()
            return True
        self._queue.put(_Stop(time.monotonic() + timeout * 0.9))
        thread.join(timeout)
        return not thread.is_alive()

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    if self._step():
                        return
                except Exception as exc:  # a bug here must not kill the thread and its records
                    self._tell("Store", f"writer error: {describe(exc)}")
                    self._close_connection()
                    if self._stop is not None:
                        self._finish()
                        return
                    time.sleep(0.1)
        finally:
            self._close_connection()

    def _step(self) -> bool:
        """One turn: wait for work or a timer, write if due, clean up if idle. True: done."""
        self._wait_and_take()
        now = time.monotonic()
        if self._has_work():
            if self._retry_at is not None:
                due = now >= self._retry_at
            else:
                due = now >= self._window_end or len(self._held) >= self._timing.max_batch
            if due or self._kick:
                self._write()
        self._kick = False
        if self._has_work():
            self._answer_cleanups(None)  # no retention while records wait for the database
        else:
            self._release_waiters(ok=True)
            self._maybe_clean()
        if self._stop is not None:
            self._finish()
            return True
        return False

    def _has_work(self) -> bool:
        return bool(self._held) or self._catalog is not None

    def _wait_and_take(self) -> None:
        if self._kick:
            timeout = 0.0
        elif self._has_work():
            wake = self._retry_at if self._retry_at is not None else self._window_end
            timeout = wake - time.monotonic()
        else:
            timeout = self._next_cleanup - time.monotonic()
        try:
            item = self._queue.get(timeout=min(max(timeout, 0.0), 3600.0))
        except queue.Empty:
            return
        self._take(item)
        # Take what else is there without waiting, bounded so a flood still commits.
        for _ in range(self._timing.max_batch):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._take(item)

    def _take(self, item: _Item) -> None:
        if isinstance(item, _Flush):
            self._waiters.append(item)
            self._kick = True
            return
        if isinstance(item, _Cleanup):
            self._cleanups.append(item)
            self._kick = True
            return
        if isinstance(item, _Stop):
            self._stop = item
            self._kick = True
            return
        if not self._has_work():
            self._window_end = time.monotonic() + self._timing.batch_window
        if isinstance(item, CatalogChanged):
            self._catalog = item
        elif len(self._held) < self._timing.max_held:
            self._held.append(item)
        else:
            self._dropped[type(item).__name__] += 1

    # -- writing -------------------------------------------------------------------------

    def _write(self, *, quiet: bool = False) -> bool:
        """Commit everything held, in chunks. False (records still held) on a failure."""
        while self._has_work():
            count = min(len(self._held), self._timing.max_batch)
            chunk = self._held[:count]
            catalog = self._catalog if count == len(self._held) else None
            try:
                try:
                    self._commit(chunk, catalog)
                except _POISON:
                    self._commit_singly(count, catalog)
                    continue
            except Exception as exc:
                self._failed(exc, quiet=quiet)
                return False
            del self._held[:count]
            if catalog is not None:
                self._catalog = None
        self._failures, self._retry_at = 0, None
        self._report_dropped()  # the backlog overflowed during the outage that just ended
        return True

    def _commit(self, records: Sequence[Record], catalog: CatalogChanged | None) -> None:
        batch = prepare_batch(records, catalog, self._catalog_digest)
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            batch.apply(conn)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if batch.snapshot_digest is not None:
            self._catalog_digest = batch.snapshot_digest

    def _commit_singly(self, count: int, catalog: CatalogChanged | None) -> None:
        """A chunk held a poison record: write one by one, dropping (and reporting) only
        the records that fail on their own. A transient failure propagates, leaving the
        records not yet written at the head of `_held`."""
        done = 0
        try:
            for record in self._held[:count]:
                try:
                    self._commit([record], None)
                except _POISON as exc:
                    self._tell(
                        type(record).__name__, f"dropped, cannot be stored: {describe(exc)}"
                    )
                done += 1
        finally:
            del self._held[:done]
        if catalog is not None:
            try:
                self._commit([], catalog)
            except _POISON as exc:
                self._tell(_CATALOG, f"dropped, cannot be stored: {describe(exc)}")
            self._catalog = None

    def _failed(self, exc: Exception, *, quiet: bool) -> None:
        # Reopen next time: a connection opened on a read-only file stays read-only.
        self._close_connection()
        self._last_error = describe(exc)
        self._failures += 1
        delays = self._timing.retry_delays
        if self._failures <= len(delays):
            delay = delays[self._failures - 1]
            note = f"retry {self._failures} of {len(delays)} in {delay:g} s"
        else:
            delay = self._timing.slow_retry
            note = (
                f"retries exhausted: kept in memory (up to {self._timing.max_held} records), "
                f"retried every {delay:g} s and at close"
            )
        self._retry_at = time.monotonic() + delay
        if quiet:
            return
        for name, count in self._held_counts().items():
            self._tell(name, f"{self._last_error}; {count} record(s) waiting, {note}")
        self._report_dropped()

    def _report_dropped(self) -> None:
        for name, count in self._dropped.items():
            self._tell(
                name,
                f"{count} record(s) dropped: the in-memory backlog was full "
                f"({self._timing.max_held} records) while writes were failing",
            )
        self._dropped.clear()

    def _held_counts(self) -> Counter[str]:
        counts = Counter(type(record).__name__ for record in self._held)
        if self._catalog is not None:
            counts[_CATALOG] += 1
        return counts

    # -- retention -----------------------------------------------------------------------

    def _maybe_clean(self) -> None:
        now = time.monotonic()
        scheduled = now >= self._next_cleanup
        if not (scheduled or self._cleanups):
            return
        result = self._clean_pass()
        self._answer_cleanups(result)
        if scheduled:
            full = result is not None and max(result.values()) >= self._retention.max_rows
            pause = self._timing.cleanup_followup if full else self._retention.interval
            self._next_cleanup = time.monotonic() + pause

    def _clean_pass(self) -> dict[str, int] | None:
        retention, now = self._retention, time.time()
        params: Mapping[str, float | int] = {
            "now": now,
            "request_cutoff": now - retention.request_seconds,
            "charge_cutoff": now - max(retention.request_seconds, retention.charge_seconds),
            "event_cutoff": now - retention.event_seconds,
            "hour_rows_cutoff": int((now - HOUR_ROWS_DAYS * 86400) // 3600),
            "limit": retention.max_rows,
        }
        counts: dict[str, int] = {}
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            for table, statement in RETENTION_STATEMENTS:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    cursor = conn.execute(statement, params)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                counts[table] = max(cursor.rowcount, 0)
        except Exception as exc:
            self._close_connection()
            self._tell("retention", describe(exc))
            return None
        return counts

    def _answer_cleanups(self, result: dict[str, int] | None) -> None:
        for marker in self._cleanups:
            marker.result = result
            marker.done.set()
        self._cleanups.clear()

    # -- ending --------------------------------------------------------------------------

    def _finish(self) -> None:
        """Close: write everything (retrying until the deadline), then report what is lost."""
        assert self._stop is not None
        deadline = self._stop.deadline
        while True:  # stragglers persisted while close() was being called
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Stop):
                self._take(item)
        attempt = 0
        while self._has_work() and not self._write(quiet=True):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0, remaining))
            attempt += 1
        ok = not self._has_work()
        if not ok:
            for name, count in self._held_counts().items():
                self._tell(name, f"{count} record(s) not written before close: {self._last_error}")
            self._held.clear()
            self._catalog = None
        self._report_dropped()
        self._release_waiters(ok=ok)
        self._answer_cleanups(None)

    def _release_waiters(self, *, ok: bool) -> None:
        for marker in self._waiters:
            marker.ok = ok
            marker.done.set()
        self._waiters.clear()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # a broken connection: nothing to save
                conn.close()

    def _tell(self, what: str, error: str) -> None:
        with contextlib.suppress(Exception):  # the callback's failure must not stop the writer
            self._report(what, error)
