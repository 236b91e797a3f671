"""``charm groups``, ``charm rate`` and ``charm report``: culling a library that is already scored.

Glue only. Which photos: :func:`charmcli.selection.select` (latest score per content for one
model, with its CLS embedding, files that still exist, library percentile and last decision
attached). What to do with them:
:mod:`charmcli.cull` (groups, ratings, XMP sidecars, the contact sheet). Nothing here loads the
model or imports torch: culling runs on stored scores and embeddings.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape

from charmcli.cli.options import (
    MIN_PATH,
    Chain,
    ChainOpt,
    Column,
    DbOpt,
    FlagArgs,
    FlagLimitsOpt,
    GapOpt,
    JsonOpt,
    PathsArg,
    RankModelOpt,
    SimilarityOpt,
    TasteNameOpt,
    TasteOpt,
    bundled,
    check_paths,
    common_folder,
    emit_json,
    err,
    fail,
    fmt_pct,
    fmt_score,
    folder_title,
    open_db,
    out,
    print_table,
    relative_to,
    say,
    say_file,
)
from charmcli.cull.groups import (
    DEFAULT_MIN_SIMILARITY,
    Group,
    PhotoRecord,
    adjacent_similarities,
    suggest_min_similarity,
)
from charmcli.cull.ratings import DEFAULT_BEST_LABEL, DEFAULT_STAR_THRESHOLDS
from charmcli.library.scan import display_path
from charmcli.selection import Grouping, Query, Selection, liked, select, unscored_model
from charmcli.store import Store
from charmcli.taste.learn import DEFAULT_TASTE


class SidecarChoice(str, Enum):
    ext = "ext"
    adobe = "adobe"


class LayoutChoice(str, Enum):
    top = "top"
    groups = "groups"


def load_selection(
    store: Store, model: str | None, paths: Sequence[Path] = (), flags: FlagArgs = FlagArgs(), taste: str | None = None
) -> Selection:
    """The photos a cull command works on (with percentiles, decisions and technical flags under
    the limits asked for, and ``taste`` when one is named); says on stderr when there is nothing
    to work on."""
    from charmcli.taste.learn import TasteError

    limits, hidden = flags.limits(), flags.hidden()
    problem = unscored_model(store, model)
    if problem is not None and problem[1]:
        fail(problem[0])
    if problem is not None:
        err().print(escape(problem[0]))
    try:
        sel = select(store, Query(model=model, paths=[str(p) for p in paths], flag_limits=limits, hide_flags=hidden,
                                  taste=taste))  # fmt: skip
    except TasteError as exc:
        fail(str(exc))
    if sel.model is None:
        err().print("No scores yet: run `charm score PATH...` first.")
    if sel.missing:
        err().print(f"[dim]{sel.missing} scored file(s) no longer exist and were skipped (`charm forget` drops them).[/]")
    return sel


def _groups_of(records: Sequence[PhotoRecord], gap: float, similarity: float, chain: Chain) -> list[Group]:
    try:
        return Grouping(gap, similarity, chain.value).groups(records)
    except ValueError as exc:  # embeddings of different sizes: mixed checkpoints under one name
        fail(str(exc))


def _taken(row: dict[str, Any], record: PhotoRecord | None = None) -> str:
    """When the photo was taken; the file's time (marked ``file``) when EXIF has none."""
    taken = (row.get("date_taken") or "")[:19].replace("T", " ")
    if taken or record is None or record.time_source != "mtime" or record.timestamp is None:
        return taken
    from datetime import datetime

    return datetime.fromtimestamp(record.timestamp).strftime("%Y-%m-%d %H:%M:%S") + " (file)"


# -- charm groups -------------------------------------------------------------------------------


