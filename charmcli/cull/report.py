"""A static contact sheet: one HTML page plus JPEG thumbnails, viewable offline in any browser.

Why static: a contact sheet is something to open, scroll, send to a client or archive next to
the shoot. It must work from a USB stick years later, so there is no server, no JavaScript, no
web fonts and nothing fetched from the network. The page carries a Content-Security-Policy that
forbids every load except its own thumbnails and inline CSS, so even a hostile file name could
not make it phone home. All text coming from the library (file names, camera strings, dates) is
HTML-escaped; names that are not valid UTF-8 are shown with ``\\xNN`` escapes.

Two layouts:

* ``"top"`` — a ranked grid: rank, score, percentile, stars, date, camera, group mark.
* ``"groups"`` — one row per burst/near-duplicate group in capture order, the best frame
  highlighted, so a cull can be checked at a glance.

Thumbnails are decoded through :func:`charmcli.library.decode.load_image` (EXIF orientation
applied, HEIC/RAW/CMYK handled, big JPEGs drafted) in a few threads and saved as
``out_dir/thumbs/<hash of the path>.jpg``, a name that is safe whatever the photo is called.
A photo that cannot be decoded gets a "no preview" tile with the reason, not a broken page.
"""

from __future__ import annotations

import hashlib
import html
import os
import urllib.parse
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from charmcli.cull.groups import Group, PhotoRecord
from charmcli.cull.ratings import REJECTED, percentile_rank
from charmcli.library.atomic import atomic_write_bytes
from charmcli.library.scan import display_path

Layout = Literal["top", "groups"]
ImageLoader = Callable[[Path, int], Image.Image]

