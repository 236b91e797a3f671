"""``charm score`` and ``charm compare``: the commands that run the model.

Both validate every option first (:func:`~charmcli.cli.options.score_options`), then drive a
:class:`~charmcli.pipeline.Pipeline`, which imports torch only when a file really needs the
network.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from charmcli.cli.options import (
    BatchOpt,
    Column,
    DbOpt,
    DecodeArgs,
    JsonOpt,
    ModelArgs,
    WorkersOpt,
    as_typed,
    bundled,
    check_paths,
    emit_json,
    err,
    fail,
    fmt_score,
    loading_status,
    new_table,
    open_db,
    out,
    print_table,
    say,
    say_file,
    score_options,
)
from charmcli.library.scan import display_path
from charmcli.pipeline import FileEvent, Pipeline
from charmcli.work import FatalError, Profile


@bundled
def score(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Photo files and/or folders.", show_default=False)],
    model: ModelArgs = ModelArgs(),
    db: DbOpt = None,
    rescore: Annotated[bool, typer.Option("--rescore", help="Score again even if cached.")] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Retry files that failed before and did not change.")
    ] = False,
    decode: DecodeArgs = DecodeArgs(),
    workers: WorkersOpt = None,
    batch_size: BatchOpt = None,
    json_: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary; errors only.")] = False,
    profile: Annotated[bool, typer.Option("--profile", help="Print time spent per stage.")] = False,
) -> None:
    """Score every photo under PATH... (cached scores are reused; only new or changed files are read).

    Exit codes: 0 every photo is scored (files that failed in an earlier run and did not change
    are summarised in one line, see `charm stats`); 1 a file failed in this run; 2 the command
    could not run as asked; 130 interrupted.
    """
    check_paths(paths)
    options = score_options(model, decode, rescore=rescore, retry_failed=retry_failed, workers=workers,
                            batch_size=batch_size)  # fmt: skip
    console = err()
    prof = Profile()
    with open_db(db) as store:
        pipeline = Pipeline(store, options, profile=prof, notify=lambda line: console.print(line))
        try:
            code = _run_score(pipeline, paths, console=console, json_=json_, quiet=quiet)
        except FatalError as exc:
            fail(str(exc))
        if profile:
            _print_profile(console, prof)
            for handle in pipeline.models:  # what auto chose, and why
                console.print(f"precision {escape(handle.name or '?')}: {escape(handle.precision().describe())}")
    raise typer.Exit(code)


def _run_score(pipeline: Pipeline, paths: list[Path], *, console: Console, json_: bool, quiet: bool) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    show_progress = not quiet and console.is_interactive  # a live bar needs a terminal that redraws
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not show_progress,
    )
    pipeline.notify = lambda line: progress.console.print(line)
    events = pipeline.run(paths)
    model_name: str | None = None
    task = progress.add_task("looking for photos", total=None, rate="")

    @contextlib.contextmanager
    def loading(what: str):
        progress.update(task, description=f"loading {what}", total=len(pipeline.items))
        try:
            yield
        finally:
            progress.update(task, description=_doing(pipeline.items, pipeline.summary.total))

    for handle in pipeline.models:  # every model of a multi-model run (issue 13)
        handle.loading = loading
    try:
        with progress:
            for event in events:
                model_name = model_name or pipeline.model.name
                _render_event(progress.console, event, model_name, json_=json_)
                done = pipeline.summary.total
                elapsed = progress.tasks[task].elapsed or 0.0
                rate = f"{done / elapsed:.1f}/s" if elapsed > 0 else ""
                progress.update(task, advance=1, rate=rate, description=_doing(pipeline.items, done),
                                total=len(pipeline.items))  # fmt: skip
    except KeyboardInterrupt:
        pipeline.summary.interrupted = True
    finally:
        events.close()  # commits rows still pending
    summary = pipeline.summary
    if not quiet:
        _print_summary(console, pipeline, pipeline.items)
    if summary.interrupted:
        return 130
    return 1 if summary.failed - summary.known_failures else 0


def _doing(items: list, done: int) -> str:
    """The progress bar's label: the file being worked on (its name only, to fit 80 columns)."""
    if done >= len(items):
        return "finishing"
    name = Path(items[done].path).name
    return escape(display_path(name if len(name) <= 24 else name[:21] + "…"))


