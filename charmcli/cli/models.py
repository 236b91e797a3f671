"""``charm models`` and ``charm models download``: the published Charm models and the hub cache."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from charmcli.cli.help import CharmTyper
from charmcli.cli.options import Column, JsonOpt, emit_json, err, fail, out, print_table
from charmcli.library.scan import display_path
from charmcli.model.registry import DEFAULT_MODEL  # torch-free

app = CharmTyper(help="List the Charm models, or download one for offline use.", rich_markup_mode=None)


@app.callback(invoke_without_command=True)
def models(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List the Charm models and which are cached locally (usable offline)."""
    if ctx.invoked_subcommand is not None:
        return
    from charmcli.model.registry import MODELS, expected_head, is_cached, models_dir

    rows = [
        {"name": s.name, "scale": s.scale, "backbone": s.backbone, "cached": is_cached(s.name),
         "default": s.name == DEFAULT_MODEL, "head": expected_head(s.name), "description": s.description,
         "family": s.family,  # issue 13: EAT weights are a local file, by its published name
         **({"file": s.filename, "folder": str(models_dir())} if s.needs_local_file else {})}
        for s in MODELS.values()
    ]  # fmt: skip
    if json_:
        emit_json(rows)
        return
    columns = [Column("model"), Column("scale", wrap=14), Column("head", wrap=16), Column("cached"),
               Column("description", wrap=30)]  # fmt: skip
    table = []
    for r in rows:
        head = r["head"]
        shown = f"{head['activation']}{'?' if head['basis'] == 'unsure' else ''}"
        shown += "" if head["basis"] == "unsure" else f" ({head['basis']})"
        table.append([r["name"] + (" (default)" if r["default"] else ""), escape(r["scale"]), escape(shown),
                      "yes" if r["cached"] else "no", escape(r["description"])])  # fmt: skip
    console = out()
    print_table(console, columns, table)
    console.print(
        "head: (file) read from the downloaded file; (code) what the authors' code builds; "
        "(inferred) from published outputs; ? not known until the file is read"
    )
    from charmcli.model.errors import EAT_WEIGHTS_URL

    console.print(
        f"EAT weights are not on the hub: get them from the authors' drive ({EAT_WEIGHTS_URL}) and put them "
        f"in {escape(display_path(models_dir()))} under their published names, or pass --checkpoint."
    )


@app.command("download")
def download(name: Annotated[str, typer.Argument(help="Model name, e.g. aadb.")]) -> None:
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
        fail(str(exc))
    err().print(f"{name}: {escape(display_path(checkpoint))}\n{' ' * len(name)}  {escape(display_path(pos))}")