def groups(
    paths: PathsArg = None,
    gap: GapOpt = 3.0,
    similarity: SimilarityOpt = DEFAULT_MIN_SIMILARITY,
    chain: ChainOpt = Chain.previous,
    all_: Annotated[bool, typer.Option("--all", help="List single photos too (groups of one).")] = False,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Histogram of similarities of neighbouring frames + a suggested --similarity.")
    ] = False,
    model: RankModelOpt = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
    flag_limits: FlagLimitsOpt = None,
) -> None:
    """Bursts and near-duplicates: photos close in time and alike to Charm, each group's best frame marked.

    Frames are ordered by capture time (EXIF DateTimeOriginal + sub-seconds, else the file's
    time); a group goes on while the next frame is at most --gap seconds later and its
    embedding's cosine similarity is at least --similarity (to the previous frame, or with
    --chain best to the group's best frame so far). Groups are numbered 1, 2, … as listed.
    """
    paths = paths or []
    check_paths(paths)
    flag_args = FlagArgs(flag_limits=flag_limits)
    flag_args.limits()  # a usage error answers before the database opens
    with open_db(db) as store:
        sel = load_selection(store, model, paths, flag_args)
    if sel.model is None:
        if json_:
            emit_json({} if calibrate else [])
        return
    if calibrate:
        _calibrate(sel, gap, similarity, json_)
        return
    found = _groups_of(sel.records, gap, similarity, chain)
    rows = sel.by_id
    shown = sorted((g for g in found if all_ or g.size > 1), key=lambda g: g.number)
    data = [_group_json(g, rows) for g in shown]
    if json_:
        emit_json(data)
    else:
        _print_groups(data, sel.model, gap, similarity, chain)
    if sel.records:
        multi = [g for g in found if g.size > 1]
        in_multi = sum(g.size for g in multi)
        untimed = sum(r.timestamp is None or r.embedding is None for r in sel.records)
        note = f" ({untimed} without capture time or embedding stay single)" if untimed else ""
        say(err(), f"{len(sel.records)} photos: {len(multi)} group(s) of 2 or more frames hold {in_multi} of them;",
            f"keeping each group's best frame and every single photo leaves {len(found)}{note}.", sep=" ")  # fmt: skip


def _group_json(g: Group, rows: dict[Hashable, dict[str, Any]]) -> dict[str, Any]:
    seconds = None if g.start is None or g.end is None else round(g.end - g.start, 3)
    return {
        "group": g.number,
        "size": g.size,
        "best": str(g.best.path),
        "best_score": g.best.score,
        "seconds": seconds,
        "time_source": g.members[0].time_source,
        "members": [
            {
                "path": str(m.path),
                "score": m.score,
                "percentile": rows[m.id]["percentile"],
                "date_taken": rows[m.id].get("date_taken"),
                "taken": _taken(rows[m.id], m),
                "time_source": m.time_source,
                "best": m is g.best,
                "flags": rows[m.id]["flags"],
            }
            for m in g.members
        ],
    }


def _print_groups(data: list[dict[str, Any]], model: str | None, gap: float, similarity: float, chain: Chain) -> None:
    """At 80 columns: group, best mark, score, percentile, the file under the shared folder; the
    capture time joins when there is room."""
    console = out()
    folder = common_folder([m["path"] for g in data for m in g["members"]])
    columns = [Column("group", "right"), Column(""), Column("score", "right"), Column("pct", "right"),
               Column("file", path=True), Column("taken", drop=1, short=10)]  # fmt: skip
    table: list[list[str] | None] = []
    flagged = any(m["flags"] for g in data for m in g["members"])
    if flagged:  # technical flags, when any frame has one: why a best-scored frame is not the pick
        columns.append(Column("flags", drop=2))
    for g in data:
        span = f" · {g['seconds']:g} s" if g["seconds"] is not None else ""
        for i, m in enumerate(g["members"]):
            head = f"{g['group']} ({g['size']}{span})" if i == 0 and g["size"] > 1 else (str(g["group"]) if i == 0 else "")
            table.append([head, "[green]★ best[/]" if m["best"] and g["size"] > 1 else "", fmt_score(m["score"]),
                          fmt_pct(m["percentile"]), relative_to(m["path"], folder), escape(m["taken"])])  # fmt: skip
            if flagged:
                table[-1].append(",".join(m["flags"]))  # type: ignore[union-attr]
        table.append(None)
    base = f"{len(data)} group(s) · model {model} · gap {gap:g} s · similarity {similarity:g} · chain {chain.value}"
    # when each frame was taken tells a burst apart; a long name keeps its start and end
    print_table(console, columns, table[:-1], title=folder_title(base, folder, console.width), min_path=MIN_PATH)


