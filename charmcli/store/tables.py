"""The tables' reads and writes: :class:`Store` (rows in, rows out, the SQL inside) and :class:`BatchWriter`.

* **Scores are keyed by content, not by path**: ``(sha256, model, checkpoint_id, preprocess)``.
  A photo that is moved, renamed or copied keeps its score, a different checkpoint or decoding
  policy never reuses a stale one. ``photos`` maps a path (plus size and mtime) to the sha256 it
  had when last read, which is what lets an unchanged file be recognised without opening it.
* Writes are typed rows (:mod:`.rows`) turned into SQL by :mod:`.writes`; rankings read the
  ``latest_scores`` view (the latest score of each content per scoring model).
* sqlite-utils upserts the checkpoint memo, lists and deletes rows for ``charm forget`` and counts
  rows; per-file lookups and the ranking are plain SQL (once per file, or window functions).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

from charmcli.store.db import Database, db_params, db_row, from_db, now_iso, to_db
from charmcli.store.rows import (
    DecisionRow,
    ListedFailure,
    ModelStats,
    RankedPhoto,
    Stats,
    StoredCheckpoint,
    StoredDecision,
    StoredFailure,
    StoredPhoto,
    StoredScore,
    StoredTaste,
    TopFilter,
    WriteRow,
    check_date,
)
from charmcli.store.writes import statement


def parse_measures(text: str | None) -> dict[str, Any] | None:
    """A stored measures column (JSON object of numbers) as a mapping; ``None`` stays ``None``."""
    if not text:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


#: A row with the time to stamp it with (ISO UTC).
Stamped = tuple[WriteRow, str]


class Store(Database):
    """The score database: every photo seen, every score computed, every file that failed."""

    def __enter__(self) -> Store:
        return self

    # -- lookups (cheap; called per file) ----------------------------------------------------

    def photo_by_path(self, path: str) -> StoredPhoto | None:
        return cast("StoredPhoto | None", self.one("SELECT * FROM photos WHERE path = ?", (path,)))

    def photo_by_sha(self, sha256: str) -> StoredPhoto | None:
        """Any photo row with this content (for copying dimensions/metadata to a moved file)."""
        sql = "SELECT * FROM photos WHERE sha256 = ? ORDER BY last_seen DESC LIMIT 1"
        return cast("StoredPhoto | None", self.one(sql, (sha256,)))

    def score_for(
        self, sha256: str, model: str, checkpoint_id: str, preprocess: str, precision: str = "fp32"
    ) -> StoredScore | None:
        sql = ("SELECT * FROM scores WHERE sha256 = ? AND model = ? AND checkpoint_id = ? AND preprocess = ? "
               "AND precision = ?")  # fmt: skip
        return cast("StoredScore | None", self.one(sql, (sha256, model, checkpoint_id, preprocess, precision)))

    def failure_for(self, path: str) -> StoredFailure | None:
        return cast("StoredFailure | None", self.one("SELECT * FROM failures WHERE path = ?", (path,)))

    def measures_for(self, sha256: str, version: str | None = None) -> dict[str, Any] | None:
        """The measures of this content by ``version`` (``None``: the latest of any version), as a
        mapping of numbers, or ``None`` when it was never measured (that way)."""
        if version is None:
            row = self.one("SELECT measures FROM measures WHERE sha256 = ? ORDER BY measured_at DESC LIMIT 1", (sha256,))
        else:
            row = self.one("SELECT measures FROM measures WHERE sha256 = ? AND version = ?", (sha256, version))
        return None if row is None else parse_measures(row["measures"])

    def scores_for_sha(self, sha256: str) -> list[StoredScore]:
        sql = "SELECT * FROM scores WHERE sha256 = ? ORDER BY model, scored_at DESC"
        return cast("list[StoredScore]", self.all(sql, (sha256,)))

    # -- checkpoint identity memo ------------------------------------------------------------

    def recall_checkpoint(self, source: str) -> StoredCheckpoint | None:
        """The memo for ``source`` if its file is still there with the same size and mtime."""
        row = self.one("SELECT * FROM checkpoints WHERE source = ?", (source,))
        if row is None:
            return None
        try:
            st = os.stat(row["file"])
        except OSError:
            return None
        if st.st_size != row["size"] or st.st_mtime_ns != row["mtime_ns"]:
            return None
        return cast("StoredCheckpoint", row)

    def checkpoint_ids(self, model: str) -> list[str]:
        """Every checkpoint the memo has seen for ``model`` (whatever its source), oldest first."""
        rows = self.conn.execute(
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
            self.db["checkpoints"].upsert(db_params(row), pk="source")  # type: ignore[union-attr,arg-type]

    # -- writes ------------------------------------------------------------------------------

    def write(self, rows: Iterable[WriteRow | Stamped], when: str | None = None) -> None:
        """Write typed rows in one transaction, each stamped ``when`` (default: now).

        An item may also be a ``(row, when)`` pair, stamped with its own time (a row queued
        earlier, an imported record replaying the time it was made).
        """
        with self.transaction() as conn:
            for item in rows:
                if isinstance(item, tuple):
                    row, stamp = item
                else:
                    when = when or now_iso()  # one time for the transaction's unstamped rows
                    row, stamp = item, when
                sql, params = statement(row, stamp)
                conn.execute(sql, db_params(params))

    # -- queries for the CLI -----------------------------------------------------------------

    def models_scored(self) -> list[tuple[str, int]]:
        """Scoring models with scores, most photos first."""
        rows = self.all(
            "SELECT s.model AS model, COUNT(DISTINCT p.path) AS n FROM scores s "
            "JOIN photos p ON p.sha256 = s.sha256 GROUP BY s.model ORDER BY n DESC, s.model"
        )
        return [(r["model"], r["n"]) for r in rows]

    def iter_ranked(self, flt: TopFilter, *, embeddings: bool = False) -> Iterator[RankedPhoto]:
        """Photo rows with their latest score for ``flt.model``, best first (ties: by path).

        Each row is the ``photos`` row plus the score's ``score``, ``model`` (the scoring model),
        ``checkpoint_id``, ``preprocess`` and ``scored_at``, and ``measures`` (the content's latest
        technical measures as a mapping, or ``None``). Filters other than ``folder`` run in
        SQL; rows stream, so callers can stop after N (and skip files that have vanished) without
        loading the whole library. ``embedding`` is that score's float16 CLS vector when
        ``embeddings`` is asked for, else None (it is large: a library's worth is megabytes).
        """
        where = ["l.model = :model", "l.precision = :precision"]
        params: dict[str, Any] = {"model": flt.model, "precision": flt.precision}
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
            where.append(
                "instr(lower(coalesce(p.make, '') || ' ' || coalesce(p.camera_model, '')), lower(:camera)) > 0"
            )
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
            SELECT p.*, l.score AS score, l.model AS model, l.checkpoint_id AS checkpoint_id,
                   l.preprocess AS preprocess, l.precision AS precision, l.scored_at AS scored_at, {"l.embedding" if embeddings else "NULL"} AS embedding,
                   (SELECT m.measures FROM measures m WHERE m.sha256 = p.sha256
                    ORDER BY m.measured_at DESC LIMIT 1) AS measures
            FROM photos p JOIN latest_scores l ON l.sha256 = p.sha256
            WHERE {" AND ".join(where)}
            ORDER BY l.score DESC, p.path
        """
        folder = flt.folder.lower() if flt.folder else None
        with self.lock:
            cursor = self.conn.execute(sql, db_params(params))
            names = [c[0] for c in cursor.description]
            rows = cursor.fetchall()  # fetched under the lock; filtering below is lock-free
        for raw in rows:
            row = db_row(names, raw)
            row["measures"] = parse_measures(row["measures"])
            if folder is not None and folder not in os.path.dirname(row["path"]).lower():
                continue
            yield cast(RankedPhoto, row)

    def model_scores(self, model: str, precision: str = "fp32") -> list[float]:
        """The latest ``model`` score at ``precision`` of every photo row (one per path, as
        :meth:`iter_ranked` ranks them): the reference distribution for library percentiles
        ("calibrated scores")."""
        with self.lock:
            rows = self.conn.execute(
                "SELECT l.score FROM photos p JOIN latest_scores l ON l.sha256 = p.sha256 "
                "WHERE l.model = ? AND l.precision = ?",
                (model, precision),
            ).fetchall()
        return [r[0] for r in rows]

    def precisions_scored(self, model: str) -> list[tuple[str, int]]:
        """The precisions ``model`` has scores in, most photos first (ties: fp32 first)."""
        rows = self.all(
            "SELECT s.precision AS precision, COUNT(DISTINCT p.path) AS n FROM scores s "
            "JOIN photos p ON p.sha256 = s.sha256 WHERE s.model = ? GROUP BY s.precision "
            "ORDER BY n DESC, s.precision = 'fp32' DESC, s.precision",
            (model,),
        )
        return [(r["precision"], r["n"]) for r in rows]

    def stats(self) -> Stats:
        """Counts for ``charm stats``."""
        with self.lock:
            return self._stats()

    def _stats(self) -> Stats:
        photos = self.one("SELECT COUNT(*) AS n, COUNT(DISTINCT sha256) AS unique_content FROM photos") or {}
        per_model = self.all(
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
        failures = self.all(f"SELECT {', '.join(ListedFailure.__annotations__)} FROM failures ORDER BY path")
        return {
            "db": str(self.path),
            "schema_version": self.version,
            "photos": photos.get("n", 0),
            "unique_content": photos.get("unique_content", 0),
            "scores": self.db["scores"].count,
            "models": cast("list[ModelStats]", per_model),
            "failures": cast("list[ListedFailure]", failures),
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

    # -- decisions (rating/label) written to sidecars by `charm review` and `charm rate` ----

    def record_decisions(self, decisions: Iterable[tuple[str, str | None, int | None, str | None]], source: str) -> None:
        """Store ``(path, sha256, rating, label)`` as what the photo's sidecar now says."""
        self.write(DecisionRow(path, sha, rating, label, source) for path, sha, rating, label in decisions)

    def decisions_for(self, paths: Sequence[str] | None = None) -> dict[str, StoredDecision]:
        """path → ``{"rating", "label", "source", "decided_at"}`` (all recorded when ``paths`` is None)."""
        if paths is None:
            rows = self.all("SELECT * FROM decisions")
        else:
            rows = []
            for start in range(0, len(paths), 500):  # stay under SQLite's bound-parameter limit
                chunk = list(paths[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                rows += self.all(f"SELECT * FROM decisions WHERE path IN ({marks})", chunk)
        return {r["path"]: cast(StoredDecision, r) for r in rows}

    # -- learned tastes ------------------------------------------------------------------------

    def head_features(self, sha256s: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """sha256 → scoring model → ``{"checkpoint_id", "score", "head_input"}`` of its latest score
        (the head input as float16 bytes, or None where it was not kept)."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        shas = list(dict.fromkeys(sha256s))
        for start in range(0, len(shas), 500):  # stay under SQLite's bound-parameter limit
            chunk = shas[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for r in self.all(
                "SELECT sha256, model, checkpoint_id, score, head_input FROM latest_scores "
                f"WHERE sha256 IN ({marks})", chunk,
            ):  # fmt: skip
                found.setdefault(r.pop("sha256"), {})[r.pop("model")] = r
        return found

    def taste(self, name: str) -> StoredTaste | None:
        """The stored taste ``name``: ``{"name", "data", "ratings", "method", "learned_at"}``, or None."""
        return cast("StoredTaste | None", self.one("SELECT * FROM tastes WHERE name = ?", (name,)))

    def tastes(self) -> list[dict[str, Any]]:
        """Every stored taste (without its bytes), by name."""
        return self.all("SELECT name, ratings, method, learned_at FROM tastes ORDER BY name")


class BatchWriter:
    """Queue typed rows and commit them every ``max_ops`` rows or ``max_seconds``.

    Small transactions keep a crash from losing more than the last batch and let another process
    interleave its writes; :meth:`flush` (also on ``close``) commits whatever is pending. Each row
    is stamped when it is added, not when its batch commits.
    """

    def __init__(self, store: Store, *, max_ops: int = 64, max_seconds: float = 2.0) -> None:
        self.store = store
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.pending: list[Stamped] = []
        self.commits = 0
        self._last = time.monotonic()

    def add(self, *rows: WriteRow) -> None:
        when = now_iso()
        self.pending.extend((row, when) for row in rows)
        if len(self.pending) >= self.max_ops or time.monotonic() - self._last >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        self.store.write(rows)
        self.commits += 1
