"""The score database: every photo seen, every score computed, every file that failed.

Design notes (why it looks like this):

* **Scores are keyed by content, not by path**: ``(sha256, model, checkpoint_id, preprocess)``.
  A photo that is moved, renamed or copied keeps its score, a different checkpoint or decoding
  policy never reuses a stale one. ``photos`` maps a path (plus size and mtime) to the sha256 it
  had when last read, which is what lets an unchanged file be recognised without opening it.
* **Crash safety over speed**: WAL journal, short write transactions (:class:`BatchWriter` commits
  every few rows or seconds), so Ctrl-C or SIGKILL loses at most the rows in flight.
* **Several writers**: every write is an ``INSERT … ON CONFLICT DO UPDATE`` inside ``BEGIN
  IMMEDIATE`` (which waits on ``busy_timeout`` instead of failing on a lock upgrade), so two runs
  on one database both finish, with no lost rows and no duplicates.
* **Ordered migrations** stamped in ``PRAGMA user_version``; opening an older file upgrades it.

What sqlite-utils does here and what stays raw SQL, on purpose:

* sqlite-utils creates the tables and indexes (the migrations), upserts the checkpoint memo,
  lists and deletes rows for ``charm forget`` and counts rows;
* the transaction itself stays explicit: ``BEGIN IMMEDIATE`` takes the write lock up front (a
  deferred ``BEGIN``, sqlite-utils' ``atomic()``, can fail on the lock upgrade when another
  process writes); sqlite-utils' own writes nest in it as savepoints;
* the per-file writes (:meth:`Store.op_photo`, :meth:`Store.op_score`, …) are prepared
  ``INSERT … ON CONFLICT DO UPDATE`` statements: the pipeline builds them off the lock and a
  :class:`BatchWriter` commits many in one transaction, and ``photos.first_seen`` must survive
  an upsert (sqlite-utils' ``upsert`` sets every column it is given);
* the per-file lookups (:meth:`Store.photo_by_path`, :meth:`Store.score_for`) and the ranking
  query of ``top`` are plain SQL: they run once per file or need window functions;
* every value passes :func:`to_db` / :func:`from_db`, because file names that are not UTF-8
  cannot be stored as SQLite text as they are (see below).

This module knows nothing of tensors, images or the CLI: it stores plain values (embeddings
arrive as float16 bytes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

#: Seconds a write waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 30.0

#: Columns of ``photos`` that come from EXIF (PhotoMeta field names).
META_COLUMNS = (
    "date_taken",
    "make",
    "model",
    "lens",
    "focal_length",
    "f_number",
    "exposure_time",
    "iso",
    "orientation",
)
PHOTO_COLUMNS = ("path", "size", "mtime_ns", "sha256", "width", "height", *META_COLUMNS, "format")
SCORE_COLUMNS = (
    "sha256",
    "model",
    "checkpoint_id",
    "preprocess",
    "score",
    "outputs",
    "n_tokens",
    "input_width",
    "input_height",
    "token_path",
    "kept_cells",
    "cell_size",
    "embedding",
    "seconds",
)



def _upsert(table: str, columns: Sequence[str], key: Sequence[str], keep: Sequence[str] = ()) -> str:
    """``INSERT … ON CONFLICT(key) DO UPDATE`` of every column but the key and ``keep``."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key and c not in keep)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}"
    )

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