#: Only the page's own thumbnails (relative ``thumbs/``, i.e. ``file:`` or ``'self'``) and its
#: inline ``<style>`` may load; no scripts, frames, fonts, forms or network.
CSP = (
    "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)
THUMB_DIR = "thumbs"
EAGER_THUMBS = 48  #: images above the fold load at once; the rest lazily (big sheets stay fast)


@dataclass(frozen=True)
class ReportEntry:
    """One photo on the sheet. Everything but ``path`` and ``score`` is optional."""

    id: Hashable
    path: str | Path
    score: float
    rank: int | None = None  #: 1 = best in the selection
    percentile: float | None = None  #: 0..100 (see :func:`charmcli.cull.ratings.percentile_rank`)
    stars: int | None = None  #: -1 (rejected) or 1..5
    date: str | None = None
    camera: str | None = None
    group: int | None = None  #: :attr:`Group.index` (capture order: how the groups layout sorts)
    group_number: int | None = None  #: :attr:`Group.number` (what ``charm groups`` and the desk show)
    group_size: int = 1
    best: bool = False  #: best frame of a multi-frame group
    flags: tuple[tuple[str, str], ...] = ()  #: technical flags as (name, reason in words)


@dataclass(frozen=True)
class Thumb:
    """Where a thumbnail went (relative to the page) and its size, or why there is none."""

    src: str | None
    width: int = 0
    height: int = 0
    error: str | None = None


def camera_name(make: str | None, model: str | None) -> str | None:
    """``Canon`` + ``Canon EOS R5`` → ``Canon EOS R5`` (models often repeat the make)."""
    make, model = (make or "").strip(), (model or "").strip()
    if model and make and model.lower().startswith(make.split()[0].lower()):
        return model
    return " ".join(p for p in (make, model) if p) or None


def competition_ranks(scores: Sequence[float]) -> list[int]:
    """1-based ranks, highest score first; equal scores share a rank ("1224" ranking)."""
    values = np.asarray(scores, dtype=np.float64)
    order = np.sort(-values)
    return (np.searchsorted(order, -values, side="left") + 1).tolist()


def entries_from(
    records: Sequence[PhotoRecord],
    *,
    groups: Sequence[Group] | None = None,
    meta: Mapping[Hashable, Mapping[str, object]] | None = None,
    percentiles: Mapping[Hashable, float] | None = None,
    stars: Mapping[Hashable, int] | None = None,
    flags: Mapping[Hashable, Sequence[tuple[str, str]]] | None = None,
) -> list[ReportEntry]:
    """Build sheet entries from scored records (unscored ones are skipped).

    ``meta`` maps id → ``{"date_taken", "make", "camera_model"}`` (the library's metadata). Ranks are
    within ``records``; percentiles default to within ``records`` too, pass library-wide ones
    (``percentile_rank(selection, reference=library)``) for calibrated values. ``flags`` maps
    id → technical flags as ``(name, reason)`` pairs, shown as a mark on the card.
    """
    scored = [r for r in records if r.score is not None and np.isfinite(r.score)]
    ranks = competition_ranks([r.score for r in scored])
    pcts = percentile_rank([r.score for r in scored]) if percentiles is None else None
    where = {m.id: g for g in groups for m in g.members} if groups else {}
    out = []
    for i, r in enumerate(scored):
        info = (meta or {}).get(r.id, {})
        g = where.get(r.id)
        out.append(
            ReportEntry(
                id=r.id,
                path=r.path,
                score=float(r.score),  # type: ignore[arg-type]
                rank=ranks[i],
                percentile=percentiles.get(r.id) if percentiles is not None else float(pcts[i]),  # type: ignore[index]
                stars=(stars or {}).get(r.id),
                date=_str_or_none(info.get("date_taken")),
                camera=camera_name(_str_or_none(info.get("make")), _str_or_none(info.get("camera_model"))),
                group=None if g is None else g.index,
                group_number=None if g is None else g.number,
                group_size=1 if g is None else g.size,
                best=g is not None and g.size > 1 and g.best is r,
                flags=tuple((flags or {}).get(r.id, ())),
            )
        )
    return out


def _str_or_none(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


# -- thumbnails ---------------------------------------------------------------------------------


def default_loader(path: Path, max_side: int) -> Image.Image:
    """Decode with the library's policy (orientation applied), already shrunk near ``max_side``."""
    from charmcli.library.decode import load_image

    return load_image(path, max_side=max_side).image


def _thumb_name(path: str | Path) -> str:
    digest = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:20]
    return f"{digest}.jpg"


def make_thumbnail(
    path: str | Path, out_dir: Path, size: int, loader: ImageLoader = default_loader
) -> Thumb:
    """Write one JPEG thumbnail (long side ``size``) under ``out_dir/thumbs``; never raises for a bad photo."""
    name = _thumb_name(path)
    try:
        image = loader(Path(path), size * 2)
        image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = BytesIO()
        image.save(buf, "JPEG", quality=85, optimize=True, progressive=True)
    except Exception as exc:  # a broken photo gets a placeholder, not a broken report
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return Thumb(None, error=reason[:200])
    (out_dir / THUMB_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / THUMB_DIR / name, buf.getvalue())
    return Thumb(f"{THUMB_DIR}/{name}", image.width, image.height)


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light dark; --bg: #f4f4f2; --card: #fff; --ink: #1d1d1b; --dim: #6b6b66;
  --best: #2e8b57; --reject: #b03a2e; --line: #d9d9d4; }
@media (prefers-color-scheme: dark) { :root { --bg: #1b1b1a; --card: #262624; --ink: #ecece8;
  --dim: #a3a39c; --line: #3a3a37; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; background: var(--bg); color: var(--ink);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0 0 20px; color: var(--dim); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--tw), 1fr)); gap: 16px; }
.card { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  overflow: hidden; display: flex; flex-direction: column; }
.card.best { border: 3px solid var(--best); box-shadow: 0 0 0 3px color-mix(in srgb, var(--best) 25%, transparent); }
.card.rejected { opacity: .55; }
.card a.photo { display: flex; align-items: center; justify-content: center; background: #111;
  aspect-ratio: 4 / 3; }
.card img { max-width: 100%; max-height: 100%; height: auto; display: block; }
.noimg { color: #bbb; padding: 12px; font-size: 12px; text-align: center; }
figcaption { padding: 8px 10px; display: grid; gap: 2px; }
.top { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; }
.rank { font-weight: 700; font-size: 16px; }
.score { font-variant-numeric: tabular-nums; font-weight: 600; }
.name { font-size: 12px; overflow-wrap: anywhere; }
.meta { font-size: 12px; color: var(--dim); }
.stars { color: #c9a100; letter-spacing: 1px; }
.stars.reject { color: var(--reject); }
.badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 11px; font-weight: 700;
  background: var(--best); color: #fff; }
.flag { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 11px; font-weight: 700;
  background: #b85c00; color: #fff; margin-right: 3px; }
.card.flagged img { opacity: 0.75; }
section.group { margin: 0 0 28px; }
section.group h2 { font-size: 15px; margin: 0 0 8px; font-weight: 600; }
section.group h2 span { color: var(--dim); font-weight: 400; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _file_uri(path: str | Path) -> str:
    """A ``file://`` link that survives any byte in the name (percent-encoded, then HTML-escaped)."""
    raw = os.fsencode(os.path.abspath(path))
    return "file://" + urllib.parse.quote(raw, safe="/")


def _stars_html(stars: int | None) -> str:
    if stars is None or stars == 0:
        return ""
    if stars == REJECTED:
        return '<span class="stars reject" title="rejected">✕ rejected</span>'
    return f'<span class="stars" title="{stars} of 5 stars">{"★" * stars}{"☆" * (5 - stars)}</span>'


def _card(entry: ReportEntry, thumb: Thumb, *, eager: bool, show_group: bool) -> str:
    name = display_path(Path(entry.path).name)
    classes = ["card"] + (["best"] if entry.best else []) + (["rejected"] if entry.stars == REJECTED else [])
    classes += ["flagged"] if entry.flags else []
    if thumb.src:
        loading = "eager" if eager else "lazy"
        picture = (
            f'<img src="{_e(thumb.src)}" width="{thumb.width}" height="{thumb.height}" '
            f'alt="{_e(name)}" loading="{loading}" decoding="async">'
        )
    else:
        picture = f'<div class="noimg" title="{_e(thumb.error or "")}">no preview<br>{_e(thumb.error or "")}</div>'
    pct = "" if entry.percentile is None else f'<span title="percentile">p{entry.percentile:.0f}</span>'
    rank = "" if entry.rank is None else f'<span class="rank">#{entry.rank}</span>'
    meta = " · ".join(_e(v) for v in (entry.date and entry.date.replace("T", " "), entry.camera) if v)
    group = ""
    if show_group and entry.group is not None and entry.group_size > 1:
        group = f"group {entry.group_number} · {entry.group_size} frames"
    badge = '<span class="badge">best</span> ' if entry.best else ""
    marks = "".join(
        f'<span class="flag" data-flag="{_e(name)}" title="{_e(reason)}">{_e(name)}</span>' for name, reason in entry.flags
    )
    return (
        f'<figure class="{" ".join(classes)}" data-rank="{entry.rank or ""}" data-score="{entry.score:.6g}">'
        f'<a class="photo" href="{_e(_file_uri(entry.path))}">{picture}</a>'
        f"<figcaption>"
        f'<div class="top">{rank}<span class="score" title="Charm score">{entry.score:.3f}</span></div>'
        f'<div class="name">{badge}{_e(name)}</div>'
        f'<div class="meta">{pct} {_stars_html(entry.stars)}</div>'
        + (f'<div class="meta">{meta}</div>' if meta else "")
        + (f'<div class="meta">{group}</div>' if group else "")
        + (f'<div class="flags">{marks}</div>' if marks else "")
        + "</figcaption></figure>"
    )


def render_html(
    entries: Sequence[ReportEntry],
    thumbs: Mapping[Hashable, Thumb],
    *,
    layout: Layout = "top",
    title: str = "Charm contact sheet",
    subtitle: str | None = None,
    thumb_px: int = 320,
) -> str:
    """The page as a string (no files touched); :func:`write_report` is the usual entry point."""
    if layout not in ("top", "groups"):
        raise ValueError(f"layout must be 'top' or 'groups', not {layout!r}")
    n_groups = len({e.group for e in entries if e.group is not None and e.group_size > 1})
    summary = f"{len(entries)} photo{'s' * (len(entries) != 1)}"
    if n_groups:
        summary += f" · {n_groups} group{'s' * (n_groups != 1)} of similar frames"
    if subtitle:
        summary = f"{subtitle} · {summary}"
    body: list[str] = []
    shown = 0
    if layout == "top":
        ordered = sorted(entries, key=lambda e: (e.rank if e.rank is not None else 1 << 30, -e.score))
        cards = []
        for e in ordered:
            cards.append(_card(e, thumbs[e.id], eager=shown < EAGER_THUMBS, show_group=True))
            shown += 1
        body.append(f'<main class="grid">{"".join(cards)}</main>')
    else:
        by_group: dict[object, list[ReportEntry]] = {}
        for e in entries:
            key = ("g", e.group) if e.group is not None else ("solo", e.id)
            by_group.setdefault(key, []).append(e)
        ordered_groups = sorted(by_group.values(), key=lambda es: (es[0].group is None, es[0].group or 0))
        # runs of consecutive single photos share one section: a heading per photo wastes the page
        sections: list[list[ReportEntry]] = []
        for members in ordered_groups:
            single = len(members) == 1
            if single and sections and len(sections[-1]) >= 1 and all(m.group_size <= 1 for m in sections[-1]):
                sections[-1].extend(members)
            else:
                sections.append(list(members))
        body.append("<main>")
        for members in sections:
            if members[0].group_size > 1:
                best = next((m for m in members if m.best), max(members, key=lambda m: m.score))
                head = (f"Group {members[0].group_number} <span>· {len(members)} frames · best "
                        f"{_e(display_path(Path(best.path).name))} ({best.score:.3f})</span>")
            else:
                head = f"Single photo{'s' * (len(members) != 1)} <span>· {len(members)}</span>"
            cards = []
            for m in members:
                cards.append(_card(m, thumbs[m.id], eager=shown < EAGER_THUMBS, show_group=False))
                shown += 1
            body.append(f'<section class="group"><h2>{head}</h2><div class="grid">{"".join(cards)}</div></section>')
        body.append("</main>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f'<body style="--tw: {int(thumb_px * 0.75)}px"><header><h1>{_e(title)}</h1><p>{_e(summary)}</p></header>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(
    out_dir: str | Path,
    entries: Sequence[ReportEntry],
    *,
    layout: Layout = "top",
    title: str = "Charm contact sheet",
    subtitle: str | None = None,
    thumb_px: int = 320,
    loader: ImageLoader = default_loader,
    workers: int | None = None,
) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/thumbs/*.jpg``; returns the page's path.

    ``entries`` are shown in rank order (``"top"``) or grouped by ``group`` (``"groups"``).
    ``loader(path, max_side)`` decodes a photo (swap it in tests or for a cached preview).
    The page is replaced atomically, so a browser refresh never shows half a page.
    """
    if thumb_px < 16:
        raise ValueError("thumb_px must be at least 16")
    out = Path(out_dir)
    (out / THUMB_DIR).mkdir(parents=True, exist_ok=True)
    unique = {e.id: e for e in entries}
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = pool.map(lambda e: make_thumbnail(e.path, out, thumb_px, loader), unique.values())
        thumbs = dict(zip(unique, made, strict=True))
    page = render_html(entries, thumbs, layout=layout, title=title, subtitle=subtitle, thumb_px=thumb_px)
    return atomic_write_bytes(out / "index.html", page.encode("utf-8"))

