"""The store: SQLite persistence of the core's records, off the event loop.

Theory of operation. The core emits `Persist(record)` effects; the shells
hand each record to `Store.persist`, which only enqueues it (never blocks,
safe from any thread). One writer thread (`_store_writer.Writer`) owns the
one write connection and commits records in short batched transactions;
everything else reads on connections of its own (`reader()`), which WAL
lets run beside the writer without blocking it (docs/architecture.md
sections 4 and 5, STYLE rule 13). A single writer is also why there is no
lock convoy: the event loop never waits on SQLite.

Lifecycle, as the shell drives it (the blocking calls in a worker thread):

1. `open()` creates the file (and its directory), sets the pragmas and
   applies the numbered migrations (`_store_schema`), returning the version;
2. `load(now_wall)` reads what `StateLoaded` needs: the requests still
   pending (the previous run died before finalizing them; the Pool marks
   them interrupted), the charges that still count in the ledger's windows,
   the backoffs still running, and the latest catalog snapshot;
3. `start()` starts the writer; `persist()` from then on (records persisted
   earlier wait in the queue);
4. `flush()` waits until everything queued so far is committed;
5. `close()` writes what is left (retrying for most of its timeout), stops
   the writer, and closes.

Durability (docs/storage.md has the full table): a record is committed
about `batch_window` (50 ms) after `persist`; a clean `close` loses
nothing; a crash of the process loses only what was not yet committed; a
power cut can also lose the last commits the OS had not yet written back,
depending on `[database].synchronous`. Write failures never pass silently:
`report(what, error)` is called (from the writer thread) and the records
are retried (see `_store_writer`).

`":memory:"` (tests, demos) becomes a named shared-cache in-memory database,
so `reader()` connections see the same data; it lives until `close`.
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from eggpool.core.config import Config
from eggpool.core.effects import Record
from eggpool.core.events import StoredBackoff, StoredCharge, StoredPending
from eggpool.core.ledger import BUCKET_SECONDS, WINDOW_SECONDS
from eggpool.shells._store_schema import SchemaError, migrate
from eggpool.shells._store_writer import Retention, Writer, WriterTiming

if TYPE_CHECKING:  # imported by reader(): 3.5 MB of RSS the serving path does not need
    import sqlite_utils

__all__ = ["CHARGE_HORIZON", "LoadedState", "Store", "StoreError", "WriterTiming"]

CHARGE_HORIZON = max(WINDOW_SECONDS) + max(BUCKET_SECONDS)
"""How far back charges matter: the ledger's longest window, plus the one bucket a
charge may outstay it (eggpool/core/ledger.py)."""

_DAY = 86400.0
_WAL_SIZE_LIMIT = 8 << 20  # bytes a checkpointed WAL file is truncated to (small disks)


class StoreError(RuntimeError):
    """The store was used out of order (persist after close, load before open, ...)
    or its database cannot be used (e.g. a newer schema)."""


@attrs.frozen(kw_only=True)
class LoadedState:
    """What `StateLoaded` needs, read at startup: build the event with these fields."""

    pending: tuple[StoredPending, ...] = ()
    charges: tuple[StoredCharge, ...] = ()
    backoffs: tuple[StoredBackoff, ...] = ()
    catalog: Mapping[str, object] | None = None


class Store:
    """SQLite persistence: one writer thread, batched transactions, separate readers."""

    def __init__(
        self,
        config: Config,
        *,
        report: Callable[[str, str], None],
        timing: WriterTiming | None = None,
    ) -> None:
        """`report(what, error)` hears of every write that failed; `what` is the record
        class name ("retention" for a cleanup pass). It is called from the writer thread.
        `timing` overrides the writer's delays (tests)."""
        database = config.database
        self._config = config
        self._report = report
        self._timing = timing or WriterTiming()
        self._memory = database.path == ":memory:"
        self._path = database.path
        # A named shared-cache database, so the writer and the readers see one database.
        self._uri = (
            f"file:eggpool-{secrets.token_hex(8)}?mode=memory&cache=shared"
            if self._memory
            else None
        )
        self._keeper: sqlite3.Connection | None = None  # keeps an in-memory database alive
        self._writer: Writer | None = None
        self._closed = False

    # -- connections ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A write connection with the configured pragmas (the writer reconnects with it)."""
        database = self._config.database
        busy = database.busy_timeout_ms
        # isolation_level=None: the writer issues BEGIN IMMEDIATE / COMMIT itself, and
        # the driver must not open transactions behind its back.
        # check_same_thread=False: opened by open() in one thread, used by the writer.
        if self._uri is not None:
            conn = sqlite3.connect(
                self._uri,
                uri=True,
                timeout=busy / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(
                self._path, timeout=busy / 1000, isolation_level=None, check_same_thread=False
            )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy)}")
            conn.execute(f"PRAGMA synchronous = {database.synchronous.value}")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        except BaseException:
            conn.close()
            raise
        return conn

    def reader(self) -> sqlite_utils.Database:
        """A new read-only connection (stats, dashboard). The caller closes it.

        Usable from any one thread at a time. In WAL mode it never blocks the writer,
        but an unfinished read (an iterator left open) holds back WAL checkpoints,
        so finish reads promptly."""
        import sqlite_utils  # noqa: PLC0415 (see the TYPE_CHECKING import)

        return sqlite_utils.Database(self._read_only(), execute_plugins=False)

    def read_connection(self) -> sqlite3.Connection:
        """A new read-only `sqlite3` connection (the stats). The caller closes it; usable
        from any one thread at a time."""
        return self._read_only()

    @property
    def file(self) -> Path | None:
        """The database file (None for an in-memory database)."""
        return None if self._memory else Path(self._path).expanduser()

    def _read_only(self) -> sqlite3.Connection:
        if self._writer is None and self._keeper is None:
            raise StoreError("open() the store first")
        busy = self._config.database.busy_timeout_ms / 1000
        if self._uri is not None:
            conn = sqlite3.connect(self._uri, uri=True, timeout=busy, check_same_thread=False)
        else:
            absolute = Path(self._path).resolve()
            uri = f"file:{urllib.parse.quote(str(absolute))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=busy, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    # -- startup -------------------------------------------------------------------------

    def open(self) -> int:
        """Open or create the database, set pragmas, migrate; return the schema version.
        Blocking: run it in a worker thread."""
        if self._writer is not None or self._closed:
            raise StoreError("the store is already open (or closed)")
        if self._uri is not None:
            self._keeper = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
        else:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            if not self._memory:
                mode = "wal" if self._config.database.wal else "delete"
                conn.execute(f"PRAGMA journal_mode = {mode}")
            try:
                version = migrate(conn)
            except SchemaError as exc:
                raise StoreError(str(exc)) from exc
        except BaseException:
            conn.close()
            self._close_keeper()
            raise
        self._writer = Writer(
            conn,
            connect=self._connect,
            retention=self._retention(),
            timing=self._timing,
            report=self._report,
        )
        return version

    def _retention(self) -> Retention:
        dashboard, metrics = self._config.dashboard, self._config.metrics
        return Retention(
            request_seconds=dashboard.retain_request_stats_days * _DAY,
            event_seconds=dashboard.retain_event_days * _DAY,
            charge_seconds=CHARGE_HORIZON,
            max_rows=metrics.cleanup_max_rows_per_pass,
            interval=float(metrics.cleanup_interval_s),
        )

    def load(self, now_wall: float) -> LoadedState:
        """What `StateLoaded` needs. Blocking; call after `open()` and before `start()`."""
        writer = self._writer
        if writer is None:
            raise StoreError("open() the store first")
        db = self._read_only()
        try:
            pending = tuple(
                StoredPending(request_id=row[0], account=row[2], started_at=float(row[1]))
                for row in db.execute(_PENDING)
            )
            charges = tuple(
                StoredCharge(account=row[0], at=float(row[1]), microdollars=int(row[2]))
                for row in db.execute(_CHARGES, (now_wall - CHARGE_HORIZON,))
                # a non-finite time would make the ledger refuse the whole state
                if math.isfinite(row[1])
            )
            backoffs = tuple(
                StoredBackoff(
                    provider=row[0],
                    account=row[1] or None,
                    model=row[2] or None,
                    reason=row[3],
                    until=float(row[4]),
                    probe_at=None if row[5] is None else float(row[5]),
                )
                for row in db.execute(_BACKOFFS, (now_wall,))
            )
            catalog, text = None, None
            for (candidate,) in db.execute(_SNAPSHOTS).fetchall():
                parsed = _parse_snapshot(candidate)
                if parsed is not None:
                    catalog, text = parsed, candidate
                    break
        finally:
            db.close()
        if text is not None and not writer.started:
            writer.remember_catalog(text)
        return LoadedState(pending=pending, charges=charges, backoffs=backoffs, catalog=catalog)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        writer = self._writer
        if writer is None:
            raise StoreError("open() the store first")
        if not writer.started:
            writer.start()

    def persist(self, record: Record) -> None:
        """Queue one record for writing. Never blocks; safe from any thread."""
        writer = self._writer
        if writer is None or self._closed:
            # A caller bug (the writer is gone, or was never opened): say so loudly
            # rather than lose the record quietly.
            raise StoreError(f"cannot persist {type(record).__name__}: the store is not open")
        writer.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is committed. Blocking.
        False on timeout, or while writes are failing."""
        writer = self._writer
        if writer is None or self._closed:
            return False
        if not writer.started:
            return writer.idle()
        return writer.flush(timeout)

    def cleanup(self, timeout: float = 10.0) -> Mapping[str, int] | None:
        """Run one retention pass now (at most `cleanup_max_rows_per_pass` rows per
        table); return the rows deleted per table, None if it failed or timed out.
        Blocking. The writer also runs passes on its own every `cleanup_interval_s`."""
        writer = self._writer
        if writer is None or not writer.started or self._closed:
            return None
        return writer.cleanup(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the writer, close. Blocking; idempotent.

        Records that still cannot be written by then are reported as not written.
        If the writer does not stop in time (stuck in a lock wait), it is left to
        finish on its own (it is a daemon thread)."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None:
            if not writer.started and not writer.idle():
                writer.start()  # records persisted before start() must not be lost
            writer.stop(timeout)
        self._close_keeper()

    def _close_keeper(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()


_PENDING = """
SELECT r.request_id, r.started_at,
       COALESCE(r.account, (SELECT a.account FROM attempts AS a
                            WHERE a.request_id = r.request_id
                            ORDER BY a.ended_at DESC, a.rowid DESC LIMIT 1))
FROM requests AS r
WHERE r.status = 'pending'
ORDER BY r.started_at
"""

_CHARGES = """
SELECT account, finalized_at, cost_microdollars FROM requests
WHERE finalized_at >= ? AND status = 'finalized' AND account IS NOT NULL
  AND cost_microdollars > 0
ORDER BY finalized_at
"""

_BACKOFFS = """
SELECT provider, account, model, reason, until, probe_at FROM backoffs
WHERE until > ?
ORDER BY provider, account, model
"""

_SNAPSHOTS = "SELECT snapshot FROM catalog_snapshots ORDER BY id DESC"


def _parse_snapshot(text: object) -> Mapping[str, object] | None:
    """A stored snapshot, or None if it is unreadable (then an older one is tried)."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
