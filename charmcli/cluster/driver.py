"""The Ray Data job behind ``charm cluster score``: plan without Ray, then stream the stages.

    list inputs ─► drop what DIR holds ─► PrepareStage (CPU actors) ─► ScoreStage (GPU actors)
                                           read, hash, decode, tokenize   network, batched
                                                                          ─► write_stage (part files)

Planning (listing, resume, the job's identity) needs neither Ray nor, when nothing is left to do,
torch: a finished job answers "nothing to do" at once. Ray is imported only in :func:`run`.

Ray pitfalls this avoids on purpose (Ray 2.60): no stage raises on a bad file (an exception fails
the whole job, and ``max_errored_blocks`` would drop whole blocks of good photos); Ray's own
checkpointing is not used (it hung on 2 CPUs; resume reads our output instead); the two model
stages are callable classes on separate actor pools (``compute=ActorPoolStrategy``, not the
deprecated ``concurrency=``), so they are never fused into one process; usage stats and the
dashboard are off.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from charmcli.cluster.inputs import Listing, list_inputs
from charmcli.cluster.output import OutputDir, OutputError
from charmcli.work import FatalError, ScoreOptions, load_scorer


@dataclass
class ClusterJob:
    """Everything ``charm cluster score`` was asked."""

    inputs: list[str]
    output: str
    options: ScoreOptions
    address: str | None = None  #: None: start a local Ray; "auto" or "ray://host:10001" joins one
    num_cpus: int | None = None  #: local Ray only: CPUs it may use (default: all)
    cpu_workers: int | None = None  #: CPU-stage actors (default: the CPUs the network leaves)
    gpu_workers: int | None = None  #: network actors (default: one per GPU, else one on CPU)
    batch_size: int | None = None  #: images per forward pass (default: from free GPU memory; 1 on CPU)
    rows_per_file: int = 256  #: rows per Parquet part file (what a kill can lose in flight)
    retry_failed: bool = False


@dataclass
class Plan:
    out: OutputDir
    listing: Listing
    todo: list[str]
    done_ok: int
    done_failed: int  #: error rows kept as they are (``--retry-failed`` retries them)
    problems: list[tuple[str, str]]  #: listing problems not yet recorded


@dataclass
class JobSummary:
    listed: int = 0
    already: int = 0  #: rows DIR held before this run (ok + kept errors)
    already_failed: int = 0  #: of ``already``: error rows kept (``--retry-failed`` retries them)
    scored: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    model: str | None = None
    checkpoint_id: str | None = None
    cpu_workers: int = 0
    gpu_workers: int = 0
    gpus: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["errors"] = [{"path": p, "error": e} for p, e in self.errors]
        return data


def job_config(options: ScoreOptions) -> dict[str, Any]:
    """What the rows of one output folder share; a folder never mixes two of these."""
    return {
        "source": options.source,
        "model": options.model if options.model_given else None,
        "preprocess": options.preprocess,
        "max_pixels": options.max_pixels,
        "precision": options.requested_precision,
    }


def plan(job: ClusterJob) -> Plan:
    """List inputs and subtract what the output already holds (reads path/sha256/status only)."""
    out = OutputDir.open(job.output, create=True)
    listing = list_inputs(job.inputs)
    ok, failed = out.done()
    skip = ok if job.retry_failed else ok | failed
    todo = [p for p in listing.paths if p not in skip]
    problems = [(p, r) for p, r in listing.problems if p not in skip]
    listed = set(listing.paths) | {p for p, _ in listing.problems}
    kept_failed = 0 if job.retry_failed else len(failed & listed)
    return Plan(out, listing, todo, len(ok & listed), kept_failed, problems)


def check_identity(out: OutputDir, options: ScoreOptions, identity: tuple[str, str] | None) -> None:
    """Refuse to add rows of another model or decode policy to a folder (resume keys on path only).

    ``identity`` is (model, checkpoint_id) when the model was loaded: then a checkpoint that moved
    but is the same file is accepted.
    """
    stored = out.read_job()
    if stored is None:
        return
    mine = job_config(options)
    same_decode = (stored.get("preprocess"), stored.get("max_pixels"), stored.get("precision", "fp32")) == (
        mine["preprocess"],
        mine["max_pixels"],
        mine["precision"],
    )
    if identity is not None:
        same_model = (stored.get("model_name"), stored.get("checkpoint_id")) == identity
    else:
        same_model = (stored.get("source"), stored.get("model")) == (mine["source"], mine["model"])
    if not (same_decode and same_model):
        raise OutputError(
            f"{out.uri} holds results of another model or decode options "
            f"({stored.get('model_name')}, {stored.get('preprocess')}, max_pixels={stored.get('max_pixels')}, "
            f"precision {stored.get('precision', 'fp32')}); "
            "use another --output folder"
        )


def run(
    job: ClusterJob,
    *,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[Plan, JobSummary], None] | None = None,
) -> JobSummary:
    """Run the job; ``on_row`` sees each written row (path, status, score, error) as it lands."""
    start = time.perf_counter()
    the_plan = plan(job)
    out, options = the_plan.out, job.options
    summary = JobSummary(listed=len(the_plan.listing.paths) + len(the_plan.listing.problems))
    summary.already = the_plan.done_ok + the_plan.done_failed
    summary.already_failed = the_plan.done_failed
    if not the_plan.todo:
        check_identity(out, options, None)  # cheap: a finished job must not hide a changed model
    if the_plan.problems:  # nothing to compute: written by the driver, no Ray needed
        from charmcli.cluster.stages import error_rows

        rows = error_rows(the_plan.problems, options)
        _stamp(rows)
        out.write_part(rows)
        for row in rows:
            _count(summary, row, on_row)
    if not the_plan.todo:
        summary.seconds = time.perf_counter() - start
        return summary

    scorer, _weights = load_scorer(dataclasses.replace(options, device="cpu"))  # fails fast, before Ray starts
    summary.model, summary.checkpoint_id = scorer.name, scorer.checkpoint_id
    check_identity(out, options, (scorer.name, scorer.checkpoint_id))
    del scorer
    out.write_job(
        {**job_config(options), "model_name": summary.model, "checkpoint_id": summary.checkpoint_id}
    )
    out.remove_temp_files()  # left by a killed run (one job per folder at a time)

    ray = _start_ray(job)
    try:
        ds = _build(ray, job, the_plan, summary)
        if on_start is not None:
            on_start(the_plan, summary)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                for row in batch.to_pylist():
                    _count(summary, row, on_row)
        except KeyboardInterrupt:
            summary.interrupted = True
        except Exception as exc:  # a worker node without the model, a lost cluster, a full disk
            raise FatalError(f"the Ray job failed ({_first_line(exc)}); rows written so far are kept, "
                             "a re-run goes on from there") from None  # fmt: skip
    finally:
        ray.shutdown()
        summary.seconds = time.perf_counter() - start
    return summary


def _count(summary: JobSummary, row: dict[str, Any], on_row: Callable[[dict[str, Any]], None] | None) -> None:
    if row["status"] == "ok":
        summary.scored += 1
    else:
        summary.failed += 1
        summary.errors.append((row["path"], row.get("error") or ""))
    if on_row is not None:
        on_row(row)


def _first_line(exc: BaseException) -> str:
    """Ray wraps worker errors in multi-line reports: keep the type and the last message line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]


