"""The SQLite connection: opening, the write transaction, value escaping, and applying migrations.

Design notes (why it looks like this):

* **Crash safety over speed**: WAL journal, short write transactions (the store's ``BatchWriter``
  commits every few rows or seconds), so Ctrl-C or SIGKILL loses at most the rows in flight.
* **Several writers**: every write runs inside ``BEGIN IMMEDIATE`` (which waits on
  ``busy_timeout`` instead of failing on a lock upgrade, as sqlite-utils' deferred ``atomic()``
  can when another process writes), so two runs on one database both finish.
* **Ordered migrations** (:mod:`.migrations`) stamped in ``PRAGMA user_version``; opening an
  older file upgrades it.
* every value passes :func:`to_db` / :func:`from_db`, because file names that are not UTF-8
  cannot be stored as SQLite text as they are (see below).

This module knows no table: what the tables hold and how they are queried lives in
:mod:`.tables`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from charmcli.store.migrations import SCHEMA_VERSION, upgrade

#: Seconds a write waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30.0


class StoreError(Exception):
    """The database cannot be opened or used; ``str()`` is one line for the user."""


def default_db_path() -> Path:
    """``$CHARM_DB``, else ``<user data dir>/charm/charm.db`` (platformdirs)."""
    env = os.environ.get("CHARM_DB")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("charm", appauthor=False)) / "charm.db"


# Names that are not valid UTF-8 reach Python as lone surrogates (``os.fsdecode``'s
# surrogateescape), which SQLite's UTF-8 text cannot hold. Such strings are stored with every
# surrogate written as U+FFFF + chr(0x10000 + code point) and a literal U+FFFF doubled; every
# lookup and row goes through these two functions, so callers only ever see the real path.
_ESC = "\uffff"
_NEEDS_ESCAPE = re.compile("[\ud800-\udfff\uffff]")
_ESCAPED = re.compile("\uffff(.)", re.S)


def _esc_match(m: re.Match[str]) -> str:
    c = m.group()
    return _ESC + (_ESC if c == _ESC else chr(0x10000 + ord(c)))


def _unesc_match(m: re.Match[str]) -> str:
    c = m.group(1)
    if c == _ESC:
        return _ESC
    return chr(ord(c) - 0x10000) if 0x1D800 <= ord(c) <= 0x1DFFF else m.group()


def to_db(value: Any) -> Any:
    """A parameter as SQLite can store it (see above); anything but such strings is unchanged."""
    if type(value) is str and _NEEDS_ESCAPE.search(value):
        return _NEEDS_ESCAPE.sub(_esc_match, value)
    return value


def from_db(value: Any) -> Any:
    if type(value) is str and _ESC in value:
        return _ESCAPED.sub(_unesc_match, value)
    return value


Params = Sequence[Any] | dict[str, Any]


def db_params(params: Params) -> Params:
    if isinstance(params, dict):
        return {k: to_db(v) for k, v in params.items()}
    return [to_db(v) for v in params]


def db_row(names: Sequence[str], raw: Sequence[Any]) -> dict[str, Any]:
    return {name: from_db(value) for name, value in zip(names, raw, strict=True)}


def now_iso() -> str:
    """UTC timestamp with milliseconds; sorts as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Database:
    """One SQLite file. Thread-safe: one connection, every statement under a lock.

    Worker threads only do short lookups; the lock costs microseconds and avoids a connection per
    thread. Transactions are explicit (``isolation_level=None``): reads run in autocommit, writes
    in ``BEGIN IMMEDIATE`` blocks from :meth:`transaction`.
    """

    def __init__(self, path: os.PathLike[str] | str, *, timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from None
        try:
            self.conn = sqlite3.connect(
                str(path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            # A filesystem without shared memory refuses WAL; the rollback journal still works.
            with contextlib.suppress(sqlite3.OperationalError):
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self.lock = threading.RLock()
        self.db = sqlite_utils.Database(self.conn)
        self._migrate()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Apply pending migrations; re-checked under the write lock so two first runs agree."""
        try:
            if self.version >= SCHEMA_VERSION:
                if self.version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} was written by a newer charm (schema {self.version} > "
                        f"{SCHEMA_VERSION}); upgrade charm or use another --db"
                    )
                return
            with self.transaction():  # the version is read again under the lock: two first runs agree
                upgrade(self.db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use database {self.path}: {exc}") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error), holding the thread lock."""
        with self.lock:
            try:  # BEGIN inside the try: a Ctrl-C right after it must not leave a transaction open
                self.conn.execute("BEGIN IMMEDIATE")
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # not after a failed BEGIN, nor SQLite's own rollback
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # -- reads -------------------------------------------------------------------------------

    def one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        with self.lock:
            cursor = self.conn.execute(sql, db_params(params))
            row = cursor.fetchone()
            if row is None:
                return None
            return db_row([c[0] for c in cursor.description], row)

    def all(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        with self.lock:
            cursor = self.conn.execute(sql, db_params(params))
            names = [c[0] for c in cursor.description]
            return [db_row(names, row) for row in cursor.fetchall()]

    def data_version(self) -> int:
        """Changes whenever another connection (another charm process) commits: a cheap "anything new?"."""
        with self.lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])
