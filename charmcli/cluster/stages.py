"""The per-row work of a cluster job, as plain classes that Ray runs but does not need.

Each stage takes and returns a ``pyarrow.Table`` (Ray Data's ``batch_format="pyarrow"``), so a
test can call it on a table built by hand. Stages never raise on a bad row: in Ray an exception
inside a stage fails the whole job (and ``max_errored_blocks`` would silently drop whole blocks
of good photos), so every per-file problem becomes an ``error`` row carrying charm's one-line
message, and the job goes on.

* :class:`PrepareStage` (CPU): read the bytes once, hash, decode, EXIF, tokenize: the very
  functions ``charm score`` calls (:func:`~charmcli.library.decode.read_bytes`,
  :func:`~charmcli.library.decode.decode_image`, :func:`~charmcli.library.metadata.read_metadata`,
  :meth:`Scorer.prepare <charmcli.model.scorer.Scorer.prepare>`);
* :class:`ScoreStage` (GPU when there is one): :meth:`Scorer.score_prepared` on batches of
  sequences of similar length, sized from free GPU memory (one by one on CPU, as ``charm score``);
* :func:`write_stage`: one atomic Parquet part file per block (:mod:`charmcli.cluster.output`).

Tokens travel between the CPU and network stages as an ``.npz`` blob (no pickle).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from charmcli import __version__
from charmcli.cluster.output import EXIF_FIELDS, SCHEMA, OutputDir
from charmcli.library.decode import DecodeError, decode_image, read_bytes
from charmcli.library.metadata import read_metadata
from charmcli.pipeline import ScoreOptions, load_scorer

if TYPE_CHECKING:
    from charmcli.model import Scorer, Tokenized

#: Between the CPU and network stages rows also carry their tokens.
STAGE_SCHEMA = SCHEMA.append(pa.field("tokens", pa.large_binary()))
#: What the writer hands back to the driver (progress and error lines; not the big columns).
RESULT_SCHEMA = pa.schema(
    [("path", pa.string()), ("status", pa.string()), ("score", pa.float64()), ("error", pa.string())]
)


# -- tokens across processes --------------------------------------------------------------------


def pack_tokens(t: Tokenized) -> bytes:
    """A :class:`~charmcli.model.tokenizer.Tokenized` as ``.npz`` bytes (arrays only, no pickle)."""
    arrays = {
        "tokens": t.tokens.numpy(),
        "pos_embed": t.pos_embed.numpy(),
        "scale_ids": t.scale_ids.numpy().astype(np.int8),
        "input_size": np.asarray(t.input_size, dtype=np.int64),
        "path": np.asarray(t.path),
    }
    if t.grid28 is not None and t.kept_cells is not None:
        arrays["grid28"] = np.asarray(t.grid28, dtype=np.int64)
        arrays["kept_cells"] = t.kept_cells.numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def unpack_tokens(blob: bytes) -> Tokenized:
    import torch

    from charmcli.model.tokenizer import Tokenized

    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        grid = tuple(int(v) for v in z["grid28"]) if "grid28" in z else None
        return Tokenized(
            tokens=torch.from_numpy(z["tokens"]),
            pos_embed=torch.from_numpy(z["pos_embed"]),
            scale_ids=torch.from_numpy(z["scale_ids"].astype(np.int64)),
            input_size=(int(z["input_size"][0]), int(z["input_size"][1])),
            path=str(z["path"]),
            grid28=grid,  # type: ignore[arg-type]
            kept_cells=torch.from_numpy(z["kept_cells"]) if "kept_cells" in z else None,
        )


# -- stages -------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error: {type(exc).__name__}: {message}"[:300]


class _Model:
    """What both stages know about the model: its scorer and identity, loaded once per actor."""

    def __init__(self, options: ScoreOptions, device: str) -> None:
        self.options = dataclasses.replace(options, device=device)
        self.scorer: Scorer = load_scorer(self.options)  # FatalError: the driver checked it loads
        self.identity = {
            "model": self.scorer.name,
            "checkpoint_id": self.scorer.checkpoint_id,
            "preprocess": self.options.preprocess,
            "max_pixels": self.options.max_pixels,
            "charm_version": __version__,
        }


class PrepareStage(_Model):
    """CPU: path → bytes → sha256 → decoded RGB + EXIF → tokens. One actor holds one tokenizer.

    The scorer is loaded on CPU for its tokenizer, position table and training-set rules (one
    loader keeps every option exactly as ``charm score`` has it); its network is then dropped,
    unless ``keep_network``, so a CPU worker does not hold weights it never runs (~90 MB for a
    ViT-S, ~1.2 GB for the AVA ViT-L).
    """

    def __init__(self, options: ScoreOptions, *, keep_network: bool = False) -> None:
        super().__init__(options, "cpu")
        if not keep_network:
            self.scorer.network = None  # type: ignore[assignment]  # prepare() never touches it

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [self.prepare(path) for path in batch.column("path").to_pylist()]
        return pa.Table.from_pylist(rows, schema=STAGE_SCHEMA)

    def prepare(self, path: str) -> dict[str, Any]:
        """One row: ``status="ok"`` with ``tokens`` for the network, or an error row. Never raises."""
        row: dict[str, Any] = {"path": path, **self.identity}
        opts = self.options
        try:
            data = _read(path, row)
            row["sha256"] = hashlib.sha256(data).hexdigest()
            decoded = decode_image(
                data, name=path, exact=opts.exact, max_side=opts.max_side, max_pixels=opts.max_pixels
            )
            meta = read_metadata(data).to_dict()
            del data
            row.update(width=decoded.width, height=decoded.height, format=decoded.format,
                       warnings=list(decoded.warnings))  # fmt: skip
            row.update({name: meta.get(c) for c, name in EXIF_FIELDS.items()})
            row["tokens"] = pack_tokens(self.scorer.prepare(decoded.image))
            row["status"] = "ok"
        except DecodeError as exc:
            row.update(status="error", error=str(exc), error_kind=exc.kind)
        except MemoryError:
            row.update(status="error", error="out of memory; lower --max-pixels", error_kind="too-large")
        except Exception as exc:  # one bad file never stops the job
            row.update(status="error", error=_one_line(exc), error_kind="internal")
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


class ScoreStage(_Model):
    """Network: tokens → scores, on CUDA when there is one, one model per actor.

    Rows are sorted by sequence length and cut into batches of ``batch_size`` (default: what free
    GPU memory holds for the longest sequence; 1 on CPU, where ``charm score`` batches nothing
    either, so scores match it bit for bit). A batch that fails is retried one photo at a time;
    a photo that fails alone becomes an error row.
    """

    def __init__(self, options: ScoreOptions, batch_size: int | None = None) -> None:
        super().__init__(options, options.device)
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
                row.update(status="error", error=_one_line(exc), error_kind="internal")
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
        begin = time.perf_counter()
        try:
            results = self.scorer.score_prepared([t for _, t in chunk])
        except Exception:
            if len(chunk) > 1:
                for item in chunk:
                    self._score([item])
            else:
                chunk[0][0].update(status="error", error="the model failed on this image", error_kind="model")
            return
        share = (time.perf_counter() - begin) / len(chunk)
        for (row, _), result in zip(chunk, results, strict=True):
            row.update(
                score=result.score,
                outputs=[float(v) for v in result.outputs],
                n_tokens=result.n_tokens,
                input_width=int(result.input_size[0]),
                input_height=int(result.input_size[1]),
                token_path=result.path,
                kept_cells=[[int(r), int(c)] for r, c in result.kept_cells],
                cell_size=result.cell_size,
                embedding=None if result.embedding is None else result.embedding.astype("<f2").tobytes(),
                patch_mean=None if getattr(result, "patch_mean", None) is None else result.patch_mean.astype("<f2").tobytes(),
                seconds=share,
            )


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