def _params(params: Sequence[Any] | dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
    if isinstance(params, dict):
        return {k: to_db(v) for k, v in params.items()}
    return [to_db(v) for v in params]


def _row(names: Sequence[str], raw: Sequence[Any]) -> dict[str, Any]:
    return {name: from_db(value) for name, value in zip(names, raw, strict=True)}


def now_iso() -> str:
    """UTC timestamp with milliseconds; sorts as text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- migrations ---------------------------------------------------------------------------------
#
# Each schema change is a named step; opening a file whose ``PRAGMA user_version`` is lower runs
# the missing steps in order, inside one ``BEGIN IMMEDIATE`` (so two first runs agree). Tables and
# indexes are created with sqlite-utils; a step must never COMMIT (``executescript`` would).


def _m1_initial(db: sqlite_utils.Database) -> None:
    """photos (a path as last read), scores (by content), failures, and the checkpoint memo."""
    photos = db.create_table(
        "photos",
        {
            "id": int, "path": str, "size": int, "mtime_ns": int, "sha256": str,
            "width": int, "height": int,  # as displayed (EXIF orientation applied)
            "date_taken": str, "make": str, "model": str, "lens": str, "focal_length": float,
            "f_number": float, "exposure_time": float, "iso": int, "orientation": int, "format": str,
            "first_seen": str, "last_seen": str,
        },
        pk="id",
        not_null={"path", "size", "mtime_ns", "sha256", "first_seen", "last_seen"},
    )  # fmt: skip
    photos.create_index(["path"], index_name="photos_path", unique=True)
    photos.create_index(["sha256"], index_name="photos_sha256")
    photos.create_index(["date_taken"], index_name="photos_date_taken")

    scores = db.create_table(
        "scores",
        {
            "id": int, "sha256": str,
            "model": str,  # Charm training set: aadb, para, ...
            "checkpoint_id": str,  # sha256 of the checkpoint file
            "preprocess": str,  # decode policy tag: max1024, native, exact
            "score": float,
            "outputs": str,  # JSON list of floats
            "n_tokens": int, "input_width": int, "input_height": int,
            "token_path": str,  # short | multiscale
            "kept_cells": str,  # JSON [[row, col], ...]
            "cell_size": int,
            "embedding": bytes,  # float16 CLS vector
            "seconds": float, "scored_at": str,
        },
        pk="id",
        not_null={"sha256", "model", "checkpoint_id", "preprocess", "score", "outputs", "kept_cells", "scored_at"},
        defaults={"kept_cells": "[]"},
    )  # fmt: skip
    scores.create_index(["sha256", "model", "checkpoint_id", "preprocess"], index_name="scores_key", unique=True)
    scores.create_index(["model", "score"], index_name="scores_model_score")

    failures = db.create_table(
        "failures",
        {
            "id": int, "path": str, "sha256": str, "reason": str, "kind": str, "size": int, "mtime_ns": int,
            "options": str,  # decode options that failed (retried if they change)
            "failed_at": str,
        },
        pk="id",
        not_null={"path", "reason", "failed_at"},
    )  # fmt: skip
    failures.create_index(["path"], index_name="failures_path", unique=True)

    # What a checkpoint file hashed to, so a fully cached run needs neither torch nor a hash.
    db.create_table(
        "checkpoints",
        {
            "source": str,  # "file:/abs/path" or "hub:aadb"
            "file": str, "size": int, "mtime_ns": int, "checkpoint_id": str, "model": str, "seen_at": str,
        },
        pk="source",
        not_null={"file", "size", "mtime_ns", "checkpoint_id", "model", "seen_at"},
    )  # fmt: skip


def _m2_decisions(db: sqlite_utils.Database) -> None:
    """Issue 14: the rating and label charm last wrote to each photo's XMP sidecar (review, rate).

    Keyed by path, not content: a sidecar belongs to a file, and two copies of one photo can be
    rated differently.
    """
    db.create_table(
        "decisions",
        {
            "path": str,
            "sha256": str,  # the content when decided
            "rating": int,  # XMP convention: -1 rejected, 0 none, 1..5 (NULL unknown)
            "label": str,  # xmp:Label (Green, Red, ...), NULL none
            "source": str,  # review | rate
            "decided_at": str,
        },
        pk="path",
        not_null={"source", "decided_at"},
    )


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` upgrades a database from its index in :data:`MIGRATIONS` to the next."""

    name: str
    apply: Callable[[sqlite_utils.Database], None]


#: Ordered migrations: entry ``i`` upgrades a database from ``user_version == i`` to ``i + 1``.
MIGRATIONS: list[Migration] = [Migration("initial", _m1_initial), Migration("decisions", _m2_decisions)]
SCHEMA_VERSION = len(MIGRATIONS)


# -- rows ---------------------------------------------------------------------------------------


@dataclass
class PhotoRow:
    """One file as last read. ``meta`` holds :data:`META_COLUMNS` (missing keys = unknown)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoreRow:
    """One model's verdict on one file content (no tensors: plain floats and bytes)."""

    sha256: str
    model: str
    checkpoint_id: str
    preprocess: str
    score: float
    outputs: list[float]
    n_tokens: int | None = None
    input_size: tuple[int, int] | None = None
    token_path: str | None = None
    kept_cells: list[tuple[int, int]] = field(default_factory=list)
    cell_size: int | None = None
    embedding: bytes | None = None  #: float16 bytes
    seconds: float | None = None


@dataclass
class FailureRow:
    path: str
    reason: str
    kind: str | None = None
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    options: str | None = None


@dataclass
class TopFilter:
    """Filters of ``charm top``; ``None`` means "no constraint"."""

    model: str
    min_score: float | None = None
    since: str | None = None  #: ISO date prefix, inclusive
    until: str | None = None  #: ISO date prefix, inclusive (``2023`` = through 2023-12-31)
    camera: str | None = None  #: substring of "make model", case-insensitive
    lens: str | None = None
    folder: str | None = None  #: substring of the parent folder path, case-insensitive
    paths: Sequence[str] = ()  #: absolute files or folders the photo must be (under)


_DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([T ]\d{2}(:\d{2}(:\d{2})?)?)?)?)?$")


