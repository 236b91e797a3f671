"""The output folder of a cluster job: one Parquet schema, atomic part files, resume by path.

Why part files are safe to kill at any moment:

* each block of rows goes to ``.tmp-<name>`` and is renamed to ``part-<name>.parquet`` only once
  it is complete (on object stores, where a PUT is atomic, it is written in place), and readers
  only look at ``part-*.parquet``: a killed run leaves complete files or ignored temp files;
* ``<name>`` is a hash of the block's paths, so a block that Ray re-executes after a worker died
  rewrites the same file instead of adding a second copy;
* every reader still keeps one row per path (an ``ok`` row beats an ``error`` row, then the newest),
  which is also how ``--retry-failed`` supersedes an old error row.

Resuming reads only the ``path``, ``sha256`` and ``status`` columns. This module knows nothing of
Ray or torch (pyarrow only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from charmcli.store import META_COLUMNS, PhotoRow, ScoreRow

PART_PREFIX = "part-"
TEMP_PREFIX = ".tmp-"
JOB_FILE = "_charm_job.json"
RESUME_COLUMNS = ("path", "sha256", "status")

_EXIF_TYPES = {"focal_length": pa.float64(), "f_number": pa.float64(), "exposure_time": pa.float64(),
               "iso": pa.int32(), "orientation": pa.int32()}  # fmt: skip

SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # absolute local path or URL, as listed
        pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
        pa.field("error", pa.string()),  # charm's one-line message (error rows)
        pa.field("error_kind", pa.string()),  # empty, unreadable, corrupt, too-large, model, ...
        pa.field("sha256", pa.string()),  # of the file bytes (null if they could not be read)
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("model", pa.string()),  # Charm training set (aadb, para, ...)
        pa.field("checkpoint_id", pa.string()),  # sha256 of the checkpoint file
        pa.field("preprocess", pa.string()),  # decode policy tag (max1024, native, exact)
        pa.field("max_pixels", pa.int64()),
        pa.field("score", pa.float64()),  # on the training set's scale
        pa.field("outputs", pa.list_(pa.float64())),  # activated network outputs
        pa.field("n_tokens", pa.int32()),  # sequence length including CLS
        pa.field("width", pa.int32()),  # as displayed, before any downscale
        pa.field("height", pa.int32()),
        pa.field("input_width", pa.int32()),  # what the tokenizer saw
        pa.field("input_height", pa.int32()),
        pa.field("token_path", pa.string()),  # short | multiscale
        pa.field("kept_cells", pa.list_(pa.list_(pa.int32()))),  # [[row, col], ...] at full resolution
        pa.field("cell_size", pa.int32()),
        pa.field("embedding", pa.binary()),  # float16 little-endian CLS vector (what `groups` uses)
        pa.field("head_input", pa.binary()),  # float16 input of the head (Charm: [CLS, mean of patches])
        pa.field("format", pa.string()),
        # EXIF, named as the store names it (``camera_model``: ``model`` is the scoring model)
        *(pa.field(c, _EXIF_TYPES.get(c, pa.string())) for c in META_COLUMNS),
        pa.field("warnings", pa.list_(pa.string())),
        pa.field("seconds", pa.float64()),  # network time (share of its batch)
        pa.field("charm_version", pa.string()),
        pa.field("written_at", pa.timestamp("us", tz="UTC")),
        pa.field("precision", pa.string()),  # the network's number format (null in older parts: fp32)
    ]
)
COLUMNS = tuple(SCHEMA.names)


# -- the store's rows as columns and back (the stored row itself is made in charmcli.work) -------


def photo_columns(photo: PhotoRow) -> dict[str, Any]:
    """A photo row's columns: displayed size, format and EXIF (path/sha256/size/mtime are the row's own)."""
    exif = {c: photo.meta.get(c) for c in META_COLUMNS}
    return {"width": photo.width, "height": photo.height, "format": photo.format, **exif}


def photo_of(row: dict[str, Any]) -> PhotoRow:
    """The photo row an ``ok`` row describes."""
    return PhotoRow(
        row["path"], row.get("size") or 0, row.get("mtime_ns") or 0, row["sha256"], row.get("width"),
        row.get("height"), row.get("format"), {c: row.get(c) for c in META_COLUMNS},
    )  # fmt: skip


def score_columns(score: ScoreRow) -> dict[str, Any]:
    """A score row's columns (model, checkpoint and preprocess are the job's own)."""
    return {
        "score": score.score,
        "outputs": list(score.outputs),
        "n_tokens": score.n_tokens,
        "input_width": score.input_size[0] if score.input_size else None,
        "input_height": score.input_size[1] if score.input_size else None,
        "token_path": score.token_path,
        "kept_cells": [[r, c] for r, c in score.kept_cells],
        "cell_size": score.cell_size,
        "embedding": score.embedding,
        "head_input": score.head_input,
        "seconds": score.seconds,
        "precision": score.precision,
    }


def score_of(row: dict[str, Any]) -> ScoreRow:
    """The score row an ``ok`` row carries."""
    return ScoreRow(
        sha256=row["sha256"],
        model=row["model"],
        checkpoint_id=row["checkpoint_id"],
        preprocess=row["preprocess"],
        score=row["score"],
        outputs=list(row.get("outputs") or []),
        n_tokens=row.get("n_tokens"),
        input_size=(row["input_width"], row["input_height"]) if row.get("input_width") else None,
        token_path=row.get("token_path"),
        kept_cells=[(int(r), int(c)) for r, c in row.get("kept_cells") or []],
        cell_size=row.get("cell_size"),
        embedding=row.get("embedding"),
        seconds=row.get("seconds"),
        precision=row.get("precision") or "fp32",
        head_input=row.get("head_input"),
    )


class OutputError(Exception):
    """The output folder cannot be used as asked; ``str()`` is one line."""


@dataclass
class OutputDir:
    """An output folder on any pyarrow filesystem (local path, ``file://``, ``s3://``, ``gs://``)."""

    uri: str
    fs: pafs.FileSystem = field(repr=False)
    base: str

    @classmethod
    def open(cls, uri: str | os.PathLike[str], *, create: bool = False) -> OutputDir:
        text = os.fspath(uri)
        try:
            if "://" in text:
                fs, base = pafs.FileSystem.from_uri(text)
            else:
                fs, base = pafs.LocalFileSystem(), os.path.abspath(text)
            info = fs.get_file_info(base)
            if info.type == pafs.FileType.File:
                raise OutputError(f"{text} is a file; --output takes a folder")
            if info.type == pafs.FileType.NotFound:
                if not create:
                    raise OutputError(f"no such output folder: {text}")
                fs.create_dir(base, recursive=True)
        except OutputError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise OutputError(f"cannot use {text}: {' '.join(str(exc).split())}") from None
        return cls(text if "://" in text else base, fs, base.rstrip("/"))  # local: absolute, for workers

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, name: str) -> str:
        return f"{self.base}/{name}"

    # -- listing ------------------------------------------------------------------------------

    def parts(self) -> list[str]:
        """Complete part files, sorted (temp files and anything else are ignored)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True))
        names = [i.base_name for i in infos if i.type == pafs.FileType.File]
        return sorted(self.join(n) for n in names if n.startswith(PART_PREFIX) and n.endswith(".parquet"))

    def temp_files(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.base, allow_not_found=True))
        return sorted(i.path for i in infos if i.base_name.startswith(TEMP_PREFIX))

    def remove_temp_files(self) -> int:
        """Drop what killed runs left half-written (one job per folder at a time)."""
        stale = self.temp_files()
        for path in stale:
            with contextlib.suppress(OSError):
                self.fs.delete_file(path)
        return len(stale)

    # -- writing ------------------------------------------------------------------------------

    def write_part(self, rows: Sequence[dict[str, Any]]) -> str:
        """Write rows as one complete part file; returns its path. Same paths → same file name."""
        table = rows_to_table(rows)
        digest = hashlib.sha256("\n".join(sorted(r["path"] for r in rows)).encode("utf-8", "surrogateescape"))
        final = self.join(f"{PART_PREFIX}{digest.hexdigest()[:24]}.parquet")
        if not self.local:  # an object store PUT is atomic: readers see all of it or nothing
            pq.write_table(table, final, filesystem=self.fs)
            return final
        temp = self.join(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        pq.write_table(table, temp, filesystem=self.fs)
        _hook_after_temp_write(self, temp)
        self.fs.move(temp, final)  # rename(2): atomic on one filesystem
        return final

    def write_job(self, config: dict[str, Any]) -> None:
        data = json.dumps(config, indent=2, sort_keys=True).encode()
        if self.local:
            temp = self.join(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
            with self.fs.open_output_stream(temp) as f:
                f.write(data)
            self.fs.move(temp, self.join(JOB_FILE))
        else:
            with self.fs.open_output_stream(self.join(JOB_FILE)) as f:
                f.write(data)

    def read_job(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.join(JOB_FILE)) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise OutputError(f"{self.uri}/{JOB_FILE} is unreadable: {' '.join(str(exc).split())}") from None

    # -- reading ------------------------------------------------------------------------------

    def read(self, columns: Sequence[str] | None = None) -> tuple[pa.Table, list[str]]:
        """Every complete part file, one row per path (see :func:`dedupe`), plus one-line warnings
        for part files that could not be read (they are skipped, never fatal)."""
        wanted = list(columns) if columns is not None else list(COLUMNS)
        need = list(dict.fromkeys([*wanted, "path", "status", "written_at"]))
        tables, warnings = [], []
        for part in self.parts():
            try:
                tables.append(self._read_part(part, need))
            except (OSError, pa.ArrowException) as exc:
                warnings.append(f"skipped unreadable {part}: {' '.join(str(exc).split())}"[:300])
        if not tables:
            return SCHEMA.empty_table().select(wanted), warnings
        table = dedupe(pa.concat_tables(tables, promote_options="permissive"))
        for name in wanted:
            if name not in table.column_names:
                field = SCHEMA.field(name)
                table = table.append_column(field, pa.nulls(len(table), field.type))
        return table.select(wanted), warnings

    def _read_part(self, part: str, columns: list[str]) -> pa.Table:
        try:
            return pq.read_table(part, columns=columns, filesystem=self.fs)
        except pa.ArrowInvalid as exc:
            if "FieldRef" not in str(exc):
                raise
        # a part written before a column existed (e.g. precision): read the columns it has
        present = set(pq.read_schema(part, filesystem=self.fs).names)
        return pq.read_table(part, columns=[c for c in columns if c in present], filesystem=self.fs)

    def done(self) -> tuple[set[str], set[str]]:
        """(paths with an ``ok`` row, paths with only ``error`` rows): all a resume needs."""
        table, _ = self.read(RESUME_COLUMNS)
        ok: set[str] = set()
        failed: set[str] = set()
        for path, status in zip(
            table.column("path").to_pylist(), table.column("status").to_pylist(), strict=True
        ):
            (ok if status == "ok" else failed).add(path)
        return ok, failed


def dedupe(table: pa.Table) -> pa.Table:
    """One row per path: an ``ok`` row beats an ``error`` row, then the newest ``written_at``."""
    paths = table.column("path").to_pylist()
    if len(set(paths)) == len(paths):
        return table
    statuses = table.column("status").to_pylist()
    stamps = (
        table.column("written_at").to_pylist() if "written_at" in table.column_names else [None] * len(paths)
    )
    best: dict[str, int] = {}
    for i, path in enumerate(paths):
        j = best.get(path)
        if j is None or _rank(statuses[i], stamps[i]) > _rank(statuses[j], stamps[j]):
            best[path] = i
    return table.take(sorted(best.values()))


def _rank(status: str, stamp: Any) -> tuple[bool, float]:
    return status == "ok", stamp.timestamp() if stamp is not None else 0.0


def rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts keyed by :data:`COLUMNS`, missing keys = null) → a table of :data:`SCHEMA`."""
    rows = list(rows)
    return pa.Table.from_pydict({c: [r.get(c) for r in rows] for c in COLUMNS}, schema=SCHEMA)


def _hook_after_temp_write(out: OutputDir, temp: str) -> None:
    """Test hook (``CHARM_CLUSTER_TEST_HANG_AFTER_PARTS=N``, local folders): the first ``N`` part
    files are written; every later writer leaves its temp file half-written and blocks, so a test
    can kill the job at a known point. Writers claim one of ``N`` tickets with ``O_EXCL``, so the
    count is exact even when several write at once."""
    limit = os.environ.get("CHARM_CLUSTER_TEST_HANG_AFTER_PARTS")
    if not limit:
        return
    for k in range(int(limit)):
        try:
            os.close(os.open(out.join(f"{TEMP_PREFIX}hook-ticket-{k}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return
        except FileExistsError:
            continue
    with open(temp, "r+b") as f:
        f.truncate(os.path.getsize(temp) // 2)
    import threading

    threading.Event().wait()  # until the job is killed
