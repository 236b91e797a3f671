"""The schema, as an ordered list of named steps (simonw/llm's ``migrations.py`` style).

Adding a schema change = writing one function ``mNNN_what`` above the end of this file and
appending it to :data:`MIGRATIONS`. A database whose ``PRAGMA user_version`` is ``i`` gets steps
``i …`` applied in order by :func:`upgrade`, inside the caller's ``BEGIN IMMEDIATE`` (so two first
runs agree). Tables and indexes are created with sqlite-utils; a step must never COMMIT
(``executescript`` would), and a step, once released, never changes: old files are upgraded by
the steps that follow it. A step may assume exactly the schema the steps before it made.

The steps are plain functions listed in one tuple, not registered by a decorator: the order is
read in one place, and mutation testing (docs/mutation.md) reaches the steps' bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` upgrades a database from its index in :data:`MIGRATIONS` to the next."""

    name: str
    apply: Callable[[sqlite_utils.Database], None]


def m001_initial(db: sqlite_utils.Database) -> None:
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
            "model": str,  # the scoring model: aadb, para, ...
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


def m002_decisions(db: sqlite_utils.Database) -> None:
    """The rating and label charm last wrote to each photo's XMP sidecar (review, rate).

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


def m003_latest_scores(db: sqlite_utils.Database) -> None:
    """``latest_scores``: each content's latest score per scoring model, the one every listing ranks.

    A photo scored under several checkpoints or decode policies keeps every score (they are keyed
    by all four), but rankings and percentiles use only the newest (ties: the later row).
    """
    db.create_view(
        "latest_scores",
        """
        SELECT id, sha256, model, checkpoint_id, preprocess, score, outputs, n_tokens, input_width,
               input_height, token_path, kept_cells, cell_size, embedding, seconds, scored_at
        FROM (
            SELECT s.*, ROW_NUMBER() OVER (
                PARTITION BY s.sha256, s.model ORDER BY s.scored_at DESC, s.id DESC) AS rn
            FROM scores s
        )
        WHERE rn = 1
        """,
    )


def m004_camera_model(db: sqlite_utils.Database) -> None:
    """``photos.model`` → ``photos.camera_model``: ``model`` is the scoring model everywhere else."""
    db.execute("ALTER TABLE photos RENAME COLUMN model TO camera_model")


def m005_measures(db: sqlite_utils.Database) -> None:
    """``measures``: a photo content's technical measures (focus, motion, exposure, faces).

    Keyed by content and by the version of what measured it (the pixel measures and the face
    detector), so an unchanged file is never measured twice and a new detector measures again.
    ``measures`` is a JSON object of numbers (``null`` = not measured); flags are derived from it
    when shown, under limits the user may change.
    """
    db.create_table(
        "measures",
        {"sha256": str, "version": str, "measures": str, "measured_at": str},
        pk=("sha256", "version"),
        not_null={"measures", "measured_at"},
    )


def m006_taste(db: sqlite_utils.Database) -> None:
    """What a learned taste needs: each score's whole head input, and the tastes themselves.

    ``scores.head_input`` (float16; Charm: ``[CLS, mean of patch tokens]``) is what a model fitted
    on top of the network reads; rows scored before this step have none until ``charm score``
    scores the photo again. ``latest_scores`` is re-made to carry it. ``tastes`` holds each
    learned model under its name (a few kilobytes).
    """
    db.execute("ALTER TABLE scores ADD COLUMN head_input BLOB")
    db.execute("DROP VIEW latest_scores")
    db.create_view(
        "latest_scores",
        """
        SELECT id, sha256, model, checkpoint_id, preprocess, score, outputs, n_tokens, input_width,
               input_height, token_path, kept_cells, cell_size, embedding, seconds, scored_at, head_input
        FROM (
            SELECT s.*, ROW_NUMBER() OVER (
                PARTITION BY s.sha256, s.model ORDER BY s.scored_at DESC, s.id DESC) AS rn
            FROM scores s
        )
        WHERE rn = 1
        """,
    )
    db.create_table(
        "tastes",
        {"name": str, "data": bytes, "ratings": int, "method": str, "learned_at": str},
        pk="name",
        not_null={"data", "ratings", "method", "learned_at"},
    )


def m007_score_precision(db: sqlite_utils.Database) -> None:
    """``scores.precision``: the number format the network ran in (fp32, bf16, fp16).

    Part of a score's identity: the unique key gains it, so a bf16 score never answers a lookup
    for fp32 (and the other way round), and ``latest_scores`` keeps the latest score per content,
    scoring model *and* precision, which a ranking then picks one of. Every earlier score was
    computed in fp32. The table is rebuilt: a schema-1 file written by hand-written DDL holds
    its key as a table constraint, which no ``DROP INDEX`` removes.
    """
    columns = [c.name for c in db["scores"].columns]
    db.execute("DROP VIEW latest_scores")
    db.execute("ALTER TABLE scores RENAME TO scores_before_precision")
    scores = db.create_table(
        "scores",
        {
            "id": int, "sha256": str, "model": str, "checkpoint_id": str, "preprocess": str,
            "precision": str,  # fp32 | bf16 | fp16
            "score": float, "outputs": str, "n_tokens": int, "input_width": int, "input_height": int,
            "token_path": str, "kept_cells": str, "cell_size": int, "embedding": bytes, "seconds": float,
            "scored_at": str, "head_input": bytes,
        },
        pk="id",
        not_null={"sha256", "model", "checkpoint_id", "preprocess", "precision", "score", "outputs",
                  "kept_cells", "scored_at"},
        defaults={"kept_cells": "[]", "precision": "fp32"},
    )  # fmt: skip
    kept = ", ".join(c for c in columns if c in scores.columns_dict)
    db.execute(f"INSERT INTO scores ({kept}) SELECT {kept} FROM scores_before_precision")
    db.execute("DROP TABLE scores_before_precision")
    scores.create_index(["sha256", "model", "checkpoint_id", "preprocess", "precision"], index_name="scores_key",
                        unique=True)  # fmt: skip
    scores.create_index(["model", "score"], index_name="scores_model_score")
    db.create_view(
        "latest_scores",
        """
        SELECT id, sha256, model, checkpoint_id, preprocess, precision, score, outputs, n_tokens,
               input_width, input_height, token_path, kept_cells, cell_size, embedding, seconds, scored_at,
               head_input
        FROM (
            SELECT s.*, ROW_NUMBER() OVER (
                PARTITION BY s.sha256, s.model, s.precision ORDER BY s.scored_at DESC, s.id DESC) AS rn
            FROM scores s
        )
        WHERE rn = 1
        """,
    )


#: Ordered migrations: entry ``i`` upgrades a database from ``user_version == i`` to ``i + 1``.
MIGRATIONS: tuple[Migration, ...] = tuple(
    Migration(step.__name__, step)
    for step in (
        m001_initial,
        m002_decisions,
        m003_latest_scores,
        m004_camera_model,
        m005_measures,
        m006_taste,
        m007_score_precision,
    )
)

#: The version a database has once every migration ran.
SCHEMA_VERSION = len(MIGRATIONS)


def upgrade(db: sqlite_utils.Database) -> None:
    """Apply the steps ``db`` lacks, in order, each once, stamping ``user_version`` after each.

    The caller holds the write transaction (and refuses a file newer than :data:`SCHEMA_VERSION`).
    """
    while (current := db.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
        MIGRATIONS[current].apply(db)
        db.execute(f"PRAGMA user_version = {current + 1}")
