"""``charm review``: the command. Glue only: validate, open the store, build the desk (:mod:`charmcli.review`), serve."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from charmcli.cli.cull import SidecarChoice
from charmcli.cli.options import (
    Chain,
    ChainOpt,
    DbOpt,
    FlagArgs,
    FlagLimitsOpt,
    GapOpt,
    PathsArg,
    RankModelOpt,
    SimilarityOpt,
    TasteNameOpt,
    TasteOpt,
    check_paths,
    err,
    fail,
)
from charmcli.cull.groups import DEFAULT_MAX_GAP_S, DEFAULT_MIN_SIMILARITY
from charmcli.cull.ratings import DEFAULT_BEST_LABEL
from charmcli.library.scan import display_path
from charmcli.taste.learn import DEFAULT_TASTE


def review(
    paths: PathsArg = None,
    model: RankModelOpt = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0 = any free port).")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the URL only; do not open a browser.")] = False,
    sidecar: Annotated[
        SidecarChoice, typer.Option("--sidecar", help="ext: IMG.jpg.xmp (darktable, digiKam); adobe: IMG.xmp (Lightroom, Bridge).")
    ] = SidecarChoice.ext,
    pick_label: Annotated[
        str, typer.Option("--pick-label", help="Colour label P sets (Red/Yellow/Green/Blue/Purple).")
    ] = DEFAULT_BEST_LABEL,
    gap: GapOpt = DEFAULT_MAX_GAP_S,
    similarity: SimilarityOpt = DEFAULT_MIN_SIMILARITY,
    chain: ChainOpt = Chain.previous,
    taste: TasteOpt = False,
    taste_name: TasteNameOpt = DEFAULT_TASTE,
    db: DbOpt = None,
    flag_limits: FlagLimitsOpt = None,
) -> None:
    """A culling desk in the browser: ranked grid, bursts, large view, keyboard ratings to XMP.

    Serves on 127.0.0.1 only, with a fresh token in the printed URL; works offline. Keys: arrows
    move, Enter opens, 1-5 rate, 0 clears, X rejects, P picks (colour label), G walks a burst,
    E shows the cells Charm kept, Z zooms to 100 %, U undoes. Ratings go to XMP sidecars (merged,
    as `charm rate` writes them) and the database; photos are never written. Ctrl-C stops.
    """
    from charmcli.store import Store, StoreError, default_db_path

    paths = paths or []
    check_paths(paths)
    label = pick_label.strip()
    if not label or len(label) > 32 or not label.isprintable():
        fail(f"--pick-label {pick_label!r}: give a short colour name such as Green")
    limits = FlagArgs(flag_limits=flag_limits).limits()
    try:
        store = Store(db if db is not None else default_db_path())
    except StoreError as exc:
        fail(str(exc))
    try:
        _run(store, paths, model, port, no_browser, sidecar.value, label, gap, similarity, chain.value, limits,
             taste_name if taste else None)
    finally:
        store.close()


def _run(store, paths, model, port, no_browser, sidecar, label, gap, similarity, chain, limits, taste) -> None:  # type: ignore[no-untyped-def]
    from charmcli.review.desk import Desk, DeskError
    from charmcli.review.images import ImageCache
    from charmcli.selection import resolve_model, unscored_model

    problem = unscored_model(store, model)
    if problem is not None:  # a typo, or a model nothing is scored with: either way, no desk
        fail(problem[0])
    chosen = resolve_model(store, model)
    if chosen is None:
        fail("no scores yet: run `charm score PATH...` first")
    try:
        desk = Desk(store, chosen, [os.fspath(p) for p in paths], sidecar=sidecar, pick_label=label, gap=gap,
                    similarity=similarity, chain=chain, flag_limits=limits, taste=taste)  # fmt: skip
    except DeskError as exc:
        fail(str(exc))
    facts = desk.facets()
    if not facts["photos"]:
        where = " under " + ", ".join(display_path(p) for p in paths) if paths else ""
        fail(f"no photos scored with model {chosen}{where}; run `charm score` first")

    from charmcli.review.app import create_app
    from charmcli.review.server import bind_loopback, desk_url, new_token, serve

    try:
        sock = bind_loopback(port)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    token = new_token()
    cache = ImageCache()
    app = create_app(desk, cache, token)
    url = desk_url(sock, token)
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    console = err()
    gone = f", {facts['missing']} scored file(s) gone" if facts["missing"] else ""
    console.print(
        f"Reviewing {facts['photos']} photo(s) in {facts['groups']} group(s){gone} · model {escape(chosen)} · "
        f"sidecars {sidecar} · thumbnails cached in {escape(display_path(cache.root))}"
    )
    console.print("Serving on 127.0.0.1 only; the URL above holds this run's token. Ctrl-C stops.")

    def opened() -> None:  # called once the server accepts requests; the browser starts on its own
        if not no_browser:
            import threading
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    serve(app, sock, on_started=opened)
    console.print("Stopped.")
