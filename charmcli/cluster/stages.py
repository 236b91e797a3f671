"""The per-row work of a cluster job, as plain classes that Ray runs but does not need.

Each stage takes and returns a ``pyarrow.Table`` (Ray Data's ``batch_format="pyarrow"``), so a
test can call it on a table built by hand. Stages never raise on a bad row: in Ray an exception
inside a stage fails the whole job (and ``max_errored_blocks`` would silently drop whole blocks
of good photos), so every per-file problem becomes an ``error`` row carrying charm's one-line
message, and the job goes on.

* :class:`PrepareStage` (CPU): read the bytes once (local files or URLs), then the very unit
  ``charm score`` runs for one photo (:func:`charmcli.work.prepare_file`: hash, decode, EXIF,
  tokenize, one-line failures) with the model's weight-free preparer;
* :class:`ScoreStage` (GPU when there is one): :func:`charmcli.work.run_batch` (the network,
  one photo at a time if a batch fails) on batches of sequences of similar length, sized from
  free GPU memory (one by one on CPU, as ``charm score``), and :func:`charmcli.work.score_row`;
* :func:`write_stage`: one atomic Parquet part file per block (:mod:`charmcli.cluster.output`).

Tokens travel between the CPU and network stages as an ``.npz`` blob (no pickle).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from charmcli import __version__
from charmcli.cluster.output import SCHEMA, OutputDir, photo_columns, score_columns
from charmcli.library.decode import DecodeError, read_bytes
from charmcli.work import (
    MODEL_FAILED,
    Failure,
    Prepared,
    ScoreOptions,
    failure_of,
    load_preparer,
    load_scorer,
    photo_row,
    prepare_file,
    run_batch,
    score_row,
)

if TYPE_CHECKING:
    from charmcli.model import Preparer, Scorer, Tokenized

#: Between the CPU and network stages rows also carry their tokens.
STAGE_SCHEMA = SCHEMA.append(pa.field("tokens", pa.large_binary()))
#: What the writer hands back to the driver (progress and error lines; not the big columns).
RESULT_SCHEMA = pa.schema(
    [("path", pa.string()), ("status", pa.string()), ("score", pa.float64()), ("error", pa.string())]
)


# -- tokens across processes --------------------------------------------------------------------


def pack_tokens(t: Tokenized) -> bytes:
    """A :class:`~charmcli.model.charm.tokenizer.Tokenized` as ``.npz`` bytes (arrays only, no pickle)."""
    arrays = {
        "tokens": t.tokens.numpy(),
        "pos_embed": t.pos_embed.numpy(),
        "scale_ids": t.scale_ids.numpy().astype(np.int8),
        "input_size": np.asarray(t.input_size, dtype=np.int64),
        "route": np.asarray(t.route),
    }
    if t.grid28 is not None and t.kept_cells is not None:
        arrays["grid28"] = np.asarray(t.grid28, dtype=np.int64)
        arrays["kept_cells"] = t.kept_cells.numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_tokens(blob: bytes) -> Tokenized:
    import torch

    from charmcli.model.charm.tokenizer import Tokenized

    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        grid = (int(z["grid28"][0]), int(z["grid28"][1])) if "grid28" in z else None
        return Tokenized(
            tokens=torch.from_numpy(z["tokens"]),
            pos_embed=torch.from_numpy(z["pos_embed"]),
            scale_ids=torch.from_numpy(z["scale_ids"].astype(np.int64)),
            input_size=(int(z["input_size"][0]), int(z["input_size"][1])),
            route=str(z["route"]),
            grid28=grid,
            kept_cells=torch.from_numpy(z["kept_cells"]) if "kept_cells" in z else None,
        )


# -- stages -------------------------------------------------------------------------------------


def _identity(model: Preparer, options: ScoreOptions) -> dict[str, Any]:
    """The columns every row of a job carries: which model, which options, which charm."""
    return {
        "model": model.name,
        "checkpoint_id": model.checkpoint_id,
        "preprocess": options.preprocess,
        "max_pixels": options.max_pixels,
        "charm_version": __version__,
    }


class PrepareStage:
    """CPU: path → bytes → sha256 → decoded RGB + EXIF → tokens. One actor holds one tokenizer.

    It holds the model's CPU half only (:func:`~charmcli.work.load_preparer`: the tokenizer,
    position table and training-set rules, loaded exactly as ``charm score`` has them), never its
    network: a CPU worker does not hold weights it never runs (~90 MB for a ViT-S, ~1.2 GB for
    the AVA ViT-L).
    """

    def __init__(self, options: ScoreOptions) -> None:
        self.options = dataclasses.replace(options, device="cpu")
        self.preparer: Preparer = load_preparer(self.options)  # FatalError: the driver checked it loads
        self.identity = _identity(self.preparer, self.options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self.prepare(path) for path in batch.column("path").to_pylist()]
        return pa.Table.from_pylist(rows, schema=STAGE_SCHEMA)

    def prepare(self, path: str) -> dict[str, Any]:
        """One row: ``status="ok"`` with ``tokens`` for the network, or an error row. Never raises."""
        row: dict[str, Any] = {"path": path, **self.identity}
        try:
            data = _read(path, row)
        except Exception as exc:
            return _failed(row, failure_of(exc))
        outcome = prepare_file(path, self.options, [lambda: self.preparer], data=data)
        del data
        if isinstance(outcome, Failure):
            return _failed(row, outcome)
        assert isinstance(outcome, Prepared)  # no plan: every file is prepared or fails
        photo = photo_row(path, row.get("size") or 0, row.get("mtime_ns") or 0, outcome)
        row.update(photo_columns(photo), sha256=outcome.sha256, warnings=list(outcome.decoded.warnings),
                   tokens=pack_tokens(outcome.inputs[0]), status="ok")  # fmt: skip
        return row


def _failed(row: dict[str, Any], failure: Failure) -> dict[str, Any]:
    row.update(status="error", error=failure.reason, error_kind=failure.kind)
    if failure.sha256 is not None:
        row["sha256"] = failure.sha256
    return row


def _read(path: str, row: dict[str, Any]) -> bytes:
    """The file's bytes (local: charm's own FIFO-safe reader; URLs: pyarrow's filesystems)."""
    if "://" not in path:
        data = read_bytes(path)
        try:
            st = os.stat(path)
            row.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        except OSError:
            pass
        return data
    import pyarrow.fs as pafs

    try:
        fs, inner = pafs.FileSystem.from_uri(path)
        info = fs.get_file_info(inner)
        if info.type != pafs.FileType.File:
            raise DecodeError("cannot read: No such file or directory", "unreadable")
        with fs.open_input_stream(inner) as f:
            data = f.read()
    except DecodeError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise DecodeError(f"cannot read: {' '.join(str(exc).split())}", "unreadable") from None
    row.update(size=info.size, mtime_ns=info.mtime_ns)
    return data


