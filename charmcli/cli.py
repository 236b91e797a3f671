"""``charm``: the command line. Thin glue: parse options, call the store/pipeline, render with rich.

Conventions every command follows:

* data goes to **stdout** (tables, ``--json``, ``--csv``); progress, per-file errors and summaries
  go to **stderr**, so ``charm top 10 --json | jq`` always gets clean JSON;
* every error is **one line** (``charm: error: …``), never a traceback;
* exit codes: **0** all good, **1** some files failed (or an export item failed), **2** the
  command could not run as asked (bad option, missing path, unusable model or database),
  **130** interrupted.

``--json`` is one JSON object per line for ``score`` (it streams), one JSON document elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from charmcli import __version__
from charmcli.library.decode import DEFAULT_MAX_PIXELS
from charmcli.library.scan import display_path
from charmcli.pipeline import DEFAULT_MODEL, FatalError, FileEvent, Pipeline, Profile, ScoreOptions, scan
from charmcli.store import Store, StoreError, TopFilter, check_date, default_db_path

app = typer.Typer(
    name="charm",
    help="Score, rank and cull a photo library with the Charm aesthetic model (CVPR 2025).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="List the Charm models, or download one for offline use.", rich_markup_mode=None)
app.add_typer(models_app, name="models")


# -- shared plumbing ----------------------------------------------------------------------------


def _err() -> Console:
    # Created per call: CliRunner (and pytest's capsys) swap sys.stderr between invocations.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _out() -> Console:
    return Console(file=sys.stdout, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``charm: error: <one line>`` on stderr and exit."""
    line = " ".join(str(message).split())
    _err().print(f"[red]charm: error:[/red] {escape(line)}")
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    try:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    except UnicodeEncodeError:  # a non-UTF-8 file name (or a non-UTF-8 terminal): \uXXXX escapes
        sys.stdout.write(json.dumps(data, ensure_ascii=True, default=str) + "\n")
    sys.stdout.flush()


