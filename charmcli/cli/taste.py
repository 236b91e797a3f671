"""``charm learn``: learn the photographer's own taste from the ratings they already gave."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from charmcli.cli.options import (
    DbOpt,
    JsonOpt,
    PathsArg,
    RankModelOpt,
    check_paths,
    emit_json,
    err,
    fail,
    open_db,
    out,
)
from charmcli.library.scan import display_path
from charmcli.selection import Query, resolve_model, select, unscored_model
from charmcli.taste.fit import NotEnoughRatings
from charmcli.taste.learn import DEFAULT_TASTE, Learned, forget, learn

#: How much better (Spearman) the taste must do than the generic score to be called better.
MARGIN = 0.05
#: Below this cross-validated Spearman a taste is too weak to trust, whatever the generic score does.
WEAK = 0.1


def verdict(taste: float, generic: float | None, name: str) -> str:
    """One line on whether to rank by the taste."""
    if taste < WEAK:
        return "too weak to trust yet; rate more photos, some low ones too."
    if generic is None or taste >= generic + MARGIN:
        named = "" if name == DEFAULT_TASTE else f" --name {name}"
        return f"better than the generic score; rank with `charm top --taste{named}`."
    if taste > generic - MARGIN:
        return "about as good as the generic score; rate more, then learn again."
    return "the generic score does better for now; rate more, then learn again."


def _stars(counts: dict[int, int]) -> str:
    parts = [f"{s}★ {counts[s]}" for s in sorted(counts, reverse=True) if s > 0]
    if counts.get(-1):
        parts.append(f"rejected {counts[-1]}")
    return " · ".join(parts)


def _report(done: Learned) -> dict[str, Any]:
    m = done.fit.model
    chosen = done.fit.chosen
    gen = done.fit.generic
    return {
        "name": done.name, "ratings": m.n_ratings, "found": done.ratings, "counts": m.counts,
        "method": m.method, "strength": m.strength,
        "taste": {"spearman": round(chosen.spearman, 4), "pairwise": round(chosen.pairwise, 4)},
        "generic": {"model": done.generic_model, "spearman": round(gen.spearman, 4), "pairwise": round(gen.pairwise, 4)}
        if gen else None,
        "methods": {k: {"spearman": round(v.spearman, 4), "pairwise": round(v.pairwise, 4), "strength": v.strength}
                    for k, v in done.fit.methods.items()},
        "verdict": verdict(chosen.spearman, gen.spearman if gen else None, done.name),
        "without_features": done.without_features, "unreadable_sidecars": len(done.unreadable),
        "features": sum(w for _n, w in m.layout), "bytes": len(m.to_bytes()), "seconds": round(done.fit.seconds, 3),
        "learned_at": m.created,
    }  # fmt: skip


def _print(report: dict[str, Any]) -> None:
    console = out()
    console.print(f"Learned taste {escape(report['name'])!r} from {report['ratings']} ratings "
                  f"in {report['seconds']:.1f} s")  # fmt: skip
    console.print(f"  {_stars(report['counts'])}")
    console.print(f"{'':<22}{'Spearman':>9}{'pairs in order':>16}")
    rows = [(f"your taste ({report['method']})", report["taste"])]
    if report["generic"]:
        rows.append((f"generic score ({report['generic']['model']})", report["generic"]))
    for label, m in rows:
        console.print(f"  {escape(label):<20}{m['spearman']:>9.2f}{m['pairwise'] * 100:>15.0f}%")
    console.print("[dim]Cross-validated: each photo predicted by a taste learned without it.[/]")
    console.print(f"Verdict: {report['verdict']}")


def learn_command(
    paths: PathsArg = None,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Store the taste under this name.")] = DEFAULT_TASTE,
    forget_name: Annotated[
        str | None, typer.Option("--forget", metavar="NAME", help="Remove the taste NAME instead of learning.")
    ] = None,
    model: RankModelOpt = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Learn your taste from the stars and rejects you gave (XMP sidecars, `charm review`).

    Ratings that `charm rate` wrote and nobody changed are charm's guesses, not yours: they are
    never learned from. Needs 20 ratings, not all the same; a re-run replaces the taste.
    """
    if forget_name is not None:
        with open_db(db) as store:
            if not forget(store, forget_name):
                fail(f"no taste named {forget_name!r}", 1)
        if json_:
            emit_json({"forgot": forget_name})
        else:
            err().print(f"Forgot taste {escape(forget_name)!r}.")
        raise typer.Exit(0)
    if not name.strip():
        fail("--name must not be empty")
    paths = paths or []
    check_paths(paths)
    console = err()
    with open_db(db) as store:
        problem = unscored_model(store, model)
        if problem is not None:
            fail(problem[0], 2 if problem[1] else 1)
        chosen = resolve_model(store, model)
        if chosen is None:
            fail("no scores yet: run `charm score PATH...` first, then rate photos", 1)
        sel = select(store, Query(model=chosen, paths=[str(p) for p in paths], embeddings=False,
                                  percentiles=False, decisions=False))  # fmt: skip
        try:
            done = learn(store, sel.rows, chosen, name.strip())
        except NotEnoughRatings as exc:
            fail(str(exc))
    report = _report(done)
    if json_:
        emit_json(report)
    else:
        _print(report)
    if done.unreadable:
        first = next(iter(done.unreadable.items()))
        console.print(f"{len(done.unreadable)} sidecar(s) could not be read and were skipped "
                      f"(first: {escape(display_path(first[0]))}: {escape(first[1])})")  # fmt: skip
    if done.without_features:
        console.print(f"{done.without_features} rated photo(s) were scored before charm kept what a taste needs; "
                      "`charm score` them again to learn from them too.")  # fmt: skip
    raise typer.Exit(0)