def check_date(text: str) -> str:
    """Normalise a ``--since/--until`` value (``2023``, ``2023-05``, ``2023-05-31[T12:00]``)."""
    value = text.strip().replace(" ", "T")
    if _DATE_RE.match(value):
        # Every part must exist on a calendar: "2010-13" is no month, not January 2011.
        full = value + "-01-01T00:00:00"[len(value) - 4 :] if len(value) < 19 else value
        try:
            datetime.fromisoformat(full)
            return value
        except ValueError:
            pass
    raise ValueError(f"invalid date {text!r}; use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM")


# -- the store ----------------------------------------------------------------------------------


class Store:
    """One SQLite database. Thread-safe: one connection, every statement under a lock.

    Worker threads only do short lookups; the lock costs microseconds and avoids a connection per
    thread. Transactions are explicit (``isolation_level=None``): reads run in autocommit, writes
    in ``BEGIN IMMEDIATE`` blocks from :meth:`write`.
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

    def __enter__(self) -> Store:
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
            with self.transaction():
                while (current := self.version) < SCHEMA_VERSION:
                    MIGRATIONS[current].apply(self.db)
                    self.conn.execute(f"PRAGMA user_version = {current + 1}")
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

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        with self.lock:
            cursor = self.conn.execute(sql, _params(params))
            row = cursor.fetchone()
            if row is None:
                return None
            return _row([c[0] for c in cursor.description], row)

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            cursor = self.conn.execute(sql, _params(params))
            names = [c[0] for c in cursor.description]
            return [_row(names, row) for row in cursor.fetchall()]

    # -- lookups (cheap; called per file) ----------------------------------------------------

    def photo_by_path(self, path: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM photos WHERE path = ?", (path,))

    def photo_by_sha(self, sha256: str) -> dict[str, Any] | None:
        """Any photo row with this content (for copying dimensions/metadata to a moved file)."""
        return self._one("SELECT * FROM photos WHERE sha256 = ? ORDER BY last_seen DESC LIMIT 1", (sha256,))

    def score_for(self, sha256: str, model: str, checkpoint_id: str, preprocess: str) -> dict[str, Any] | None:
        return self._one(
            "SELECT * FROM scores WHERE sha256 = ? AND model = ? AND checkpoint_id = ? AND preprocess = ?",
            (sha256, model, checkpoint_id, preprocess),
        )

    def failure_for(self, path: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM failures WHERE path = ?", (path,))

    def scores_for_sha(self, sha256: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM scores WHERE sha256 = ? ORDER BY model, scored_at DESC", (sha256,))

    # -- checkpoint identity memo ------------------------------------------------------------

    def recall_checkpoint(self, source: str) -> dict[str, Any] | None:
        """The memo for ``source`` if its file is still there with the same size and mtime."""
        row = self._one("SELECT * FROM checkpoints WHERE source = ?", (source,))
        if row is None:
            return None
        try:
            st = os.stat(row["file"])
        except OSError:
            return None
        if st.st_size != row["size"] or st.st_mtime_ns != row["mtime_ns"]:
            return None
        return row

    def checkpoint_ids(self, model: str) -> list[str]:
        """Every checkpoint the memo has seen for ``model`` (whatever its source), oldest first."""
        rows = self.db.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE model = ? GROUP BY checkpoint_id ORDER BY MIN(seen_at)",
            (model,),
        ).fetchall()
        return [r[0] for r in rows]

    def remember_checkpoint(self, source: str, file: str, checkpoint_id: str, model: str) -> None:
        try:
            st = os.stat(file)
        except OSError:
            return
        row = {"source": source, "file": file, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
               "checkpoint_id": checkpoint_id, "model": model, "seen_at": now_iso()}  # fmt: skip
        with self.transaction():
            self.db["checkpoints"].upsert(_params(row), pk="source")  # type: ignore[union-attr]

    # -- writes ------------------------------------------------------------------------------

    def write(self, ops: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run prepared ``(sql, params)`` operations in one transaction."""
        with self.transaction() as conn:
            for sql, params in ops:
                conn.execute(sql, _params(params))

    @staticmethod
    def op_photo(row: PhotoRow, when: str | None = None) -> tuple[str, Sequence[Any]]:
        when = when or now_iso()
        values = [row.path, row.size, row.mtime_ns, row.sha256, row.width, row.height]
        values += [row.meta.get(c) for c in META_COLUMNS] + [row.format, when, when]
        return _upsert("photos", (*PHOTO_COLUMNS, "first_seen", "last_seen"), ("path",), keep=("first_seen",)), values

    @staticmethod
    def op_seen(path: str, when: str | None = None) -> tuple[str, Sequence[Any]]:
        return "UPDATE photos SET last_seen = ? WHERE path = ?", (when or now_iso(), path)

    @staticmethod
    def op_score(row: ScoreRow, when: str | None = None) -> tuple[str, Sequence[Any]]:
        w, h = row.input_size or (None, None)
        values = [
            row.sha256,
            row.model,
            row.checkpoint_id,
            row.preprocess,
            float(row.score),
            json.dumps([float(v) for v in row.outputs]),
            row.n_tokens,
            w,
            h,
            row.token_path,
            json.dumps([[int(r), int(c)] for r, c in row.kept_cells]),
            row.cell_size,
            row.embedding,
            row.seconds,
            when or now_iso(),
        ]
        key = ("sha256", "model", "checkpoint_id", "preprocess")
        return _upsert("scores", (*SCORE_COLUMNS, "scored_at"), key), values

    @staticmethod
    def op_failure(row: FailureRow, when: str | None = None) -> tuple[str, Sequence[Any]]:
        columns = ("path", "sha256", "reason", "kind", "size", "mtime_ns", "options", "failed_at")
        values = [row.path, row.sha256, row.reason, row.kind, row.size, row.mtime_ns, row.options]
        return _upsert("failures", columns, ("path",)), [*values, when or now_iso()]

    @staticmethod
    def op_clear_failure(path: str) -> tuple[str, Sequence[Any]]:
        return "DELETE FROM failures WHERE path = ?", (path,)

    @staticmethod
    def op_drop_photo(path: str) -> tuple[str, Sequence[Any]]:
        """A file that changed and now fails no longer has the content its row describes."""
        return "DELETE FROM photos WHERE path = ?", (path,)

    # -- queries for the CLI -----------------------------------------------------------------

    def models_scored(self) -> list[tuple[str, int]]:
        """Models with scores, most photos first."""
        rows = self._all(
            "SELECT s.model AS model, COUNT(DISTINCT p.path) AS n FROM scores s "
            "JOIN photos p ON p.sha256 = s.sha256 GROUP BY s.model ORDER BY n DESC, s.model"
        )
        return [(r["model"], r["n"]) for r in rows]

    def iter_ranked(self, flt: TopFilter, *, embeddings: bool = False) -> Iterator[dict[str, Any]]:
        """Photos with their latest score for ``flt.model``, best first (ties: by path).

        The latest score per content wins when a photo was scored under several checkpoints or
        decode policies. Filters other than ``folder`` run in SQL; rows stream, so callers can
        stop after N (and skip files that have vanished) without loading the whole library.
        ``embeddings`` adds that score's float16 CLS vector as ``embedding`` (bytes or None).
        """
        where = ["l.rn = 1"]
        params: dict[str, Any] = {"model": flt.model}
        if flt.min_score is not None:
            where.append("l.score >= :min_score")
            params["min_score"] = flt.min_score
        if flt.since:
            where.append("p.date_taken >= :since")
            params["since"] = check_date(flt.since)
        if flt.until:
            until = check_date(flt.until)
            where.append("substr(p.date_taken, 1, :until_len) <= :until")
            params.update(until=until, until_len=len(until))
        if flt.camera:
            where.append("instr(lower(coalesce(p.make, '') || ' ' || coalesce(p.model, '')), lower(:camera)) > 0")
            params["camera"] = flt.camera
        if flt.lens:
            where.append("instr(lower(coalesce(p.lens, '')), lower(:lens)) > 0")
            params["lens"] = flt.lens
        if flt.paths:
            alternatives = []
            for i, prefix in enumerate(flt.paths):
                exact, under = f"p{i}", f"u{i}"
                params[exact] = prefix.rstrip(os.sep) or os.sep
                params[under] = params[exact].rstrip(os.sep) + os.sep
                alternatives.append(f"p.path = :{exact} OR substr(p.path, 1, length(:{under})) = :{under}")
            where.append("(" + " OR ".join(alternatives) + ")")
        sql = f"""
            WITH l AS (
                SELECT s.*, ROW_NUMBER() OVER (
                    PARTITION BY s.sha256 ORDER BY s.scored_at DESC, s.id DESC) AS rn
                FROM scores s WHERE s.model = :model
            )
            SELECT p.*, l.score AS score, l.model AS charm_model, l.checkpoint_id AS checkpoint_id,
                   l.preprocess AS preprocess, l.scored_at AS scored_at{", l.embedding AS embedding" if embeddings else ""}
            FROM photos p JOIN l ON l.sha256 = p.sha256
            WHERE {" AND ".join(where)}
            ORDER BY l.score DESC, p.path
        """
        folder = flt.folder.lower() if flt.folder else None
        with self.lock:
            cursor = self.conn.execute(sql, _params(params))
            names = [c[0] for c in cursor.description]
            rows = cursor.fetchall()  # fetched under the lock; filtering below is lock-free
        for raw in rows:
            row = _row(names, raw)
            if folder is not None and folder not in os.path.dirname(row["path"]).lower():
                continue
            yield row

    def model_scores(self, model: str) -> list[float]:
        """The latest ``model`` score of every photo row (one per path, as :meth:`iter_ranked` ranks
        them): the reference distribution for library percentiles ("calibrated scores")."""
        with self.lock:
            rows = self.conn.execute(
                """
                WITH l AS (
                    SELECT s.sha256, s.score, ROW_NUMBER() OVER (
                        PARTITION BY s.sha256 ORDER BY s.scored_at DESC, s.id DESC) AS rn
                    FROM scores s WHERE s.model = ?
                )
                SELECT l.score FROM photos p JOIN l ON l.sha256 = p.sha256 WHERE l.rn = 1
                """,
                (model,),
            ).fetchall()
        return [r[0] for r in rows]

    def stats(self) -> dict[str, Any]:
        """Counts for ``charm stats``."""
        with self.lock:
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        photos = self._one("SELECT COUNT(*) AS n, COUNT(DISTINCT sha256) AS unique_content FROM photos") or {}
        per_model = self._all(
            """
            SELECT s.model AS model, COUNT(DISTINCT s.sha256) AS contents,
                   COUNT(DISTINCT s.checkpoint_id) AS checkpoints,
                   COUNT(DISTINCT s.preprocess) AS preprocess_policies,
                   (SELECT COUNT(*) FROM photos p WHERE p.sha256 IN
                        (SELECT sha256 FROM scores s2 WHERE s2.model = s.model)) AS photos,
                   AVG(s.score) AS mean_score, MIN(s.score) AS min_score, MAX(s.score) AS max_score,
                   MAX(s.scored_at) AS last_scored
            FROM scores s GROUP BY s.model ORDER BY s.model
            """
        )
        failures = self._all("SELECT path, reason, kind, size, mtime_ns, failed_at FROM failures ORDER BY path")
        return {
            "db": str(self.path),
            "schema_version": self.version,
            "photos": photos.get("n", 0),
            "unique_content": photos.get("unique_content", 0),
            "scores": self.db["scores"].count,
            "models": per_model,
            "failures": failures,
        }

    def stale_rows(self, under: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """Paths in ``photos`` and ``failures`` whose file no longer exists (optionally under paths)."""

        def wanted(path: str) -> bool:
            if not under:
                return True
            return any(path == u or path.startswith(u.rstrip(os.sep) + os.sep) for u in under)

        with self.lock:
            photos = [from_db(r["path"]) for r in self.db["photos"].rows_where(select="path", order_by="path")]
            failures = [from_db(r["path"]) for r in self.db["failures"].rows_where(select="path", order_by="path")]
        gone = lambda p: wanted(p) and not os.path.lexists(p)  # noqa: E731
        return [p for p in photos if gone(p)], [p for p in failures if gone(p)]

    def forget(self, photo_paths: Sequence[str], failure_paths: Sequence[str]) -> None:
        """Drop rows by path. Scores stay: they are keyed by content and reused if it reappears."""
        doomed = [("photos", p) for p in photo_paths] + [("failures", p) for p in failure_paths]
        for start in range(0, len(doomed), 500):  # short transactions: other writers interleave
            with self.transaction():
                for table, path in doomed[start : start + 500]:
                    self.db[table].delete_where("path = ?", [to_db(path)])

    # issue 14: decisions (rating/label) written to sidecars by `charm review` and `charm rate`

    def record_decisions(self, decisions: Iterable[tuple[str, str | None, int | None, str | None]], source: str) -> None:
        """Store ``(path, sha256, rating, label)`` as what the photo's sidecar now says."""
        when = now_iso()
        sql = _upsert("decisions", ("path", "sha256", "rating", "label", "source", "decided_at"), ("path",))
        self.write((sql, (path, sha, rating, label, source, when)) for path, sha, rating, label in decisions)

    def decisions_for(self, paths: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """path → ``{"rating", "label", "source", "decided_at"}`` (all recorded when ``paths`` is None)."""
        if paths is None:
            rows = self._all("SELECT * FROM decisions")
        else:
            rows = []
            for start in range(0, len(paths), 500):  # stay under SQLite's bound-parameter limit
                chunk = list(paths[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                rows += self._all(f"SELECT * FROM decisions WHERE path IN ({marks})", chunk)
        return {r["path"]: r for r in rows}

    def data_version(self) -> int:
        """Changes whenever another connection (another charm process) commits: a cheap "anything new?"."""
        with self.lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])


class BatchWriter:
    """Queue write operations and commit them every ``max_ops`` rows or ``max_seconds``.

    Small transactions keep a crash from losing more than the last batch and let another process
    interleave its writes; :meth:`flush` (also on ``close``) commits whatever is pending.
    """

    def __init__(self, store: Store, *, max_ops: int = 64, max_seconds: float = 2.0) -> None:
        self.store = store
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.pending: list[tuple[str, Sequence[Any]]] = []
        self.commits = 0
        self._last = time.monotonic()

    def add(self, *ops: tuple[str, Sequence[Any]]) -> None:
        self.pending.extend(ops)
        if len(self.pending) >= self.max_ops or time.monotonic() - self._last >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self.pending:
            return
        ops, self.pending = self.pending, []
        self.store.write(ops)
        self.commits += 1

