"""``charm score``'s run: walk the paths, look up the cache, score the rest, store the rows.

The orchestration lives here, not in the CLI, so it can be driven and tested without a terminal
and rendered any way (rich progress, JSON lines, a compare table): the CLI calls
:meth:`Pipeline.run` once with the paths it was given and renders the :class:`FileEvent` it
yields for each file found, in walk order. The work for one photo is :mod:`charmcli.work`'s,
the same a cluster runs; what is left here is scheduling and the cache.

How one run flows:

1. **The walk** (stat only, fast), so a progress bar knows its total.
2. **By path, in the main thread, without opening the file**: a ``photos`` row with the same
   path, size and mtime gives the sha256, and a score for (sha256, model, checkpoint,
   preprocess) means *cached*. A recorded failure with the same size/mtime/options is reported
   as a *known failure* without retrying (``retry_failed`` overrides), so the CLI can sum such
   files up in one line instead of repeating them.
3. **Otherwise in a small decode pool** (bounded window, so memory stays flat and decoding of
   the next files overlaps the network on this one): :func:`~charmcli.work.prepare_file` reads
   the bytes once and hashes them; if that content already has a score (a moved, renamed or
   copied file) it is reused without decoding; else decoded, EXIF read and prepared.
4. **The network runs in the main thread**, in batches (:func:`~charmcli.work.run_batch`), then
   rows go to the store through a :class:`~charmcli.store.BatchWriter` (small transactions: an
   interrupt loses only what is in flight).

Several models in one run (issue 13) share steps 1–3: a file counts as cached only when every
model has its score, is read and decoded once, and is prepared once per distinct
``preprocess_key`` (models with equal preprocessing share the prepared input); each model then
runs on the files it still lacks, and the event carries every model's score.

The model is loaded lazily: a run whose files are all cached needs neither torch nor the
checkpoint, as long as the checkpoint's identity is remembered in the store (it is after the
first load), or the store knows one checkpoint only for the model asked. Per-file problems
become ``error`` events; only an unusable model stops a run (:class:`FatalError`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from charmcli.flags import flag_names
from charmcli.library.measures import measures_version
from charmcli.library.scan import ScanEntry, ScanProblem, iter_files
from charmcli.store import (
    META_COLUMNS,
    BatchWriter,
    FailureCleared,
    PhotoDropped,
    PhotoRow,
    PhotoSeen,
    ScoreRow,
    Store,
    WriteRow,
)
from charmcli.taste.features import lacks_features
from charmcli.work import (
    MODEL_FAILED,
    Failure,
    FatalError,
    Hashed,
    Prepared,
    Profile,
    ScoreOptions,
    failure_row,
    load_scorer,
    measures_row,
    photo_row,
    prepare_file,
    run_batch,
    score_row,
)

if TYPE_CHECKING:  # torch is imported only when a file really needs the network
    from charmcli.model import Scorer, ScoreResult
    from charmcli.model.precision import PrecisionChoice

Status = Literal["scored", "cached", "error", "skipped"]

def per_model_options(options: ScoreOptions) -> list[ScoreOptions]:
    """One ScoreOptions per model of a run; ``--checkpoint`` goes to the model that needs a file.

    With one model nothing changes. With several, hub models (Charm) come from the hub,
    ``--checkpoint`` belongs to the one model whose weights the user brings (EAT; others are
    looked up in the models folder) and ``--arch-config`` to every EAT model (the AVA and TAD66K
    configs differ only in the head, which the model decides).
    """
    names = options.model_names
    if len(names) == 1:
        return [replace(options, model=names[0], models=[names[0]])]
    if len(set(names)) != len(names):
        raise FatalError(f"--model given twice: {', '.join(names)}")
    from charmcli.model.registry import get_spec

    try:
        local = [n for n in names if get_spec(n).needs_local_file]
    except ValueError as exc:
        raise FatalError(str(exc)) from None
    if options.pos_embed is not None:
        raise FatalError("--pos-embed goes with a Charm --checkpoint of a one-model run; with several, Charm models come from the hub")
    if options.checkpoint is not None and len(local) != 1:
        raise FatalError(
            "with several models, --checkpoint goes to the one EAT model; "
            + ("none was named" if not local else f"{' and '.join(local)} both need one: put their files in the models folder")
        )
    out = []
    for name in names:
        mine = name in local
        out.append(
            replace(
                options, model=name, models=[name], model_given=True,
                checkpoint=options.checkpoint if mine else None, pos_embed=None,
                arch_config=options.arch_config if get_spec(name).takes_arch_config else None,
            )
        )  # fmt: skip
    return out


@dataclass
class FileEvent:
    """What happened to one input; the CLI renders these."""

    path: str  #: absolute
    status: Status
    score: float | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    reused: bool = False  #: cached through the content hash (moved/renamed/copied file)
    known_failure: bool = False  #: an error recorded by an earlier run, file unchanged (not retried)
    scores: dict[str, float] = field(default_factory=dict)  #: every model's score (issue 13)
    measures: dict[str, Any] | None = None  #: technical measures (None: not measured)

    def to_json(self, model: str | None) -> dict[str, Any]:
        """One line of ``--json``; a multi-model run adds ``scores`` (model -> score), the single-model
        contract stays as it was. ``flags`` are under the default limits (``charm top`` takes others)."""
        extra = {"scores": dict(self.scores)} if len(self.scores) > 1 else {}
        return {
            "path": self.path,
            "status": self.status,
            "score": self.score,
            "model": model,
            **extra,
            "error": self.error,
            "width": self.width,
            "height": self.height,
            "warnings": list(self.warnings),
            "sha256": self.sha256,
            "reused": self.reused,
            "known_failure": self.known_failure,
            "flags": flag_names(self.measures),
            "measures": self.measures,
        }


@dataclass
class Summary:
    scored: int = 0
    cached: int = 0
    reused: int = 0  #: of ``cached``: found by content hash
    failed: int = 0
    known_failures: int = 0  #: of ``failed``: recorded by an earlier run, file unchanged
    skipped: int = 0  #: pictures in formats charm does not score
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, event: FileEvent) -> None:
        if event.status == "scored":
            self.scored += 1
        elif event.status == "cached":
            self.cached += 1
            self.reused += event.reused
        elif event.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.known_failures += event.known_failure

    @property
    def total(self) -> int:
        return self.scored + self.cached + self.failed + self.skipped


def scan(paths: Iterable[os.PathLike[str] | str], profile: Profile | None = None) -> list[ScanEntry | ScanProblem]:
    """The whole walk up front (stat only, fast): the progress bar then knows its total."""
    start = time.perf_counter()
    items = list(iter_files(paths))
    if profile is not None:
        profile.add("scan", time.perf_counter() - start, len(items))
    return items


# -- the model, loaded on demand ----------------------------------------------------------------


class ModelHandle:
    """The scorer's identity (name, checkpoint_id) and the scorer itself, loaded at most once.

    The identity comes from the store's memo when the checkpoint file is unchanged, so a fully
    cached run never imports torch. Loading is thread-safe (the first decode worker that needs
    the model loads it; the others wait) and a load failure is remembered and re-raised.
    """

    def __init__(
        self, options: ScoreOptions, store: Store, profile: Profile | None = None, *, multi: bool = False
    ) -> None:
        self.options = options
        self.multi = multi  #: one of several models in a run: errors name the model
        self.store = store
        self.profile = profile or Profile()
        self._scorer: Scorer | None = None
        self._error: FatalError | None = None
        self._lock = threading.Lock()
        self.name: str | None = None
        self.checkpoint_id: str | None = None
        self._precision: PrecisionChoice | None = None
        #: set by a front end to show that the model is loading: called with what is loaded,
        #: returns a context manager held while it loads (e.g. a rich status line)
        self.loading: Callable[[str], AbstractContextManager[Any]] = lambda what: contextlib.nullcontext()

    @property
    def loaded(self) -> bool:
        return self._scorer is not None

    def remembered(self) -> bool:
        """Whether the identity is known without loading (the store's memo of this source)."""
        if self.name is None or self.checkpoint_id is None:
            memo = None if self.options.rescore else self.store.recall_checkpoint(self.options.source)
            wanted = self.options.model.lower() if self.options.model_given else None
            if memo is not None and (wanted is None or memo["model"] == wanted):
                self.name, self.checkpoint_id = memo["model"], memo["checkpoint_id"]
        return self.name is not None and self.checkpoint_id is not None

    def candidate(self) -> tuple[str, str] | None:
        """The identity a run without the weights at hand could only mean: the one checkpoint
        the store has seen for this model (``None`` for a given file, or none or several)."""
        if self.options.rescore or self.options.checkpoint is not None:
            return None
        ids = self.store.checkpoint_ids(self.options.model.lower())
        return (self.options.model.lower(), ids[0]) if len(ids) == 1 else None

    def assume(self, identity: tuple[str, str]) -> None:
        """Take ``identity`` for the run's lookups without loading (every file is found cached)."""
        self.name, self.checkpoint_id = identity

    def precision(self) -> PrecisionChoice:
        """The precision of this model's scores in this run, for the lookups and the rows: known
        before the model loads (torch-free on a CPU machine), and the model loads in it."""
        if self._precision is None:
            try:
                self._precision = self.options.precision_choice()
            except ValueError as exc:  # e.g. --device cuda on a machine without one
                raise FatalError(" ".join(str(exc).split())) from None
        return self._precision

    def identity(self) -> tuple[str, str]:
        """(model name, checkpoint sha256) for cache lookups; loads the model if not memoised."""
        if not self.remembered():
            self.get()
        assert self.name is not None and self.checkpoint_id is not None
        return self.name, self.checkpoint_id

    def get(self) -> Scorer:
        """The loaded scorer (loading it now if needed); :class:`FatalError` if impossible."""
        with self._lock:
            if self._scorer is not None:
                return self._scorer
            if self._error is not None:
                raise self._error
            start = time.perf_counter()
            opts = self.options
            what = f"checkpoint {opts.checkpoint.name}" if opts.checkpoint else f"model {opts.model}"
            try:
                with self.loading(what):
                    scorer, weights_file = self._load()
            except FatalError as exc:
                self._error = exc
                raise
            self.profile.add("load model", time.perf_counter() - start)
            if self.checkpoint_id is not None and (scorer.name, scorer.checkpoint_id) != (
                self.name,
                self.checkpoint_id,
            ):
                # The memo was stale (file replaced with identical size+mtime): refuse to mix keys.
                self._error = FatalError(
                    "the checkpoint changed while it was in use; run the command again"
                )
                raise self._error
            if scorer.precision != self.precision().precision:  # the lookups were keyed by it
                self._error = FatalError(
                    f"{scorer.name} loaded in {scorer.precision}, not the {self.precision().precision} asked for"
                )
                raise self._error
            self.name, self.checkpoint_id = scorer.name, scorer.checkpoint_id
            if weights_file is not None:
                self.store.remember_checkpoint(
                    self.options.source, str(weights_file), scorer.checkpoint_id, scorer.name
                )
            self._scorer = scorer
            return scorer

    def _load(self) -> tuple[Scorer, Path | None]:
        return load_scorer(self.options, multi=self.multi, precision=self.precision().precision)


# -- work items ---------------------------------------------------------------------------------


@dataclass
class _Done:
    event: FileEvent


@dataclass
class _Prepared:
    """A decoded, prepared file waiting for the network."""

    entry: ScanEntry
    prepared: Prepared
    stored: dict[int, dict[str, Any]] = field(default_factory=dict)  #: model index -> its stored score row
    results: dict[int, ScoreResult | None] = field(default_factory=dict)  #: model index -> result (None: failed)
    event: FileEvent | None = None


@dataclass
class _Reuse:
    """Known content at a new path: store the path, keep the score."""

    entry: ScanEntry
    sha256: str
    scores: list[dict[str, Any]]  #: one stored score row per model, in model order
    like: dict[str, Any] | None  #: a photos row with the same content (dims + EXIF to copy)
    prepared: Prepared | None = None  #: decoded anyway (no photos row to copy from)


@dataclass
class _Failed:
    entry: ScanEntry
    failure: Failure


@dataclass
class _Fatal:
    error: FatalError


_Outcome = _Prepared | _Reuse | _Failed | _Fatal


class Pipeline:
    """One scoring run over files and folders. Iterate :meth:`run`; read :attr:`summary`."""

    def __init__(
        self,
        store: Store,
        options: ScoreOptions,
        *,
        profile: Profile | None = None,
        writer: BatchWriter | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.notify = notify  #: called (from a worker thread) with one-line notes before slow work
        self.store = store
        self.options = options
        self.profile = profile or Profile()
        self._setup_error: FatalError | None = None
        try:
            per_model = per_model_options(options)
        except FatalError as exc:  # raised by run(), where callers expect it
            self._setup_error, per_model = exc, [options]
        #: one handle per model, in the order asked (issue 13); ``model`` is the first
        self.models = [ModelHandle(o, store, self.profile, multi=len(per_model) > 1) for o in per_model]
        self.model = self.models[0]
        self.writer = writer or BatchWriter(store)
        #: what measures a photo's technical flags, part of their stored key
        self.measures_version = measures_version()
        self.summary = Summary()
        #: what the walk found (files and problems), in order; set when :meth:`run` starts
        self.items: list[ScanEntry | ScanProblem] = []

    # -- public ------------------------------------------------------------------------------

    def run(self, paths: Iterable[os.PathLike[str] | str]) -> Iterator[FileEvent]:
        """Walk ``paths`` (files and folders) and yield one event per item found, in order.

        Ctrl-C: pending rows are committed, then it stops. A KeyboardInterrupt raised while the
        caller handles an event reaches the caller; closing the generator (``close()``, or
        leaving a ``for`` loop by an exception) still commits.
        """
        start = time.perf_counter()
        if self._setup_error is not None:
            raise self._setup_error
        self.items = scan(paths, self.profile)
        self._settle_identities()  # FatalError here means nothing was attempted
        opts = self.options
        inflight = max(2, opts.workers * 2)
        pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="charm-decode")
        window: deque[_Done | tuple[ScanEntry, Future[_Outcome]]] = deque()
        ready: list[_Done | _Prepared] = []
        try:
            for item in self.items:
                if isinstance(item, ScanProblem):
                    status: Status = "skipped" if item.skipped else "error"
                    window.append(_Done(FileEvent(_abs(item.path), status, error=item.reason)))
                else:
                    with self.profile.timer("lookup"):
                        quick = self._by_path(item)
                    if quick is not None:
                        if quick.status == "cached":
                            self._queue(PhotoSeen(quick.path))
                        window.append(_Done(quick))
                    else:
                        window.append((item, pool.submit(self._work, item)))
                while window and (len(window) > inflight or isinstance(window[0], _Done)):
                    yield from self._advance(window.popleft(), ready, final=False)
            while window:
                yield from self._advance(window.popleft(), ready, final=not window)
            yield from self._flush_ready(ready)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            with self.profile.timer("store"):
                self.writer.flush()
            self.summary.seconds = time.perf_counter() - start

    # -- main-thread steps -------------------------------------------------------------------

    def _settle_identities(self) -> None:
        """Every model's identity for the lookups, loading a model only when it is needed.

        Without the store's memo of the weights (e.g. ``--checkpoint`` given last time, or the
        hub cache gone), the one checkpoint the store knows for the model is tried first: if
        every file is then cached or a known failure, nothing is to be scored and the model is
        not needed. Otherwise the model loads and its own identity keys the run.
        """
        unknown = [h for h in self.models if not h.remembered()]
        if not unknown:
            return
        guesses = {h: guess for h in unknown if (guess := h.candidate()) is not None}
        if len(guesses) == len(unknown):
            for handle, guess in guesses.items():
                handle.assume(guess)
            entries = [i for i in self.items if isinstance(i, ScanEntry)]
            if all(self._by_path(e) is not None for e in entries):
                return
            for handle in unknown:
                handle.name = handle.checkpoint_id = None
        for handle in unknown:
            handle.identity()

    def _key(self, sha256: str, index: int) -> tuple[str, str, str, str, str]:
        """The score key of this content for model ``index`` of the run."""
        handle = self.models[index]
        name, checkpoint_id = handle.identity()
        return sha256, name, checkpoint_id, self.options.preprocess, handle.precision().precision

    def _stored_scores(self, sha256: str) -> dict[int, dict[str, Any]]:
        """Model index -> stored score of this content, for the models that have one."""
        found = {}
        for i in range(len(self.models)):
            row = self.store.score_for(*self._key(sha256, i))
            if row is not None and not lacks_features(row):
                found[i] = row
        return found

    def _stored_measures(self, sha256: str) -> dict[str, Any] | None:
        """This content's measures by the run's detector version, or ``None`` (to be taken)."""
        return self.store.measures_for(sha256, self.measures_version)

    def _names(self) -> list[str]:
        return [h.identity()[0] for h in self.models]

    def _by_path(self, entry: ScanEntry) -> FileEvent | None:
        """Cached or known-failed without opening the file; ``None`` = needs reading."""
        path = _abs(entry.path)
        row = self.store.photo_by_path(path)
        unchanged = row is not None and row["size"] == entry.size and row["mtime_ns"] == entry.mtime_ns
        if row is not None and unchanged and not self.options.rescore:
            found = self._stored_scores(row["sha256"])
            measures = self._stored_measures(row["sha256"]) if len(found) == len(self.models) else None
            if measures is not None:  # every score and the measures: nothing to compute
                scores = {n: found[i]["score"] for i, n in enumerate(self._names())}
                return FileEvent(
                    path, "cached", score=found[0]["score"], width=row["width"], height=row["height"],
                    sha256=row["sha256"], scores=scores, measures=measures,
                )  # fmt: skip
        if not self.options.retry_failed:
            failure = self.store.failure_for(path)
            if (
                failure is not None
                and failure["size"] == entry.size
                and failure["mtime_ns"] == entry.mtime_ns
                and failure["options"] == self.options.failure_options
            ):
                return FileEvent(path, "error", error=failure["reason"], sha256=failure["sha256"], known_failure=True)
        return None

    def _advance(
        self, head: _Done | tuple[ScanEntry, Future[_Outcome]], ready: list[_Done | _Prepared], *, final: bool
    ) -> Iterator[FileEvent]:
        if isinstance(head, _Done):
            ready.append(head)
        else:
            _entry, future = head
            outcome = future.result()
            if isinstance(outcome, _Fatal):
                raise outcome.error
            if isinstance(outcome, _Prepared):
                ready.append(outcome)
            else:
                ready.append(_Done(self._finish(outcome)))
        pending = [r for r in ready if isinstance(r, _Prepared)]
        if not pending or len(pending) >= self._batch_size(pending) or final:
            yield from self._flush_ready(ready)

    def _batch_size(self, pending: Sequence[_Prepared]) -> int:
        """``--batch-size``, else 1 on CPU, else what the GPU's free memory holds of the longest
        sequence waiting (so native-resolution photos get small batches, small photos big ones)."""
        if self.options.batch_size:
            return self.options.batch_size
        limits = []
        for i, handle in enumerate(self.models):
            sizes = [p.prepared.inputs[i].num_tokens for p in pending if i in p.prepared.inputs]
            if handle.loaded and sizes:
                limits.append(handle.get().batch_limit(max(sizes)))
        return min(limits, default=1)

    def _flush_ready(self, ready: list[_Done | _Prepared]) -> Iterator[FileEvent]:
        batch = [r for r in ready if isinstance(r, _Prepared)]
        if batch:
            self._score(batch)
        items = list(ready)
        ready.clear()
        for item in items:
            event = item.event
            assert event is not None
            self.summary.count(event)
            yield event

    def _score(self, batch: list[_Prepared]) -> None:
        """Run every model on the items that need it and queue the rows (one event per file)."""
        for i, handle in enumerate(self.models):
            todo = [p for p in batch if i in p.prepared.inputs]
            if todo:
                results = run_batch(handle.get(), [p.prepared.inputs[i] for p in todo], profile=self.profile)
                for p, result in zip(todo, results, strict=True):
                    p.results[i] = result
        names = self._names()
        for item in batch:
            entry, prepared = item.entry, item.prepared
            decoded = prepared.decoded
            path = _abs(entry.path)
            rows: list[ScoreRow] = []
            scores: dict[str, float] = {}
            failed: list[str] = []
            for i, name in enumerate(names):
                if i in item.stored:
                    scores[name] = item.stored[i]["score"]
                    continue
                result = item.results.get(i)
                if result is None:
                    failed.append(name)
                    continue
                _name, checkpoint_id = self.models[i].identity()
                rows.append(score_row(result, sha256=prepared.sha256, model=name, checkpoint_id=checkpoint_id,
                                      preprocess=decoded.preprocess,
                                      precision=self.models[i].precision().precision))  # fmt: skip
                scores[name] = result.score
            if failed:
                self._queue(*rows)  # what the other models found is kept
                which = "" if len(names) == 1 else f" ({', '.join(failed)})"
                failure = Failure(f"{MODEL_FAILED}{which}", "model", prepared.sha256)
                item.event = self._finish(_Failed(entry, failure))
                continue
            measured = measures_row(prepared)
            self._queue(
                photo_row(path, entry.size, entry.mtime_ns, prepared),
                *rows,
                *([measured] if measured is not None else []),
                FailureCleared(path),
            )
            item.event = FileEvent(
                path, "scored", score=scores[names[0]], warnings=list(decoded.warnings), width=decoded.width,
                height=decoded.height, sha256=prepared.sha256, scores=scores,
                measures=prepared.measures if prepared.measures is not None else self._stored_measures(prepared.sha256),
            )  # fmt: skip

    def _finish(self, outcome: _Reuse | _Failed) -> FileEvent:
        """Queue the rows of a non-network outcome and describe it."""
        entry = outcome.entry
        path = _abs(entry.path)
        if isinstance(outcome, _Reuse):
            measured = None
            if outcome.prepared is not None:
                photo = photo_row(path, entry.size, entry.mtime_ns, outcome.prepared)
                measured = measures_row(outcome.prepared)
            else:
                photo = _copied_photo_row(path, entry, outcome.sha256, outcome.like)
            self._queue(photo, *([measured] if measured is not None else []), FailureCleared(path))
            warnings = list(outcome.prepared.decoded.warnings) if outcome.prepared else []
            scores = {n: row["score"] for n, row in zip(self._names(), outcome.scores, strict=True)}
            measures = measured.values if measured is not None else self._stored_measures(outcome.sha256)
            return FileEvent(
                path, "cached", score=outcome.scores[0]["score"], width=photo.width, height=photo.height,
                sha256=outcome.sha256, reused=True, warnings=warnings, scores=scores, measures=measures,
            )  # fmt: skip
        failure = outcome.failure
        opts = self.options
        ops: list[WriteRow] = [failure_row(path, failure, entry.size, entry.mtime_ns, opts.preprocess,
                                           opts.max_pixels)]  # fmt: skip
        old = self.store.photo_by_path(path)
        if old is not None and (old["size"], old["mtime_ns"]) != (entry.size, entry.mtime_ns):
            ops.append(PhotoDropped(path))  # its row describes content that is gone
        self._queue(*ops)
        return FileEvent(path, "error", error=failure.reason, sha256=failure.sha256)

    def _queue(self, *ops: WriteRow) -> None:
        start = time.perf_counter()
        self.writer.add(*ops)
        self.profile.add("store", time.perf_counter() - start, 0)

    # -- worker thread -----------------------------------------------------------------------

    def _work(self, entry: ScanEntry) -> _Outcome:
        """The per-photo unit (:func:`~charmcli.work.prepare_file`) with the cache around it:
        known content is reused without decoding, models that have its score are not run."""
        n = len(self.models)
        stored: dict[int, dict[str, Any]] = {}
        like: dict[str, Any] | None = None

        def plan(sha256: str) -> list[int] | None:
            nonlocal stored, like
            if not self.options.rescore:
                with self.profile.timer("lookup"):
                    stored = self._stored_scores(sha256)
                    like = self.store.photo_by_sha(sha256) if len(stored) == n else None
                if like is not None:
                    return None  # a moved, renamed or copied file: nothing to decode
            return [i for i in range(n) if i not in stored]

        def measure(sha256: str) -> bool:
            if self.options.rescore:
                return True
            with self.profile.timer("lookup"):
                return self._stored_measures(sha256) is None

        try:
            outcome = prepare_file(entry.path, self.options, [h.get for h in self.models], plan=plan,
                                   measure=measure, notify=self.notify, profile=self.profile)  # fmt: skip
        except FatalError as exc:
            return _Fatal(exc)
        if isinstance(outcome, Failure):
            return _Failed(entry, outcome)
        if isinstance(outcome, Hashed):
            return _Reuse(entry, outcome.sha256, [stored[i] for i in range(n)], like)
        if len(stored) == n:  # content scored before, but no photo row to copy from
            return _Reuse(entry, outcome.sha256, [stored[i] for i in range(n)], None, outcome)
        return _Prepared(entry, outcome, stored)


def _abs(path: os.PathLike[str] | str) -> str:
    return os.fsdecode(os.path.abspath(path))


def _copied_photo_row(path: str, entry: ScanEntry, sha256: str, like: dict[str, Any] | None) -> PhotoRow:
    """A photos row for known content at a new path, copied from a row with the same content."""
    assert like is not None
    return PhotoRow(
        path, entry.size, entry.mtime_ns, sha256, like["width"], like["height"], like["format"],
        {c: like.get(c) for c in META_COLUMNS},
    )  # fmt: skip
