"""``charm top``, ``charm show``, ``charm stats`` and ``charm forget``: reading what is scored.

Only ``show --explain`` on a photo not scored yet runs the model (through
:func:`charmcli.cli.score.score_files`); everything else reads the database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape

from charmcli.cli.options import (
    Chain,
    ChainOpt,
    Column,
    DbOpt,
    DecodeArgs,
    FlagArgs,
    FlagLimitsOpt,
    GapOpt,
    JsonOpt,
    ModelArgs,
    PathsArg,
    RankModelOpt,
    TasteNameOpt,
    TasteOpt,
    bundled,
    check_date_option,
    check_paths,
    common_folder,
    emit_json,
    err,
    fail,
    fit_path,
    fmt_pct,
    fmt_score,
    folder_title,
    open_db,
    out,
    print_table,
    relative_to,
    say_file,
    score_options,
    write_raw,
)
from charmcli.cli.options import SimilarityOpt as _SimilarityOpt
from charmcli.cli.score import score_files
from charmcli.flags import DEFAULT_LIMITS, Limits, evaluate, eyes_note
from charmcli.library.scan import display_path
from charmcli.selection import Grouping, Query, library_percentiles, resolve_model, select, unscored_model
from charmcli.taste.learn import DEFAULT_TASTE, TasteError

TOP_FIELDS = (
    "rank", "score", "percentile", "path", "model", "date_taken", "camera", "make", "camera_model", "lens",
    "width", "height", "sha256", "checkpoint_id", "preprocess", "precision", "rating", "label", "flags",
)  # fmt: skip


def _camera(make: str | None, model: str | None) -> str | None:
    from charmcli.cull.report import camera_name

    return camera_name(make, model)


# -- charm top ----------------------------------------------------------------------------------


@bundled
def top(
    n: Annotated[int, typer.Argument(min=1, help="How many photos.")] = 20,
    paths: PathsArg = None,
    model: RankModelOpt = None,
    min_score: Annotated[float | None, typer.Option("--min-score", metavar="SCORE", help="Only scores >= this.")] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="DATE", help="Taken on/after (YYYY[-MM[-DD]]).")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="DATE", help="Taken on/before (YYYY[-MM[-DD]]), inclusive.")] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="Camera make/model contains this.")] = None,
    lens: Annotated[str | None, typer.Option("--lens", help="Lens contains this.")] = None,
    folder: Annotated[str | None, typer.Option("--folder", help="Parent folder path contains this.")] = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
    csv_: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    export: Annotated[Path | None, typer.Option("--export", metavar="DIR", help="Put the photos in this folder (+ manifest.csv).")] = None,
    copy: Annotated[bool, typer.Option("--copy", help="Export by copying (default; keeps timestamps).")] = False,
    link: Annotated[bool, typer.Option("--link", help="Export as hard links.")] = False,
    symlink: Annotated[bool, typer.Option("--symlink", help="Export as symbolic links.")] = False,
    best_of_group: Annotated[
        bool, typer.Option("--best-of-group", help="Only the best frame of each burst (see `charm groups`).")
    ] = False,
    gap: GapOpt = 3.0,
    similarity: _SimilarityOpt = 0.90,
    chain: ChainOpt = Chain.previous,
    flags: FlagArgs = FlagArgs(),
    taste: TasteOpt = False,
    taste_name: TasteNameOpt = DEFAULT_TASTE,
) -> None:
    """The N best photos, best first; filters narrow the field, --export copies or links them.

    Exporting the same photos into the same folder again keeps the files already there (same
    content, same name) and rewrites manifest.csv: nothing is doubled.
    """
    if json_ and csv_:
        fail("--json and --csv are exclusive")
    if copy + link + symlink > 1:
        fail("choose one of --copy, --link, --symlink")
    if (copy or link or symlink) and export is None:
        fail("--copy/--link/--symlink need --export DIR")
    if export is not None and os.path.lexists(export) and not export.is_dir():
        fail(f"--export {display_path(export)} is a file, not a folder")
    check_date_option("--since", since)
    check_date_option("--until", until)
    limits, hidden = flags.limits(), flags.hidden()
    paths = paths or []
    check_paths(paths)
    console = err()
    with open_db(db) as store:
        problem = unscored_model(store, model)
        if problem is not None and problem[1]:
            fail(problem[0])
        chosen = resolve_model(store, model)
        if problem is not None:
            console.print(escape(problem[0]))
        rows: list[dict[str, Any]] = []
        missing = 0
        if chosen is None:
            console.print("No scores yet: run `charm score PATH...` first.")
        else:
            query = Query(
                model=chosen, min_score=min_score, since=since, until=until, camera=camera, lens=lens,
                folder=folder, paths=[str(p) for p in paths], limit=n, embeddings=False,
                best_of_group=Grouping(gap, similarity, chain.value) if best_of_group else None,
                flag_limits=limits, hide_flags=hidden,
                taste=taste_name if taste else None,
            )  # fmt: skip
            try:
                sel = select(store, query)
            except (ValueError, TasteError) as exc:  # mixed checkpoints under one name; no such taste
                fail(str(exc))
            rows, missing = [_top_record(row, taste) for row in sel.rows], sel.missing
            for other, count in sel.other_precisions:  # one precision ranks; say what is left out
                console.print(f"[dim]ranked by {sel.precision} scores; {count} photo(s) also have {other} "
                              f"scores, not mixed in.[/]")  # fmt: skip
    if json_:
        emit_json(rows)
    elif csv_:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*TOP_FIELDS, *(["taste"] if taste else [])], lineterminator="\n",
                                extrasaction="ignore")  # fmt: skip
        writer.writeheader()
        writer.writerows({**r, "flags": ";".join(r["flags"])} for r in rows)
        write_raw(buf.getvalue())
    elif chosen is not None:
        _print_top(rows, chosen, taste_name if taste else None)
    if missing:
        console.print(f"[dim]{missing} scored file(s) no longer exist and were skipped (`charm forget` drops them).[/]")
    code = 0
    if export is not None:
        mode = "link" if link else "symlink" if symlink else "copy"
        code = _export(rows, export, mode, console)
    raise typer.Exit(code)


def _top_record(row: dict[str, Any], taste: bool = False) -> dict[str, Any]:
    record = {
        "rank": row["rank"],
        "score": row["score"],
        "percentile": row["percentile"],
        "path": row["path"],
        "model": row["model"],
        "date_taken": row["date_taken"],
        "camera": _camera(row["make"], row["camera_model"]),
        "make": row["make"],
        "camera_model": row["camera_model"],
        "lens": row["lens"],
        "width": row["width"],
        "height": row["height"],
        "sha256": row["sha256"],
        "checkpoint_id": row["checkpoint_id"],
        "preprocess": row["preprocess"],
        "precision": row["precision"],
        "rating": row["rating"],
        "label": row["label"],
        "flags": row["flags"],
        "measures": row["measures"],
    }
    if taste:  # predicted stars of the learned taste (None: the photo lacks the features it needs)
        record["taste"] = row["taste"]
    return record


def _rated(rating: int | None) -> str:
    """A decision from `charm review`/`rate`: 1..5, ✕ rejected, blank when none."""
    return "" if rating is None else "✕" if rating < 0 else str(rating)


def _print_top(rows: list[dict[str, Any]], model: str, taste: str | None = None) -> None:
    """At 80 columns: rank, score, percentile, the path under the folder they share, the date;
    the camera and the time of day join when there is room; with a taste, its predicted stars."""
    console = out()
    folder = common_folder([r["path"] for r in rows])
    columns = [Column("#", "right"), Column("score", "right"), Column("pct", "right"),
               Column("file", path=True), Column("taken", drop=1, short=10), Column("camera", drop=2, short=14, ellipsis=True)]  # fmt: skip
    table = [
        [str(r["rank"]), fmt_score(r["score"]), fmt_pct(r["percentile"]), relative_to(r["path"], folder),
         (r["date_taken"] or "")[:16].replace("T", " "), escape(r["camera"] or "")]
        for r in rows
    ]  # fmt: skip
    if any(r["rating"] is not None for r in rows):  # issue 14: decisions from `review`/`rate`, when there are any
        columns.insert(3, Column("★", "right", drop=1))
        for line, r in zip(table, rows, strict=True):
            line.insert(3, _rated(r["rating"]))
    if taste is not None:
        columns.insert(1, Column("taste", "right"))
        for line, r in zip(table, rows, strict=True):
            line.insert(1, "–" if r["taste"] is None else f"{r['taste']:.1f}")
    if any(r["flags"] for r in rows):  # technical flags, when any photo has one
        columns.append(Column("flags", drop=1))
        for line, r in zip(table, rows, strict=True):
            line.append(",".join(r["flags"]))
    how = f"model {model}" if taste is None else f"taste {taste} · model {model}"
    title = folder_title(f"top {len(rows)} · {how}", folder, console.width)
    print_table(console, columns, table, title=title)


def _export(rows: list[dict[str, Any]], dest: Path, mode: str, console: Console) -> int:
    from charmcli.library.export import ExportError, ExportItem, export_files

    items = [
        ExportItem(
            Path(r["path"]), r["rank"], r["score"],
            {"model": r["model"], "date_taken": r["date_taken"], "camera": r["camera"], "sha256": r["sha256"]},
        )
        for r in rows
    ]  # fmt: skip
    try:
        results = export_files(items, dest, mode)  # type: ignore[arg-type]
    except ExportError as exc:
        fail(str(exc))
    failed = [r for r in results if not r.ok]
    for r in failed:
        say_file(console, "[red]error[/red]", display_path(r.item.source), r.error or "")
    kept = sum(r.kept for r in results)
    again = f", {kept} already there" if kept else ""
    manifest = f" · manifest {escape(display_path(results.manifest))}" if results.manifest else ""
    console.print(
        f"Exported {len(results) - len(failed)} of {len(results)} ({mode}{again}) to "
        f"{escape(display_path(dest))}{manifest}"
    )
    return 1 if failed else 0


# -- charm show ---------------------------------------------------------------------------------


@bundled
def show(
    file: Annotated[Path, typer.Argument(help="A photo.", show_default=False)],
    db: DbOpt = None,
    json_: JsonOpt = False,
    explain: Annotated[
        Path | None,
        typer.Option("--explain", metavar="PNG", help="Write a PNG with the kept 28-px cells drawn over the photo (scores it first if needed)."),
    ] = None,
    model: ModelArgs = ModelArgs(),
    decode: DecodeArgs = DecodeArgs(),
    flag_limits: FlagLimitsOpt = None,
) -> None:
    """Everything known about one photo: scores per model, EXIF, technical flags and measures,
    the cells Charm kept at full resolution.

    With --explain, a photo that has no score for the --model yet is scored first (the model
    options are those of `charm compare`).
    """
    check_paths([file], files_only=True)
    limits = FlagArgs(flag_limits=flag_limits).limits()
    path = os.path.abspath(file)
    if len(model.model or []) > 1:
        fail("--explain draws one model's cells; give one --model")
    options = None
    if explain is not None:
        options = score_options(model, decode, retry_failed=True)
    wanted = (model.model or [None])[0]
    with open_db(db) as store:
        if (  # never write a picture over a photo
            explain is not None
            and os.path.exists(explain)
            and (os.path.samefile(explain, path) or store.photo_by_path(os.path.abspath(explain)) is not None)
        ):
            fail(f"--explain {display_path(explain)} is a photo; choose a new file name for the PNG")
        info = _photo_info(store, path, limits)
        wanted = wanted.lower() if wanted else None
        if options is not None and not any(wanted in (None, s["model"]) and s["input_size"] for s in info["scores"]):
            events, _name, _ckpt = score_files(store, options, [Path(path)])
            if events[0].status == "error":
                fail(f"{display_path(path)}: {events[0].error}", 1)
            info = _photo_info(store, path, limits)
    if explain is not None:
        _write_explain(path, info["scores"], wanted, explain)
    if json_:
        emit_json(info)
    else:
        _print_show(info)
    raise typer.Exit(0 if info["known"] else 1)


def _photo_info(store, path: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """What the database knows about the file at ``path`` (by path, else by content)."""
    from charmcli.library.decode import read_bytes

    photo = store.photo_by_path(path)
    st = os.stat(path)
    stale = photo is not None and (photo["size"], photo["mtime_ns"]) != (st.st_size, st.st_mtime_ns)
    sha = photo["sha256"] if photo is not None and not stale else None
    if sha is None:  # unknown path or changed file: the content may still be known
        try:
            sha = hashlib.sha256(read_bytes(path)).hexdigest()
        except Exception as exc:  # DecodeError: unreadable
            fail(f"{display_path(path)}: {exc}", 1)
        photo = store.photo_by_sha(sha) or photo
    scores = [_score_record(r) for r in store.scores_for_sha(sha)]
    for s in scores:  # standing among every photo scored with that model
        s["percentile"] = library_percentiles(store, s["model"], [s["score"]], s["precision"])[0]
    failure = store.failure_for(path)
    measures = store.measures_for(sha)
    found = evaluate(measures, limits)
    return {
        "path": path,
        "sha256": sha,
        "known": bool(scores) or photo is not None,
        "photo": {k: v for k, v in (photo or {}).items() if k not in ("id", "path", "sha256")} or None,
        "scores": scores,
        "flags": [f.name for f in found],
        "flag_reasons": [f.reason for f in found],
        "measures": measures,
        "tastes": _tastes_of(store, sha) if scores else [],
        "failure": failure and {k: failure[k] for k in ("reason", "kind", "failed_at")},
    }


def _tastes_of(store, sha: str) -> list[dict[str, Any]]:
    """What every learned taste predicts for this content (stars; None without the features it needs)."""
    from charmcli.taste.learn import load, predict

    found = []
    for t in store.tastes():
        try:
            value = predict(store, load(store, t["name"]), [sha])[0]
        except TasteError:  # unreadable: `charm learn` again replaces it
            value = None
        found.append({"name": t["name"], "taste": value, "ratings": t["ratings"], "learned_at": t["learned_at"]})
    return found


def _score_record(row: dict[str, Any]) -> dict[str, Any]:
    from charmcli.model.registry import MODELS, head_of

    return {
        "model": row["model"],
        "head": head_of(row["checkpoint_id"], MODELS.get(row["model"])),
        "score": row["score"],
        "outputs": json.loads(row["outputs"]),
        "checkpoint_id": row["checkpoint_id"],
        "preprocess": row["preprocess"],
        "precision": row["precision"],
        "n_tokens": row["n_tokens"],
        "input_size": [row["input_width"], row["input_height"]] if row["input_width"] else None,
        "token_path": row["token_path"],
        "cell_size": row["cell_size"],
        "kept_cells": json.loads(row["kept_cells"]),
        "scored_at": row["scored_at"],
        "seconds": row["seconds"],
    }


def _cell_map(record: dict[str, Any], max_cols: int) -> str | None:
    """A text map of the kept cells ('█' kept, '·' downsampled), if it fits the terminal."""
    size, cell = record.get("input_size"), record.get("cell_size") or 28
    if not size or not record["kept_cells"]:
        return None
    cols, rows = -(-size[0] // cell), -(-size[1] // cell)
    if cols > max_cols or rows > 48:
        return None
    kept = {tuple(c) for c in record["kept_cells"]}
    return "\n".join("".join("█" if (r, c) in kept else "·" for c in range(cols)) for r in range(rows))


_FACTS = ("width", "height", "format", "size", "date_taken", "make", "model", "lens", "focal_length",
          "f_number", "exposure_time", "iso", "orientation", "first_seen", "last_seen")  # fmt: skip


def _print_show(info: dict[str, Any]) -> None:
    """Facts as ``key value`` lines, then each score on two lines that fit 80 columns:
    model, score, percentile and when; then checkpoint, decode policy, input and kept cells."""
    console = out()
    console.print(f"[bold]{escape(fit_path(display_path(info['path']), console.width))}[/bold]")
    console.print(f"sha256 {info['sha256']}", soft_wrap=True)
    photo = info["photo"] or {}
    for key in _FACTS:
        if photo.get(key) is not None:
            label = "camera model" if key == "model" else key
            console.print(f"[dim]{label:<13}[/dim] {escape(str(photo[key]))}", soft_wrap=True)
    failure = info["failure"]
    if failure and not info["scores"]:
        when = (failure["failed_at"] or "")[:16].replace("T", " ")
        console.print(f"[red]Not scored: it failed[/red] ({escape(when)}): {escape(failure['reason'])}. "
                      "It is not tried again while it does not change; `charm score --retry-failed` does.")  # fmt: skip
        return
    if failure:
        console.print(f"[red]failed[/red] {escape(failure['reason'])} ({failure['failed_at']})")
    _print_flags(console, info)
    if not info["scores"]:
        console.print("Not scored yet: run `charm score` on it (or `charm show --explain OUT.png`).")
        return
    console.print("[bold]scores[/bold]")
    for s in info["scores"]:
        size = f"{s['input_size'][0]}x{s['input_size'][1]}" if s["input_size"] else "?"
        pct = "" if s.get("percentile") is None else f"  pct {s['percentile']:.0f}"
        console.print(f"  {escape(s['model']):<9} {fmt_score(s['score'])}{pct}  scored {s['scored_at'][:19].replace('T', ' ')}")
        how = f"checkpoint {s['checkpoint_id'][:12]} · {s['preprocess']} · {s['precision']}"
        what = f"input {size}, {s['n_tokens']} tokens · {len(s['kept_cells'])} kept cells ({s['token_path']})"
        if s["token_path"] is None:  # EAT (issue 13): the whole photo squashed, no tokens or cells
            what = f"input {size}, whole photo resized"
        indent = " " * 12
        if cell_len(indent + how + " · " + what) <= console.width:
            console.print(escape(f"{indent}{how} · {what}"))
        else:
            console.print(escape(f"{indent}{how}\n{indent}{what}"))
        if s.get("head"):
            console.print(f"{indent}head {escape(s['head'])}")
    for t in info["tastes"]:
        value = "– (scored before its features were kept: `charm score` it again)" if t["taste"] is None \
            else f"{t['taste']:.1f} stars"
        console.print(f"[bold]taste[/bold] {escape(t['name'])}: {value} [dim]({t['ratings']} ratings, "
                      f"learned {t['learned_at'][:10]})[/]")  # fmt: skip
    for s in info["scores"]:
        grid = _cell_map(s, max_cols=min(64, console.width))
        if grid:
            console.print(f"kept 28-px cells, model {s['model']} ({s['preprocess']}): █ full resolution, · downsampled")
            console.print(grid)
            break


def _print_flags(console: Console, info: dict[str, Any]) -> None:
    """Technical flags in words, then the measures behind them on lines that fit the terminal."""
    m = info["measures"]
    if m is None:
        return
    reasons = info["flag_reasons"]
    console.print("[bold]flags[/bold] " + ("none" if not reasons else ""))
    for reason in reasons:
        console.print(f"  [yellow]{escape(reason)}[/yellow]")
    parts = [
        f"focus {m.get('focus_width', 0):.2f} px",
        f"sharp area {m.get('sharp_area', 0):.0%}",
        f"motion {m.get('motion_ratio', 1):.2f}x {m.get('motion_width', 0):.1f} px @{m.get('motion_angle', 0):.0f}°",
        f"clipped {m.get('highlights', 0):.1%}",
        f"crushed {m.get('shadows', 0):.1%}",
        f"brightness {m.get('brightness', 0):.0%}",
        f"white point {m.get('luma_p99', 0):.0%}",
    ]
    note = eyes_note(m)
    parts.append(note if note else f"faces {m['faces']} (eyes closed {m['eyes_closed']}, {m['small_faces']} too small)")
    line = "[dim]measures[/dim]"
    width = len("measures")
    for part in parts:
        if width + 3 + cell_len(part) > console.width:
            console.print(line)
            line, width = " " * 8, 8
        line += (" · " if width > 8 else " ") + escape(part)
        width += 3 + cell_len(part)
    console.print(line)


def _write_explain(path: str, scores: list[dict[str, Any]], model: str | None, dest: Path) -> None:
    from charmcli.cull.explain import draw_kept_cells
    from charmcli.library.atomic import atomic_write_bytes
    from charmcli.library.decode import DecodeError, load_image

    # EAT scores (issue 13) have no token path: the photo is squashed to 224x224, no cells are kept
    chosen = [s for s in scores if (model is None or s["model"] == model.lower()) and s["input_size"] and s["token_path"]]
    if not chosen:
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
    err().print(f"Wrote {escape(display_path(dest))}")


# -- charm stats / forget -----------------------------------------------------------------------


def stats(db: DbOpt = None, json_: JsonOpt = False) -> None:
    """What the database holds: photos, scores per model, failures."""
    with open_db(db) as store:
        data = store.stats()
    if json_:
        emit_json(data)
        return
    console = out()
    console.print(f"database {escape(fit_path(display_path(data['db']), console.width - 20))} (schema {data['schema_version']})")
    console.print(f"{data['photos']} photos ({data['unique_content']} distinct contents), {data['scores']} scores")
    if data["models"]:
        columns = [Column("model"), Column("photos", "right"), Column("mean", "right"), Column("min", "right"),
                   Column("max", "right"), Column("ckpts", "right"), Column("last scored")]  # fmt: skip
        rows = [
            [escape(m["model"]), str(m["photos"]), fmt_score(m["mean_score"]), fmt_score(m["min_score"]),
             fmt_score(m["max_score"]), str(m["checkpoints"]), (m["last_scored"] or "")[:16].replace("T", " ")]
            for m in data["models"]
        ]  # fmt: skip
        print_table(console, columns, rows, title="per model")
    if data["failures"]:
        folder = common_folder([f["path"] for f in data["failures"]])
        rows = [[relative_to(f["path"], folder), escape(f["reason"])] for f in data["failures"]]
        title = folder_title(f"{len(data['failures'])} failed", folder, console.width)
        print_table(console, [Column("file", path=True), Column("reason", wrap=36)], rows, title=title)


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
    console = err()
    for p in photos + failures:
        console.print(f"{'would forget' if dry_run else 'forgot'} {escape(display_path(p))}")
    verb = "Would forget" if dry_run else "Forgot"
    console.print(f"{verb} {len(photos)} photo(s) and {len(failures)} failure(s)")