def _histogram(sims: np.ndarray, width: float = 0.02, max_bins: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Bins of ``width`` from just under the lowest similarity up to 1 (wider if there would be too many)."""
    lo = max(-1.0, math.floor(float(sims.min()) / width) * width)
    n = max(1, math.ceil((1.0 - lo) / width - 1e-9))
    edges = np.linspace(lo, 1.0, min(n, max_bins) + 1)
    counts, edges = np.histogram(sims, bins=edges)
    return counts, edges


def _calibrate(sel: Selection, gap: float, similarity: float, json_: bool) -> None:
    sims = np.clip(adjacent_similarities(sel.records, max_gap=gap), -1.0, 1.0) if sel.records else np.zeros(0)
    suggested = suggest_min_similarity(sims)
    linked = int((sims >= similarity).sum())
    counts, edges = _histogram(sims) if sims.size else (np.zeros(0, dtype=int), np.zeros(1))
    quantiles = {f"p{q}": round(float(np.quantile(sims, q / 100)), 4) for q in (5, 25, 50, 75, 95)} if sims.size else {}
    data = {
        "model": sel.model,
        "gap": gap,
        "pairs": int(sims.size),
        "similarity": similarity,
        "linked": linked,
        "suggested": None if suggested is None else round(suggested, 4),
        "quantiles": quantiles,
        "histogram": [
            {"from": round(float(a), 4), "to": round(float(b), 4), "count": int(c)}
            for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ],
    }
    if json_:
        emit_json(data)
        return
    console = out()
    say(console, f"Cosine similarity of consecutive frames ≤ {gap:g} s apart:",
        f"{sims.size} pair(s), model {sel.model}", sep=" ")  # fmt: skip
    peak = max(int(counts.max()) if counts.size else 0, 1)
    for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True):
        marks = []
        if a <= similarity < b or (b == 1.0 and similarity == 1.0):
            marks.append("← --similarity")
        if suggested is not None and (a <= suggested < b):
            marks.append("← suggested")
        bar = "█" * round(40 * int(c) / peak)
        console.print(f"  {a:6.3f}–{b:5.3f} │{bar:<40} {int(c):>5} {' '.join(marks)}")
    if suggested is None:
        say(console, f"Too few pairs ({sims.size}; 20 needed) or no spread to suggest a threshold;",
            f"keep --similarity {similarity:g}.", sep=" ")  # fmt: skip
    else:
        say(console, f"Suggested --similarity {suggested:.3f}",
            "(Otsu: burst neighbours near 1 vs the rest).", sep=" ")  # fmt: skip
    console.print(f"At --similarity {similarity:g}, {linked} of {sims.size} pair(s) would link.")


# -- charm rate ---------------------------------------------------------------------------------


def _parse_thresholds(text: str) -> tuple[float, float, float, float]:
    from charmcli.cull.ratings import stars_for_percentiles

    try:
        cuts = tuple(float(v) for v in text.replace(" ", "").split(","))
        stars_for_percentiles([50.0], cuts)  # validates: 4 ascending values within 0..100
    except ValueError:
        fail(f"--stars {text!r}: need 4 ascending percentiles within 0..100, e.g. 10,30,70,90")
    return cuts  # type: ignore[return-value]


def _stars_text(value: str | int | None) -> str:
    if value is None:
        return "–"
    try:
        n = round(float(value))
    except ValueError:
        return escape(str(value))
    if n < 0:
        return "✕ rejected"
    return "★" * n if n else "0"


def rate(
    paths: PathsArg = None,
    stars: Annotated[
        str, typer.Option("--stars", metavar="CUTS", help="Percentile cuts between 1|2|3|4|5 stars, within the photos rated.")
    ] = ",".join(f"{v:g}" for v in DEFAULT_STAR_THRESHOLDS),
    reject_below: Annotated[
        float | None, typer.Option("--reject-below", min=0, max=100, help="Mark photos under this percentile rejected (-1).")
    ] = None,
    label_best: Annotated[
        str, typer.Option("--label-best", help="Colour label for each burst's best frame (Red/Yellow/Green/Blue/Purple, or none).")
    ] = DEFAULT_BEST_LABEL,
    sidecar: Annotated[
        SidecarChoice, typer.Option("--sidecar", help="ext: IMG.jpg.xmp (darktable, digiKam); adobe: IMG.xmp (Lightroom, Bridge).")
    ] = SidecarChoice.ext,
    gap: GapOpt = 3.0,
    similarity: SimilarityOpt = DEFAULT_MIN_SIMILARITY,
    chain: ChainOpt = Chain.previous,
    model: RankModelOpt = None,
    taste: TasteOpt = False,
    taste_name: TasteNameOpt = DEFAULT_TASTE,
    db: DbOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would change; write nothing.")] = False,
    json_: JsonOpt = False,
    reject_flagged: Annotated[
        bool, typer.Option("--reject-flagged", help="Reject (-1) photos with a technical flag instead of 1 star.")
    ] = False,
    flag_limits: FlagLimitsOpt = None,
) -> None:
    """Write star ratings (by percentile within the photos rated) and a best-of-burst label to XMP sidecars.

    A photo with a technical flag (soft, motion blur, bad exposure, closed eyes: `charm show`
    says which) gets at most 1 star, or a reject with --reject-flagged. Sidecars are merged: every
    other field is kept, only xmp:Rating and xmp:Label change, and a sidecar that already says
    the same is not rewritten. Photos themselves are never written. With --taste the stars
    follow your learned taste instead of the score (photos it cannot judge are left alone);
    either way they are charm's guesses, which `charm learn` ignores.
    """
    from charmcli.cull.ratings import best_of_group_flags, plan_ratings
    from charmcli.cull.xmp import apply_ratings, ratings_items

    cuts = _parse_thresholds(stars)
    label = None if label_best.strip().lower() in ("", "none") else label_best.strip()
    paths = paths or []
    check_paths(paths)
    flag_args = FlagArgs(flag_limits=flag_limits)
    flag_args.limits()  # a usage error answers before the database opens
    with open_db(db) as store:
        sel = load_selection(store, model, paths, flag_args, taste_name if taste else None)
    records = sel.records
    # what the stars and the burst's pick follow: the score, or the taste
    ranked = liked(records, [row["taste"] for row in sel.rows]) if taste else records
    best = best_of_group_flags(_groups_of(ranked, gap, similarity, chain)) if label and records else None
    flagged = {r.id for r, row in zip(records, sel.rows, strict=True) if row["flags"]}
    plans = plan_ratings({r.id: r.score for r in ranked}, thresholds=cuts, reject_below=reject_below,  # type: ignore[misc]
                         best_of_group=best, best_label=label, flagged=flagged,
                         reject_flagged=reject_flagged)  # fmt: skip
    records = [r for r in records if r.id in plans]
    by_path = {str(r.path): r for r in records}
    items = sorted(ratings_items({r.id: r.path for r in records}, plans), key=lambda it: str(it[0]))
    changes = apply_ratings(items, style=sidecar.value, dry_run=dry_run)
    if not dry_run:  # issue 14: the database remembers what each sidecar now says (top, review show it)
        from charmcli.cull.xmp import rating_number

        rows = sel.by_id
        with open_db(db) as store:
            store.record_decisions([(str(ch.photo), rows[by_path[str(ch.photo)].id]["sha256"], rating_number(ch.new_rating),
                                     ch.new_label) for ch in changes if ch.error is None], source="rate")  # fmt: skip
    photos = []
    by_id = sel.by_id
    for ch in changes:
        r = by_path[str(ch.photo)]
        plan = plans[r.id]
        status = ("error" if ch.error else "unchanged" if not ch.changed
                  else ("would " if dry_run else "") + ("update" if ch.existed else "create"))  # fmt: skip
        photos.append({
            "path": str(ch.photo), "sidecar": str(ch.sidecar), "score": r.score,
            **({"taste": sel.by_id[r.id]["taste"]} if taste else {}),
            "percentile": round(plan.percentile, 2), "stars": plan.stars, "label": plan.label,
            "flags": by_id[r.id]["flags"],
            "old_rating": ch.old_rating, "new_rating": ch.new_rating, "old_label": ch.old_label,
            "new_label": ch.new_label, "existed": ch.existed, "status": status, "written": ch.written,
            "error": ch.error,
        })  # fmt: skip
    errors = [p for p in photos if p["error"]]
    counts = {k: sum(p["status"].endswith(k) for p in photos) for k in ("create", "update", "unchanged")}
    if json_:
        emit_json({
            "model": sel.model, "dry_run": dry_run, "sidecar": sidecar.value, "thresholds": list(cuts),
            "reject_below": reject_below, "label": label, "photos": photos,
            "created": counts["create"], "updated": counts["update"], "unchanged": counts["unchanged"],
            "errors": len(errors),
        })  # fmt: skip
    elif photos:
        _print_rate(photos, dry_run)
    console = err()
    for p in errors:
        say_file(console, "[red]error[/red]", display_path(p["path"]), p["error"])
    if records:
        verb = "Would write" if dry_run else "Wrote"
        say(console,
            f"{verb} {counts['create'] + counts['update']} sidecar(s) ({counts['create']} new), {counts['unchanged']} "
            f"unchanged, {len(errors)} error(s)",
            f"stars by percentile within {len(records)} photo(s), cuts {'/'.join(f'{c:g}' for c in cuts)}, "
            f"model {sel.model}" + (f", taste {taste_name}" if taste else ""),
            "nothing written (--dry-run)" if dry_run else "")  # fmt: skip
    elif sel.model:
        console.print("Nothing to rate.")
    raise typer.Exit(1 if errors else 0)


def _print_rate(photos: list[dict[str, Any]], dry_run: bool) -> None:
    """At 80 columns: the file under the shared folder, score, percentile, rating (old → new),
    label and what happened to the sidecar; the label goes first when narrow."""
    console = out()
    folder = common_folder([p["path"] for p in photos])
    columns = [Column("file", path=True), Column("score", "right", drop=1), Column("pct", "right"),
               Column("rating"), Column("label", drop=2), Column("sidecar")]  # fmt: skip
    rows = []
    for p in photos:
        rating = _stars_text(p["new_rating"])
        if p["old_rating"] != p["new_rating"]:
            rating = f"{_stars_text(p['old_rating'])} → {rating}"
        label = escape(p["new_label"] or "")
        if p["old_label"] != p["new_label"]:
            label = f"{escape(p['old_label'] or '–')} → {escape(p['new_label'] or '–')}"
        status = f"[red]{p['status']}[/red]" if p["error"] else p["status"]
        rows.append([relative_to(p["path"], folder), fmt_score(p["score"]), f"{p['percentile']:.0f}", rating,
                     label, status])  # fmt: skip
    base = "ratings" + (" (dry run: nothing written)" if dry_run else "")
    # what a photo gets matters more here than its whole name (which keeps its start and end)
    print_table(console, columns, rows, title=folder_title(base, folder, console.width), min_path=MIN_PATH)


# -- charm report -------------------------------------------------------------------------------


def _sidecar_stars(paths: Sequence[str]) -> dict[str, int]:
    """Stars (1..5) and rejects (-1) already in XMP sidecars, by photo path; unreadable ones are skipped."""
    from charmcli.cull.xmp import sidecar_ratings

    found, _problems = sidecar_ratings(paths)
    return {path: stars for path, stars in found.items() if stars == -1 or 1 <= stars <= 5}


@bundled
def report(
    paths: PathsArg = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help="Folder for index.html and thumbs/ (created).")] = None,
    layout: Annotated[
        LayoutChoice, typer.Option("--layout", help="top: ranked grid; groups: one row per burst, best frame marked.")
    ] = LayoutChoice.top,
    top_n: Annotated[
        int, typer.Option("--top", min=0, help="top: the N best photos; groups: the N best groups (all frames). 0 = all.")
    ] = 100,
    thumb: Annotated[int, typer.Option("--thumb", min=64, max=2048, help="Thumbnail long side in pixels.")] = 320,
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "Charm contact sheet",
    gap: GapOpt = 3.0,
    similarity: SimilarityOpt = DEFAULT_MIN_SIMILARITY,
    chain: ChainOpt = Chain.previous,
    model: RankModelOpt = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
    flags: FlagArgs = FlagArgs(),
) -> None:
    """A static HTML contact sheet (index.html + JPEG thumbnails) that opens offline in any browser.

    Cards show rank, score, library percentile, stars already in XMP sidecars (e.g. from
    `charm rate`), date, camera, burst membership and technical flags. Prints the page's file:// URI.
    """
    from charmcli.cull.report import entries_from, write_report

    if out is None:
        fail("report needs --out DIR (-o DIR)")
    if out.exists() and not out.is_dir():
        fail(f"--out {display_path(out)} is a file, not a folder")
    paths = paths or []
    check_paths(paths)
    with open_db(db) as store:
        sel = load_selection(store, model, paths, flags)
    if not sel.records:
        fail("no scored photos to put on the sheet (run `charm score PATH...` first)", 1)
    records = sel.records
    found = _groups_of(records, gap, similarity, chain)
    rows = sel.by_id
    meta = {r.id: {k: rows[r.id].get(k) for k in ("date_taken", "make", "camera_model")} for r in records}
    sidecar = _sidecar_stars([str(r.path) for r in records])
    stars = {r.id: sidecar[str(r.path)] for r in records if str(r.path) in sidecar}
    for r in records:  # no readable sidecar rating: what charm last wrote, if a rating
        rating = rows[r.id]["rating"]
        if r.id not in stars and rating is not None and (rating == -1 or 1 <= rating <= 5):
            stars[r.id] = rating
    pct = {r.id: rows[r.id]["percentile"] for r in records if rows[r.id]["percentile"] is not None}
    marks = {r.id: list(zip(rows[r.id]["flags"], rows[r.id]["flag_reasons"], strict=True)) for r in records}
    entries = entries_from(records, groups=found, meta=meta, percentiles=pct, stars=stars, flags=marks)  # best first
    if layout is LayoutChoice.top:
        chosen = entries[:top_n] if top_n else entries
        what = f"best {len(chosen)} of {len(records)}"
    else:
        ranked = sorted(found, key=lambda g: -(g.best.score if g.best.score is not None else -math.inf))
        keep = ranked[:top_n] if top_n else ranked
        ids = {m.id for g in keep for m in g.members}
        chosen = [e for e in entries if e.id in ids]
        what = f"best {len(keep)} of {len(found)} groups"
    subtitle = f"model {sel.model} · {what}"
    try:
        page = write_report(out, chosen, layout=layout.value, title=title, subtitle=subtitle, thumb_px=thumb)
    except OSError as exc:
        fail(f"cannot write the report to {display_path(out)}: {exc.strerror or exc}")
    page = page.resolve()
    n_groups = len({e.group for e in chosen if e.group_size > 1})
    if json_:
        emit_json({"page": str(page), "uri": page.as_uri(), "layout": layout.value, "model": sel.model,
                   "photos": len(chosen), "groups": n_groups, "thumbs": str(page.parent / "thumbs")})  # fmt: skip
    else:
        sys.stdout.write(page.as_uri() + "\n")
    say(err(), f"Contact sheet: {len(chosen)} photo(s), {n_groups} group(s) of similar frames, {layout.value} layout",
        f"→ {escape(display_path(page))}", sep=" ")  # fmt: skip


__all__ = ["groups", "load_selection", "rate", "report"]