def _print_summary(console: Console, pipeline: Pipeline, items: list) -> None:
    summary = pipeline.summary
    if summary.known_failures:
        console.print(
            f"{summary.known_failures} file(s) failed before and did not change: see `charm stats`, "
            f"--retry-failed"
        )
    if not items and not summary.interrupted:
        console.print("No photos found: no file with a photo extension under the given paths.")
        return
    name = ", ".join(h.name or "?" for h in pipeline.models)
    ckpt = ", ".join((h.checkpoint_id or "")[:12] for h in pipeline.models)
    reused = f" ({summary.reused} by content)" if summary.reused else ""
    head = "[yellow]Interrupted[/]: " if summary.interrupted else ""
    new_failures = summary.failed - summary.known_failures
    failed = f"[red]{new_failures} failed[/]" if new_failures else "0 failed"
    known = f", {summary.known_failures} known failure(s)" if summary.known_failures else ""
    skipped = f", {summary.skipped} skipped" if summary.skipped else ""
    precision = ", ".join(h.precision().precision for h in pipeline.models)
    model = (f"model {name} ({ckpt}, {pipeline.options.preprocess}, {precision})"
             if summary.scored or summary.cached else "")  # fmt: skip
    counts = f"{head}{summary.scored} scored, {summary.cached} cached{reused}, {failed}{known}{skipped} " \
             f"in {summary.seconds:.1f} s"  # fmt: skip
    say(console, counts, model)


def _render_event(console: Console, event: FileEvent, model: str | None, *, json_: bool) -> None:
    if json_:
        emit_json(event.to_json(model))
    if event.status == "error" and not event.known_failure:
        say_file(console, "[red]error[/red]", as_typed(event.path), event.error or "")
    elif event.status == "skipped":
        say_file(console, "[yellow]skipped[/yellow]", as_typed(event.path), event.error or "")


def _print_profile(console: Console, prof: Profile) -> None:
    table = new_table("time per stage (summed over threads)")
    for col in ("stage", "total s", "items", "ms/item"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, seconds, count in prof.rows():
        per = f"{1000 * seconds / count:.1f}" if count else ""
        table.add_row(stage, f"{seconds:.3f}", str(count), per)
    console.print(table)


@bundled
def compare(
    files: Annotated[list[Path], typer.Argument(metavar="A B [C...]", help="Two or more photos.", show_default=False)],
    model: ModelArgs = ModelArgs(),
    db: DbOpt = None,
    decode: DecodeArgs = DecodeArgs(),
    json_: JsonOpt = False,
) -> None:
    """Score photos side by side (cache first) and name the winner and its margin.

    With several --model, every model's score gets a column; the first model ranks."""
    if len(files) < 2:
        fail("compare needs at least two photos")
    check_paths(files, files_only=True)
    options = score_options(model, decode, retry_failed=True)
    with open_db(db) as store:
        events, name, checkpoint_id = score_files(store, options, files)
    names = options.model_names
    several = len(names) > 1
    ok = sorted((e for e in events if e.score is not None), key=lambda e: -e.score)  # type: ignore[operator]
    rank = {e.path: i + 1 for i, e in enumerate(ok)}
    winner = ok[0] if ok else None
    margin = ok[0].score - ok[1].score if len(ok) >= 2 else None  # type: ignore[operator]
    if json_:
        emit_json(
            {
                "model": name,
                "checkpoint_id": checkpoint_id,
                **({"models": names} if several else {}),  # several models: every score (issue 13)
                "images": [
                    {**e.to_json(name), **({"scores": dict(e.scores)} if several else {}), "rank": rank.get(e.path)}
                    for e in events
                ],
                "winner": winner.path if winner else None,
                "margin": margin,
            }
        )
    else:
        console = out()
        score_cols = [Column(escape(n), "right") for n in names] if several else [Column("score", "right")]
        columns = [Column("#", "right"), *score_cols, Column("file", path=True),
                   Column("size", "right", drop=1), Column("", wrap=30)]  # fmt: skip
        rows = []
        for e in sorted(events, key=lambda e: rank.get(e.path, len(events) + 1)):
            size = f"{e.width}x{e.height}" if e.width else ""
            note = e.status if e.status != "error" else f"[red]{escape(e.error or 'error')}[/red]"
            cells = [fmt_score(e.scores.get(n)) for n in names] if several else [fmt_score(e.score)]
            rows.append([str(rank.get(e.path, "")), *cells, e.path, size, note])
        title = f"models {escape(', '.join(names))}, ranked by {escape(name or '?')}" if several else f"model {escape(name or '?')}"
        print_table(console, columns, rows, title=title)
        if winner is not None and margin is not None:
            runner = ok[1]
            relative = f" ({100 * margin / abs(runner.score):+.1f}%)" if runner.score else ""  # type: ignore[arg-type]
            tie = " (a tie)" if margin == 0 else ""
            console.print(
                f"Winner: {escape(Path(winner.path).name)} by {margin:.4f}{relative} over "
                f"{escape(Path(runner.path).name)}{tie}"
            )
    raise typer.Exit(1 if any(e.status == "error" for e in events) else 0)


def score_files(store, options, files) -> tuple[list[FileEvent], str | None, str | None]:
    """Score a few named files (cache first); ``(events, model name, checkpoint id)``."""
    pipeline = Pipeline(store, options, notify=lambda line: err().print(line))
    for handle in pipeline.models:
        handle.loading = loading_status
    try:
        events = list(pipeline.run(files))
    except FatalError as exc:
        fail(str(exc))
    return events, pipeline.model.name, pipeline.model.checkpoint_id