class ScoreStage:
    """Network: tokens → scores, on CUDA when there is one, one model per actor.

    Rows are sorted by sequence length and cut into batches of ``batch_size`` (default: what free
    GPU memory holds for the longest sequence; 1 on CPU, where ``charm score`` batches nothing
    either, so scores match it bit for bit). A batch that fails is retried one photo at a time;
    a photo that fails alone becomes an error row.
    """

    def __init__(self, options: ScoreOptions, batch_size: int | None = None) -> None:
        self.options = options
        self.scorer: Scorer = load_scorer(options)[0]  # FatalError: the driver checked it loads
        self.identity = _identity(self.scorer, options)
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        self.score_rows(rows)
        for row in rows:
            row.pop("tokens", None)
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    def score_rows(self, rows: list[dict[str, Any]]) -> None:
        """Fill the score columns of rows that carry tokens (in place); others pass through."""
        todo = [r for r in rows if r.get("status") == "ok" and r.get("tokens")]
        prepared = []
        for row in todo:
            try:
                prepared.append((row, unpack_tokens(row["tokens"])))
            except Exception as exc:
                _failed(row, failure_of(exc))
        prepared.sort(key=lambda p: -p[1].num_tokens)  # longest first: each batch's head is its longest
        start = 0
        while start < len(prepared):
            size = self.batch_size or self.scorer.batch_limit(prepared[start][1].num_tokens)
            self._score(prepared[start : start + size])
            start += size
        for row in rows:
            if row.get("status") == "ok" and row.get("score") is None:
                row.update(status="error", error="no tokens reached the network", error_kind="internal")

    def _score(self, chunk: Sequence[tuple[dict[str, Any], Tokenized]]) -> None:
        results = run_batch(self.scorer, [t for _, t in chunk])
        for (row, _), result in zip(chunk, results, strict=True):
            if result is None:
                _failed(row, Failure(MODEL_FAILED, "model", row.get("sha256")))
                continue
            # the row's own columns say whose score it is; the score's columns come from the stored row
            score = score_row(result, sha256=row.get("sha256", ""), model=row.get("model", ""),
                              checkpoint_id=row.get("checkpoint_id", ""), preprocess=row.get("preprocess", ""),
                              precision=self.scorer.precision)  # fmt: skip
            row.update(score_columns(score))


def write_stage(batch: pa.Table, output: str) -> pa.Table:
    """Write one block as an atomic part file; hand the driver a slim summary of its rows."""
    rows = batch.to_pylist()
    if not rows:
        return RESULT_SCHEMA.empty_table()
    now = datetime.now(timezone.utc)
    for row in rows:
        row.pop("tokens", None)
        row["written_at"] = now
    OutputDir.open(output, create=True).write_part(rows)
    return pa.Table.from_pylist(
        [{k: r.get(k) for k in RESULT_SCHEMA.names} for r in rows], schema=RESULT_SCHEMA
    )


def error_rows(
    problems: Sequence[tuple[str, str]], options: ScoreOptions, kind: str = "unreadable"
) -> list[dict[str, Any]]:
    """Rows for what the listing itself could not use (dangling symlinks, FIFOs, ...)."""
    return [
        {"path": path, "status": "error", "error": reason, "error_kind": kind, "preprocess": options.preprocess,
         "max_pixels": options.max_pixels, "charm_version": __version__}
        for path, reason in problems
    ]  # fmt: skip