def _stamp(rows: list[dict[str, Any]]) -> None:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    for row in rows:
        row["written_at"] = now


def _start_ray(job: ClusterJob) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise FatalError('Ray is not installed; pip install "charmcli[cluster]"') from None
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": _verbose(),
        "logging_level": logging.INFO if _verbose() else logging.ERROR,
        "configure_logging": True,
    }
    # Workers on other machines do not inherit this shell: pass on the settings that change bits
    # (MKL_CBWR=COMPATIBLE makes tokens the same on every x86 CPU, see tokenizer.frequency_metric).
    env_vars = {k: os.environ[k] for k in ("MKL_CBWR",) if k in os.environ}
    if env_vars:
        common["runtime_env"] = {"env_vars": env_vars}
    try:
        if job.address is None:
            ray.init(address="local", num_cpus=job.num_cpus, **common)
        else:
            ray.init(address=job.address, **common)
    except Exception as exc:  # ConnectionError, RuntimeError, ...: one line
        raise FatalError(
            f"cannot start or join Ray ({job.address or 'local'}): {' '.join(str(exc).split())}"
        ) from None
    return ray


def _verbose() -> bool:
    """``CHARM_CLUSTER_VERBOSE=1`` shows Ray's own logs (workers' output, execution plans)."""
    return os.environ.get("CHARM_CLUSTER_VERBOSE") == "1"


def _build(ray: Any, job: ClusterJob, the_plan: Plan, summary: JobSummary) -> Any:
    import pyarrow as pa
    from ray.data import ActorPoolStrategy, DataContext

    from charmcli.cluster.stages import PrepareStage, ScoreStage, write_stage

    if not _verbose():  # Ray Data configures its loggers on import: quiet them afterwards
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # the CLI draws its own progress
    resources = ray.cluster_resources()
    gpus = 0.0 if job.options.device == "cpu" else float(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if job.options.device.startswith("cuda") and not gpus:
        raise FatalError(f"--device {job.options.device}: this Ray cluster has no GPU; use --device auto or cpu")
    net_workers = job.gpu_workers or (max(1, int(gpus)) if gpus else 1)
    cpu_workers = job.cpu_workers or max(1, cpus - (0 if gpus else net_workers))
    summary.cpu_workers, summary.gpu_workers, summary.gpus = cpu_workers, net_workers, gpus

    todo = the_plan.todo
    # enough blocks to feed every actor, few enough for the driver (10 M paths: ~40k blocks)
    block = max(1, min(256, len(todo) // (4 * cpu_workers)))
    ds = ray.data.from_arrow([pa.table({"path": todo[i : i + block]}) for i in range(0, len(todo), block)])
    ds = ds.map_batches(
        PrepareStage,
        fn_constructor_args=(job.options,),
        batch_size=4,  # small blocks of tokens (~4 MB per photo) keep memory flat and streaming
        batch_format="pyarrow",
        compute=ActorPoolStrategy(min_size=1, max_size=cpu_workers),
        num_cpus=1,
    )
    ds = ds.map_batches(
        ScoreStage,
        fn_constructor_args=(job.options, job.batch_size),
        batch_size=max(job.batch_size or 0, 64 if gpus else 4),
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=net_workers),
        num_gpus=1 if gpus else 0,
        num_cpus=1,
    )
    return ds.map_batches(
        write_stage,
        fn_kwargs={"output": the_plan.out.uri},
        batch_size=job.rows_per_file,
        batch_format="pyarrow",
        num_cpus=0.1,  # never waits for a CPU the actors hold
    )