def _write_raw(text: str) -> None:
    """Write text whose paths may hold undecodable bytes: those go out exactly as on disk."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode(sys.stdout.encoding or "utf-8", "surrogateescape"))
    sys.stdout.flush()


@contextmanager
def open_db(db: Path | None) -> Iterator[Store]:
    try:
        store = Store(db if db is not None else default_db_path())
    except StoreError as exc:
        fail(str(exc))
    try:
        yield store
    finally:
        store.close()


def _check_paths(paths: Sequence[Path], *, files_only: bool = False) -> None:
    for path in paths:
        if not os.path.lexists(path):
            fail(f"no such file or folder: {display_path(path)}")
        if files_only and os.path.isdir(path):
            fail(f"{display_path(path)} is a folder; compare takes image files")


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", envvar="CHARM_DB", help="Score database (default: user data dir charm/charm.db)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help=f"Charm model / training set (default {DEFAULT_MODEL}); see `charm models`."),
]
CheckpointOpt = Annotated[
    Path | None, typer.Option("--checkpoint", help="Local checkpoint (.pth or .safetensors) instead of the hub.")
]
PosEmbedOpt = Annotated[
    Path | None, typer.Option("--pos-embed", help="Local position table (dino_small_pos.pt) for --checkpoint.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
ExactOpt = Annotated[
    bool,
    typer.Option("--exact", help="Official preprocessing exactly: no EXIF rotation, no downscale."),
]
MaxSideOpt = Annotated[
    int, typer.Option("--max-side", min=0, help="Cap the long side before scoring (0 = native resolution).")
]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", min=0, help="Refuse larger images before decoding (0 = no limit).")
]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Decode threads (default: up to 4).")]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size", min=1, help="Images per network call (default: 1 on CPU; on CUDA, from free memory, up to 128)."
    ),
]


class LinkMode(str, Enum):
    previous = "previous"
    best = "best"


# Grouping options shared by `top --best-of-group` and the cull commands (charmcli.cli_cull).
GapOpt = Annotated[float, typer.Option("--gap", min=0, help="Bursts: max seconds between consecutive frames.")]
SimilarityOpt = Annotated[
    float, typer.Option("--similarity", min=-1, max=1, help="Bursts: min cosine similarity of Charm embeddings (see `charm groups --calibrate`).")
]
LinkOpt = Annotated[
    LinkMode,
    typer.Option("--link", "--group-link", help="Bursts: compare a frame with the previous frame or with the group's best so far."),
]


def _score_options(
    model: str | None,
    checkpoint: Path | None,
    pos_embed: Path | None,
    device: str,
    *,
    exact: bool = False,
    max_side: int = 1024,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    rescore: bool = False,
    retry_failed: bool = False,
    workers: int | None = None,
    batch_size: int | None = None,
) -> ScoreOptions:
    if not _DEVICE_RE.match(device):
        fail(f"invalid --device {device!r}; use auto, cpu or cuda[:N]")
    if pos_embed is not None and checkpoint is None:
        fail("--pos-embed needs --checkpoint (hub models bring their own position table)")
    for label, path in (("--checkpoint", checkpoint), ("--pos-embed", pos_embed)):
        if path is not None and not path.is_file():
            fail(f"{label} {display_path(path)}: no such file")
    options = ScoreOptions(
        model=(model or DEFAULT_MODEL).lower(),
        model_given=model is not None,
        checkpoint=checkpoint,
        pos_embed=pos_embed,
        device=device,
        exact=exact,
        max_side=max_side,
        max_pixels=max_pixels,
        rescore=rescore,
        retry_failed=retry_failed,
        batch_size=batch_size,
    )
    if workers is not None:
        options.workers = workers
    return options


def _camera(make: str | None, model: str | None) -> str | None:
    from charmcli.cull.report import camera_name

    return camera_name(make, model)


def _fmt_score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


# -- charm score --------------------------------------------------------------------------------


@app.command()
def score(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Photo files and/or folders.", show_default=False)],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    pos_embed: PosEmbedOpt = None,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    rescore: Annotated[bool, typer.Option("--rescore", help="Score again even if cached.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Retry files that failed before and did not change.")
    ] = False,
    exact: ExactOpt = False,
    max_side: MaxSideOpt = 1024,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    workers: WorkersOpt = None,
    batch_size: BatchOpt = None,
    json_: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary; errors only.")] = False,
    profile: Annotated[bool, typer.Option("--profile", help="Print time spent per stage.")] = False,
) -> None:
    """Score every photo under PATH... (cached scores are reused; only new or changed files are read)."""
    _check_paths(paths)
    options = _score_options(
        model, checkpoint, pos_embed, device, exact=exact, max_side=max_side, max_pixels=max_pixels,
        rescore=rescore, retry_failed=retry_failed, workers=workers, batch_size=batch_size,
    )  # fmt: skip
    err = _err()
    prof = Profile()
    with open_db(db) as store:
        items = scan(paths, prof)
        pipeline = Pipeline(store, options, profile=prof)
        try:
            code = _run_score(pipeline, items, err=err, json_=json_, quiet=quiet)
        except FatalError as exc:
            fail(str(exc))
        if profile:
            _print_profile(err, prof, pipeline.summary.total)
    raise typer.Exit(code)


def _run_score(pipeline: Pipeline, items: list, *, err: Console, json_: bool, quiet: bool) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    show_progress = not quiet and err.is_terminal
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not show_progress,
    )
    events = pipeline.run(items)
    model_name: str | None = None
    try:
        with progress:
            task = progress.add_task("scoring", total=len(items), rate="")
            for event in events:
                model_name = model_name or pipeline.model.name
                _render_event(progress.console, event, model_name, json_=json_)
                done = pipeline.summary.total
                elapsed = progress.tasks[task].elapsed or 0.0
                rate = f"{done / elapsed:.1f}/s" if elapsed > 0 else ""
                progress.update(task, advance=1, rate=rate)
    except KeyboardInterrupt:
        pipeline.summary.interrupted = True
    finally:
        events.close()  # commits rows still pending
    summary = pipeline.summary
    if not quiet:
        name = pipeline.model.name or "?"
        ckpt = (pipeline.model.checkpoint_id or "")[:12]
        reused = f" ({summary.reused} by content)" if summary.reused else ""
        head = "[yellow]Interrupted[/]: " if summary.interrupted else ""
        err.print(
            f"{head}{summary.scored} scored, {summary.cached} cached{reused}, "
            f"{'[red]' if summary.failed else ''}{summary.failed} failed{'[/]' if summary.failed else ''} "
            f"in {summary.seconds:.1f} s · model {name} ({ckpt}, {pipeline.options.preprocess})"
        )
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def _render_event(console: Console, event: FileEvent, model: str | None, *, json_: bool) -> None:
    if json_:
        emit_json(event.to_json(model))
    if event.status == "error":
        console.print(f"[red]error[/red] {escape(display_path(event.path))}: {escape(event.error or '')}")


def _print_profile(err: Console, prof: Profile, n: int) -> None:
    table = Table(title="time per stage (summed over threads)", title_justify="left")
    table.add_column("stage")
    table.add_column("total s", justify="right")
    table.add_column("items", justify="right")
    table.add_column("ms/item", justify="right")
    for stage, seconds, count in prof.rows():
        per = f"{1000 * seconds / count:.1f}" if count else ""
        table.add_row(stage, f"{seconds:.3f}", str(count), per)
    err.print(table)


# -- charm top ----------------------------------------------------------------------------------


TOP_FIELDS = (
    "rank", "score", "percentile", "path", "model", "date_taken", "camera", "make", "camera_model", "lens",
    "width", "height", "sha256", "checkpoint_id", "preprocess",
)  # fmt: skip


def _resolve_model(store: Store, model: str | None) -> str | None:
    """The model asked for, else the one with the most scored photos (the default on ties)."""
    if model:
        return model.lower()
    scored = store.models_scored()
    if not scored:
        return None
    best = max(n for _, n in scored)
    names = [m for m, n in scored if n == best]
    return DEFAULT_MODEL if DEFAULT_MODEL in names else names[0]


@app.command()
def top(
    n: Annotated[int, typer.Argument(min=1, help="How many photos.")] = 20,
    paths: Annotated[
        list[Path] | None, typer.Argument(metavar="[PATH...]", help="Only photos under these files/folders.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Rank by this model (default: the most used).")] = None,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Only scores >= this.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Taken on/after (YYYY[-MM[-DD]]).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Taken on/before (YYYY[-MM[-DD]]), inclusive.")] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="Camera make/model contains this.")] = None,
    lens: Annotated[str | None, typer.Option("--lens", help="Lens contains this.")] = None,
    folder: Annotated[str | None, typer.Option("--folder", help="Parent folder path contains this.")] = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
    csv_: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    export: Annotated[Path | None, typer.Option("--export", help="Put the photos in this folder (+ manifest.csv).")] = None,
    copy: Annotated[bool, typer.Option("--copy", help="Export by copying (default; keeps timestamps).")] = False,
    link: Annotated[bool, typer.Option("--link", help="Export as hard links.")] = False,
    symlink: Annotated[bool, typer.Option("--symlink", help="Export as symbolic links.")] = False,
    best_of_group: Annotated[
        bool, typer.Option("--best-of-group", help="Only the best frame of each burst (see `charm groups`).")
    ] = False,
    gap: GapOpt = 3.0,
    similarity: SimilarityOpt = 0.90,
    group_link: Annotated[
        LinkMode, typer.Option("--group-link", help="Bursts: compare with the previous frame or the group's best.")
    ] = LinkMode.previous,
) -> None:
    """The N best photos, best first; filters narrow the field, --export copies or links them."""
    if json_ and csv_:
        fail("--json and --csv are exclusive")
    if copy + link + symlink > 1:
        fail("choose one of --copy, --link, --symlink")
    if (copy or link or symlink) and export is None:
        fail("--copy/--link/--symlink need --export DIR")
    for label, value in (("--since", since), ("--until", until)):
        if value is not None:
            try:
                check_date(value)
            except ValueError as exc:
                fail(f"{label}: {exc}")
    paths = paths or []
    _check_paths(paths)
    err = _err()
    with open_db(db) as store:
        chosen = _resolve_model(store, model)
        rows: list[dict[str, Any]] = []
        missing = 0
        if chosen is None:
            err.print("No scores yet: run `charm score PATH...` first.")
        else:
            flt = TopFilter(
                model=chosen, min_score=min_score, since=since, until=until, camera=camera, lens=lens,
                folder=folder, paths=[os.path.abspath(p) for p in paths],
            )  # fmt: skip
            keep = None
            if best_of_group:
                from charmcli.cli_cull import best_of_group_paths

                keep = best_of_group_paths(store, flt, gap, similarity, group_link)
            for row in store.iter_ranked(flt):
                if keep is not None and row["path"] not in keep:
                    continue
                if not os.path.exists(row["path"]):
                    missing += 1  # moved or deleted since it was scored; `charm forget` tidies up
                    continue
                rows.append(_top_record(len(rows) + 1, row))
                if len(rows) >= n:
                    break
            if not rows and model and model.lower() not in {m for m, _ in store.models_scored()}:
                known = ", ".join(m for m, _ in store.models_scored())
                err.print(f"No photos scored with model {escape(chosen)} (scored: {escape(known)}).")
            if rows:  # "calibrated score": standing among every photo scored with this model
                from charmcli.cli_cull import library_percentiles

                for r, pct in zip(rows, library_percentiles(store, chosen, [r["score"] for r in rows]), strict=True):
                    r["percentile"] = pct
    if json_:
        emit_json(rows)
    elif csv_:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(TOP_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        _write_raw(buf.getvalue())
    else:
        _print_top(rows, chosen)
    if missing:
        err.print(f"[dim]{missing} scored file(s) no longer exist and were skipped (`charm forget` drops them).[/]")
    code = 0
    if export is not None:
        mode = "link" if link else "symlink" if symlink else "copy"
        code = _export(rows, export, mode, err)
    raise typer.Exit(code)


def _top_record(rank: int, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "rank": rank,
        "score": row["score"],
        "percentile": None,
        "path": row["path"],
        "model": row["charm_model"],
        "date_taken": row["date_taken"],
        "camera": _camera(row["make"], row["model"]),
        "make": row["make"],
        "camera_model": row["model"],
        "lens": row["lens"],
        "width": row["width"],
        "height": row["height"],
        "sha256": row["sha256"],
        "checkpoint_id": row["checkpoint_id"],
        "preprocess": row["preprocess"],
    }


def _print_top(rows: list[dict[str, Any]], model: str | None) -> None:
    table = Table(title=f"top {len(rows)} · model {model}" if model else None, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("pct", justify="right")
    table.add_column("file", overflow="fold")
    table.add_column("taken")
    table.add_column("camera")
    for r in rows:
        taken = (r["date_taken"] or "")[:16].replace("T", " ")
        pct = "" if r["percentile"] is None else f"{r['percentile']:.0f}"
        table.add_row(str(r["rank"]), _fmt_score(r["score"]), pct, escape(display_path(r["path"])), taken,
                      escape(r["camera"] or ""))  # fmt: skip
    _out().print(table)


def _export(rows: list[dict[str, Any]], dest: Path, mode: str, err: Console) -> int:
    from charmcli.library.export import ExportError, ExportItem, export_files

    items = [
        ExportItem(
            Path(r["path"]), r["rank"], r["score"],
            {"model": r["model"], "date_taken": r["date_taken"], "camera": r["camera"], "sha256": r["sha256"]},
        )
        for r in rows
    ]
    try:
        results = export_files(items, dest, mode)  # type: ignore[arg-type]
    except ExportError as exc:
        fail(str(exc))
    failed = [r for r in results if not r.ok]
    for r in failed:
        err.print(f"[red]error[/red] {escape(display_path(r.item.source))}: {escape(r.error or '')}")
    manifest = f" · manifest {escape(display_path(results.manifest))}" if results.manifest else ""
    err.print(f"Exported {len(results) - len(failed)} of {len(results)} ({mode}) to {escape(display_path(dest))}{manifest}")
    return 1 if failed else 0


# -- charm compare ------------------------------------------------------------------------------


@app.command()
def compare(
    files: Annotated[list[Path], typer.Argument(metavar="A B [C...]", help="Two or more photos.", show_default=False)],
    model: ModelOpt = None,
    checkpoint: CheckpointOpt = None,
    pos_embed: PosEmbedOpt = None,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    exact: ExactOpt = False,
    max_side: MaxSideOpt = 1024,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    json_: JsonOpt = False,
) -> None:
    """Score photos side by side (cache first) and name the winner and its margin."""
    if len(files) < 2:
        fail("compare needs at least two photos")
    _check_paths(files, files_only=True)
    options = _score_options(
        model, checkpoint, pos_embed, device, exact=exact, max_side=max_side, max_pixels=max_pixels,
        retry_failed=True,
    )  # fmt: skip
    with open_db(db) as store:
        pipeline = Pipeline(store, options)
        items = scan(files)
        try:
            events = list(pipeline.run(items))
        except FatalError as exc:
            fail(str(exc))
        name, checkpoint_id = pipeline.model.name, pipeline.model.checkpoint_id
    ok = sorted((e for e in events if e.score is not None), key=lambda e: -e.score)  # type: ignore[operator]
    rank = {e.path: i + 1 for i, e in enumerate(ok)}
    winner = ok[0] if ok else None
    margin = ok[0].score - ok[1].score if len(ok) >= 2 else None  # type: ignore[operator]
    if json_:
        emit_json(
            {
                "model": name,
                "checkpoint_id": checkpoint_id,
                "images": [{**e.to_json(name), "rank": rank.get(e.path)} for e in events],
                "winner": winner.path if winner else None,
                "margin": margin,
            }
        )
    else:
        table = Table(title=f"model {name}", title_justify="left")
        for col, justify in (("#", "right"), ("score", "right"), ("file", "left"), ("size", "right"), ("", "left")):
            table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for e in sorted(events, key=lambda e: rank.get(e.path, len(events) + 1)):
            size = f"{e.width}x{e.height}" if e.width else ""
            note = e.status if e.status != "error" else f"[red]{escape(e.error or 'error')}[/red]"
            table.add_row(str(rank.get(e.path, "")), _fmt_score(e.score), escape(display_path(e.path)), size, note)
        out = _out()
        out.print(table)
        if winner is not None and margin is not None:
            runner = ok[1]
            relative = f" ({100 * margin / abs(runner.score):+.1f}%)" if runner.score else ""  # type: ignore[arg-type]
            tie = " (a tie)" if margin == 0 else ""
            out.print(
                f"Winner: {escape(Path(winner.path).name)} by {margin:.4f}{relative} over "
                f"{escape(Path(runner.path).name)}{tie}"
            )
    raise typer.Exit(1 if any(e.status == "error" for e in events) else 0)


# -- charm show ---------------------------------------------------------------------------------


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="A photo.", show_default=False)],
    db: DbOpt = None,
    json_: JsonOpt = False,
    explain: Annotated[
        Path | None, typer.Option("--explain", help="Write a PNG with the kept 28-px cells drawn over the photo.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model whose cells --explain draws.")] = None,
) -> None:
    """Everything known about one photo: scores per model, EXIF, the cells Charm kept at full resolution."""
    _check_paths([file], files_only=True)
    path = os.path.abspath(file)
    with open_db(db) as store:
        photo = store.photo_by_path(path)
        st = os.stat(path)
        stale = photo is not None and (photo["size"], photo["mtime_ns"]) != (st.st_size, st.st_mtime_ns)
        sha = photo["sha256"] if photo is not None and not stale else None
        if sha is None:  # unknown path or changed file: the content may still be known
            import hashlib

            from charmcli.library.decode import read_bytes

            try:
                sha = hashlib.sha256(read_bytes(path)).hexdigest()
            except Exception as exc:  # DecodeError: unreadable
                fail(f"{display_path(path)}: {exc}", 1)
            if photo is None or stale:
                photo = store.photo_by_sha(sha) or photo
        scores = [_score_record(r) for r in store.scores_for_sha(sha)]
        from charmcli.cli_cull import library_percentiles

        for s in scores:  # standing among every photo scored with that model
            s["percentile"] = library_percentiles(store, s["model"], [s["score"]])[0]
        failure = store.failure_for(path)
        if (  # never write a picture over a photo
            explain is not None
            and os.path.exists(explain)
            and (os.path.samefile(explain, path) or store.photo_by_path(os.path.abspath(explain)) is not None)
        ):
            fail(f"--explain {display_path(explain)} is a photo; choose a new file name for the PNG")
    info: dict[str, Any] = {
        "path": path,
        "sha256": sha,
        "known": bool(scores) or photo is not None,
        "photo": {k: v for k, v in (photo or {}).items() if k not in ("id", "path", "sha256")} or None,
        "scores": scores,
        "failure": failure and {k: failure[k] for k in ("reason", "kind", "failed_at")},
    }
    if explain is not None:
        _write_explain(path, scores, model, explain)
    if json_:
        emit_json(info)
    else:
        _print_show(info)
    raise typer.Exit(0 if info["known"] else 1)


def _score_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": row["model"],
        "score": row["score"],
        "outputs": json.loads(row["outputs"]),
        "checkpoint_id": row["checkpoint_id"],
        "preprocess": row["preprocess"],
        "n_tokens": row["n_tokens"],
        "input_size": [row["input_width"], row["input_height"]] if row["input_width"] else None,
        "token_path": row["token_path"],
        "cell_size": row["cell_size"],
        "kept_cells": json.loads(row["kept_cells"]),
        "scored_at": row["scored_at"],
        "seconds": row["seconds"],
    }


def _cell_map(record: dict[str, Any], max_cols: int = 64) -> str | None:
    """A text map of the kept cells ('█' kept, '·' downsampled), if it fits a terminal."""
    size, cell = record.get("input_size"), record.get("cell_size") or 28
    if not size or not record["kept_cells"]:
        return None
    cols, rows = -(-size[0] // cell), -(-size[1] // cell)
    if cols > max_cols or rows > 48:
        return None
    kept = {tuple(c) for c in record["kept_cells"]}
    return "\n".join("".join("█" if (r, c) in kept else "·" for c in range(cols)) for r in range(rows))


def _print_show(info: dict[str, Any]) -> None:
    out = _out()
    out.print(f"[bold]{escape(display_path(info['path']))}[/bold]")
    out.print(f"sha256 {info['sha256']}")
    photo = info["photo"] or {}
    if photo:
        facts = Table(show_header=False, box=None, pad_edge=False)
        facts.add_column(style="dim")
        facts.add_column()
        for key in ("width", "height", "format", "size", "date_taken", "make", "model", "lens", "focal_length",
                    "f_number", "exposure_time", "iso", "orientation", "first_seen", "last_seen"):  # fmt: skip
            if photo.get(key) is not None:
                facts.add_row(key.replace("model", "camera model") if key == "model" else key, escape(str(photo[key])))
        out.print(facts)
    if info["failure"]:
        out.print(f"[red]failed[/red] {escape(info['failure']['reason'])} ({info['failure']['failed_at']})")
    if not info["scores"]:
        out.print("Not scored yet: run `charm score` on it.")
        return
    table = Table(title="scores", title_justify="left")
    for col in ("model", "score", "pct", "checkpoint", "preprocess", "tokens", "input", "kept cells", "scored"):
        table.add_column(col)
    for s in info["scores"]:
        size = f"{s['input_size'][0]}x{s['input_size'][1]}" if s["input_size"] else ""
        pct = "" if s.get("percentile") is None else f"{s['percentile']:.0f}"
        table.add_row(s["model"], _fmt_score(s["score"]), pct, s["checkpoint_id"][:12], s["preprocess"], str(s["n_tokens"]),
                      size, f"{len(s['kept_cells'])} ({s['token_path']})", s["scored_at"][:19])  # fmt: skip
    out.print(table)
    for s in info["scores"]:
        grid = _cell_map(s)
        if grid:
            out.print(f"kept 28-px cells, model {s['model']} ({s['preprocess']}): █ full resolution, · downsampled")
            out.print(grid)
            break


def _write_explain(path: str, scores: list[dict[str, Any]], model: str | None, dest: Path) -> None:
    from charmcli.cull.explain import draw_kept_cells
    from charmcli.library.atomic import atomic_write_bytes
    from charmcli.library.decode import DecodeError, load_image

    chosen = [s for s in scores if model is None or s["model"] == model.lower()]
    if not chosen or not chosen[0]["input_size"]:
        fail("no score with kept cells to explain" + (f" for model {model}" if model else ""), 1)
    s = chosen[0]
    try:
        decoded = load_image(path, exact=s["preprocess"] == "exact", max_side=1600)
    except DecodeError as exc:
        fail(f"{display_path(path)}: {exc}", 1)
    image = draw_kept_cells(decoded.image, [tuple(c) for c in s["kept_cells"]], s["cell_size"] or 28, tuple(s["input_size"]))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    try:
        atomic_write_bytes(dest, buf.getvalue())
    except OSError as exc:
        fail(f"cannot write {display_path(dest)}: {exc.strerror or exc}")
    _err().print(f"Wrote {escape(display_path(dest))}")


# -- charm models -------------------------------------------------------------------------------


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List the Charm models and which are cached locally (usable offline)."""
    if ctx.invoked_subcommand is not None:
        return
    from charmcli.model.registry import MODELS, is_cached

    rows = [
        {"name": s.name, "scale": s.scale, "backbone": s.backbone, "cached": is_cached(s.name),
         "default": s.name == DEFAULT_MODEL, "description": s.description}
        for s in MODELS.values()
    ]
    if json_:
        emit_json(rows)
        return
    table = Table()
    for col in ("model", "scale", "cached", "description"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" (default)" if r["default"] else "")
        table.add_row(name, r["scale"], "yes" if r["cached"] else "no", escape(r["description"]))
    _out().print(table)


