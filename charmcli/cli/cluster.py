"""``charm cluster score`` and ``charm cluster import``: glue between Typer and the Ray job.

Usage errors are answered before torch or Ray is imported; Ray is imported only once a job has
photos left to score. Conventions as everywhere in charm: per-file errors and the summary on
stderr, ``--json`` (one summary object) on stdout, exit 0 / 1 (some file failed) / 2 (could not
run) / 130 (interrupted).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import replace
from typing import Annotated, Any

import typer
from rich.markup import escape

from charmcli.cli.help import CharmTyper
from charmcli.cli.options import (
    BatchOpt,
    DbOpt,
    DecodeArgs,
    JsonOpt,
    ModelArgs,
    bundled,
    emit_json,
    err,
    fail,
    open_db,
    say_file,
    score_options,
)
from charmcli.library.scan import display_path

cluster_app = CharmTyper(
    help="Score millions of photos with Ray Data (Parquet out), then import the results into the database.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_ADDRESS_RE = re.compile(r"^(auto|ray://\S+|[\w.-]+:\d+)$")


@cluster_app.command("score")
@bundled
def score(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT...",
            help="Folders, photos, manifests (.txt/.parquet of paths) or URLs (s3://, file://).",
            show_default=False,
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="DIR", help="Output folder (local or URL) for the Parquet parts.")
    ],
    model: ModelArgs = ModelArgs(),
    decode: DecodeArgs = DecodeArgs(),
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDRESS",
            envvar="RAY_ADDRESS",
            help="Join a Ray cluster: auto or ray://HOST:10001 (default: start a local Ray).",
        ),
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option("--num-cpus", min=1, help="Local Ray only: CPUs to use (default: all).")
    ] = None,
    cpu_workers: Annotated[
        int | None,
        typer.Option(
            "--cpu-workers", min=1, help="Decode/tokenize actors (default: the CPUs the network leaves)."
        ),
    ] = None,
    gpu_workers: Annotated[
        int | None,
        typer.Option(
            "--gpu-workers", min=1, help="Network actors, one model each (default: one per GPU, else one)."
        ),
    ] = None,
    batch_size: BatchOpt = None,
    rows_per_file: Annotated[
        int, typer.Option("--rows-per-file", min=1, help="Rows per Parquet part file.")
    ] = 256,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Score again the paths DIR holds as errors.")
    ] = False,
    json_: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only.")] = False,
) -> None:
    """Score every photo under INPUT... into Parquet files in --output; a re-run scores only what is missing."""
    # The network runs on the workers: this machine (a head node, a laptop driving a cluster) need
    # not have the GPU that --device cuda asks of them, so only its spelling is checked here.
    device = model.device
    on_workers = re.fullmatch(r"cuda(:\d+)?", device) is not None
    if len(model.model or []) > 1:
        fail("charm cluster score runs one model per job; give one --model")
    options = score_options(replace(model, device="auto") if on_workers else model, decode,
                            retry_failed=retry_failed, batch_size=batch_size)  # fmt: skip
    options.device = device
    if address is not None and not _ADDRESS_RE.match(address):
        fail(f"invalid --address {address!r}; use auto, ray://HOST:PORT or HOST:PORT")
    if address is not None and num_cpus is not None:
        fail("--num-cpus is for a local Ray; a cluster has its own resources")
    for item in inputs:
        if "://" not in item and not os.path.lexists(item):
            fail(f"no such file or folder: {display_path(item)}")
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        fail('charm cluster needs Ray Data: pip install "charmcli[cluster]"')

    from charmcli.cluster.driver import ClusterJob, run
    from charmcli.cluster.inputs import InputError
    from charmcli.cluster.output import OutputError
    from charmcli.work import FatalError

    job = ClusterJob(
        inputs=list(inputs), output=output, options=options, address=address, num_cpus=num_cpus,
        cpu_workers=cpu_workers, gpu_workers=gpu_workers, batch_size=batch_size, rows_per_file=rows_per_file,
        retry_failed=retry_failed,
    )  # fmt: skip
    console = err()

    def on_row(row: dict[str, Any]) -> None:
        if row["status"] != "ok":
            say_file(console, "[red]error[/red]", display_path(row["path"]), row.get("error") or "")

    def on_start(plan: Any, summary: Any) -> None:
        if not quiet:
            console.print(
                f"{len(plan.todo)} to score, {summary.already} already in {escape(plan.out.uri)} · "
                f"{summary.cpu_workers} CPU worker(s), {summary.gpu_workers} network worker(s)"
                f"{' on GPU' if summary.gpus else ' on CPU'}"
            )

    try:
        summary = run(job, on_row=on_row, on_start=on_start)
    except (FatalError, InputError, OutputError) as exc:
        fail(str(exc))
    if json_:
        emit_json(summary.to_json())
    if not quiet:
        head = "[yellow]Interrupted[/]: " if summary.interrupted else ""
        model_part = (
            f" · model {summary.model} ({(summary.checkpoint_id or '')[:12]}, {options.preprocess})"
            if summary.model
            else ""
        )
        kept = (
            f" ({summary.already_failed} as errors; --retry-failed retries them)"
            if summary.already_failed
            else ""
        )
        console.print(
            f"{head}{summary.scored} scored, {summary.failed} failed, {summary.already} already done{kept} "
            f"in {summary.seconds:.1f} s{model_part}"
        )
    raise typer.Exit(130 if summary.interrupted else 1 if summary.failed else 0)


@cluster_app.command("import")
def import_(
    directory: Annotated[str, typer.Argument(metavar="DIR", help="Output folder of `charm cluster score`.")],
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Merge a cluster job's rows into the database, so top, groups, rate and report see them."""
    if importlib.util.find_spec("pyarrow") is None:
        fail('charm cluster needs Ray Data: pip install "charmcli[cluster]"')
    from charmcli.cluster.importer import import_dir
    from charmcli.cluster.output import OutputDir, OutputError

    try:
        out = OutputDir.open(directory)
    except OutputError as exc:
        fail(str(exc))
    with open_db(db) as store:
        summary = import_dir(out, store)
    console = err()
    for warning in summary.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}")
    if json_:
        emit_json({"scores": summary.scores, "failures": summary.failures, "files": summary.files,
                   "warnings": list(summary.warnings)})  # fmt: skip
    console.print(
        f"Imported {summary.scores} scores and {summary.failures} failures from {summary.files} part file(s)."
    )
