"""``charm``: the command line. Thin glue: parse options, call the store/pipeline, render with rich.

Where each command lives (one module per group, each importing only :mod:`.options` and the
layers below the CLI, never this package or each other upwards):

* :mod:`.score`: ``score``, ``compare`` (the commands that run the model);
* :mod:`.query`: ``top``, ``show``, ``stats``, ``forget`` (reading the database);
* :mod:`.cull`: ``groups``, ``rate``, ``report`` (culling what is scored, no torch);
* :mod:`.taste`: ``learn`` (a taste from the user's own ratings, :mod:`charmcli.taste`);
* :mod:`.review`: ``review`` (the browser culling desk of :mod:`charmcli.review`);
* :mod:`.cluster`: ``cluster`` (Ray Data runs of :mod:`charmcli.cluster`);
* :mod:`.models`: ``models``, ``models download``;
* :mod:`.options`: shared options, checks that run before torch, ``--json`` output, 80-column tables.

A new command group is one more module here and one line below; the packages it drives
(:mod:`charmcli.review`, :mod:`charmcli.cluster`, …) never import the CLI.

Conventions every command follows:

* data goes to **stdout** (tables, ``--json``, ``--csv``); progress, per-file errors and summaries
  go to **stderr**, so ``charm top 10 --json | jq`` always gets clean JSON;
* every error is **one line** (``charm: error: …``), never a traceback;
* exit codes: **0** all good, **1** a file failed in this run (or an export item failed),
  **2** the command could not run as asked (bad option, missing path, unusable model or
  database), **130** interrupted. Files that failed in an earlier run and did not change are
  summarised in one line (``charm stats`` lists them) and do not make a re-run exit 1.

``--json`` is one JSON object per line for ``score`` (it streams), one JSON document elsewhere.
"""

from __future__ import annotations

from typing import Annotated

import typer

from charmcli import __version__
from charmcli.cli import cluster, cull, models, query, review, score, taste
from charmcli.cli.help import CharmTyper

app = CharmTyper(
    name="charm",
    help="Score, rank and cull a photo library with the Charm aesthetic model (CVPR 2025).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


# The commands, in the order `charm --help` lists them.
app.command()(score.score)
app.command()(query.top)
app.command()(score.compare)
app.command()(query.show)
app.command()(cull.groups)
app.command()(cull.rate)
app.command()(cull.report)
app.command("learn")(taste.learn_command)
app.command("review")(review.review)
app.add_typer(models.app, name="models")
app.add_typer(cluster.cluster_app, name="cluster")
app.command()(query.stats)
app.command()(query.forget)


def main() -> None:
    """Console-script entry point (``charm``)."""
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C while Typer builds the command line, before Click catches it
        raise SystemExit(130) from None


__all__ = ["app", "main"]