@models_app.command("download")
def models_download(name: Annotated[str, typer.Argument(help="Model name, e.g. aadb.")]) -> None:
    """Download a model's checkpoint and position table into the hub cache."""
    from charmcli.model import ModelUnavailableError
    from charmcli.model.registry import download, get_spec

    try:
        get_spec(name)
    except ValueError as exc:
        fail(str(exc))
    try:
        checkpoint, pos = download(name)
    except ModelUnavailableError as exc:
        fail(str(exc), 1)
    _err().print(f"{name}: {escape(display_path(checkpoint))}\n{' ' * len(name)}  {escape(display_path(pos))}")


# -- charm stats / forget -----------------------------------------------------------------------


@app.command()
def stats(db: DbOpt = None, json_: JsonOpt = False) -> None:
    """What the database holds: photos, scores per model, failures."""
    with open_db(db) as store:
        data = store.stats()
    if json_:
        emit_json(data)
        return
    out = _out()
    out.print(f"database {escape(data['db'])} (schema {data['schema_version']})")
    out.print(f"{data['photos']} photos ({data['unique_content']} distinct contents), {data['scores']} scores")
    if data["models"]:
        table = Table(title="per model", title_justify="left")
        for col in ("model", "photos", "mean", "min", "max", "checkpoints", "last scored"):
            table.add_column(col, justify="left" if col in ("model", "last scored") else "right")
        for m in data["models"]:
            table.add_row(m["model"], str(m["photos"]), _fmt_score(m["mean_score"]), _fmt_score(m["min_score"]),
                          _fmt_score(m["max_score"]), str(m["checkpoints"]), (m["last_scored"] or "")[:19])  # fmt: skip
        out.print(table)
    if data["failures"]:
        table = Table(title=f"{len(data['failures'])} failed", title_justify="left")
        table.add_column("file", overflow="fold")
        table.add_column("reason", overflow="fold")
        for f in data["failures"]:
            table.add_row(escape(display_path(f["path"])), escape(f["reason"]))
        out.print(table)


@app.command()
def forget(
    paths: Annotated[
        list[Path] | None, typer.Argument(metavar="[PATH...]", help="Only rows under these folders.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="List what would go; change nothing.")] = False,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Drop rows of files that no longer exist. Scores stay (content-keyed) for reuse if they return."""
    under = [os.path.abspath(p) for p in paths or []]
    with open_db(db) as store:
        photos, failures = store.stale_rows(under)
        if not dry_run:
            store.forget(photos, failures)
    if json_:
        emit_json({"dry_run": dry_run, "photos": photos, "failures": failures})
        return
    err = _err()
    for p in photos + failures:
        err.print(f"{'would forget' if dry_run else 'forgot'} {escape(display_path(p))}")
    verb = "Would forget" if dry_run else "Forgot"
    err.print(f"{verb} {len(photos)} photo(s) and {len(failures)} failure(s)")


# -- entry point --------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        typer.echo(f"charm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Score, rank and cull a photo library with the Charm aesthetic model (CVPR 2025)."""


def main() -> None:
    """Console-script entry point (``charm``)."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C while Typer builds the command line, before Click catches it
        raise SystemExit(130) from None


__all__ = ["app", "main"]

# `charm groups`, `charm rate` and `charm report` live in their own module and register on `app`.
from charmcli import cli_cull as _cli_cull  # noqa: E402,F401
from charmcli.cluster.cli import cluster_app  # noqa: E402

app.add_typer(cluster_app, name="cluster")
