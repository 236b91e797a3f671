"""Score a stream of files against the store: cached → skip, known content → reuse, else decode + score.

The orchestration lives here, not in the CLI, so it can be driven and tested without a terminal
and rendered any way (rich progress, JSON lines, a compare table). It yields one
:class:`FileEvent` per input, in input order.

How one run flows:

1. **By path, in the main thread, without opening the file**: a ``photos`` row with the same
   path, size and mtime gives the sha256, and a score for (sha256, model, checkpoint,
   preprocess) means *cached*. A recorded failure with the same size/mtime/options is reported
   as a *known* failure without retrying (``retry_failed`` overrides), so the CLI can sum such
   files up in one line instead of repeating them.
2. **Otherwise in a small decode pool** (bounded window, so memory stays flat and decoding of
   the next files overlaps the network on this one): read the bytes once, hash them; if that
   content already has a score (a moved, renamed or copied file) reuse it without decoding;
   else decode, read EXIF from the same bytes and tokenize (``Scorer.prepare`` is thread-safe).
3. **The network runs in the main thread**, in batches, then rows go to the store through a
   :class:`~charmcli.store.BatchWriter` (small transactions: an interrupt loses only what is in
   flight).

Several models in one run (issue 13) share steps 1–2: a file counts as cached only when every
model has its score, is read and decoded once, and is prepared once per distinct
``preprocess_key`` (models with equal preprocessing share the prepared input); each model then
runs on the files it still lacks, and the event carries every model's score.

The model is loaded lazily: a run whose files are all cached needs neither torch nor the
checkpoint, as long as the checkpoint's identity is remembered in the store (it is after the
first load). Per-file problems become ``error`` events; only an unusable model stops a run
(:class:`FatalError`).
"""

from __future__ import annotations

import contextlib
import hashlib
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

from charmcli.library.decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    DecodedImage,
    DecodeError,
    decode_image,
    image_size,
    preprocess_tag,
    read_bytes,
)
from charmcli.library.metadata import PhotoMeta, read_metadata
from charmcli.library.scan import ScanEntry, ScanProblem, display_path, iter_files
from charmcli.model.registry import DEFAULT_MODEL  # the registry is torch-free
from charmcli.store import (
    META_COLUMNS,
    BatchWriter,
    FailureCleared,
    FailureRow,
    PhotoDropped,
    PhotoRow,
    PhotoSeen,
    ScoreRow,
    Store,
    WriteRow,
)

if TYPE_CHECKING:  # torch is imported only when a file really needs the network
    from charmcli.model import Scorer

Status = Literal["scored", "cached", "error", "skipped"]

#: Above this many pixels at native resolution (``--max-side 0`` or ``--exact``), a photo gets a
#: one-line warning before its work starts: tokenizing it can take a minute on a laptop CPU.
LONG_NATIVE_PIXELS = 12_000_000


class FatalError(Exception):
    """The run cannot go on (model unavailable, bad checkpoint); ``str()`` is one line."""


@dataclass
class ScoreOptions:
    """What to score with and how to decode; ``preprocess`` goes into the cache key."""

    model: str = DEFAULT_MODEL
    model_given: bool = False  #: the user named the model (else a checkpoint's own name wins)
    checkpoint: Path | None = None
    pos_embed: Path | None = None
    device: str = "auto"
    exact: bool = False
    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    rescore: bool = False
    retry_failed: bool = False
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    batch_size: int | None = None  #: None: 1 on CPU; on CUDA, from free memory (up to 128)
    #: issue 13: every model of a multi-model run (``model`` is the first); empty = just ``model``
    models: list[str] = field(default_factory=list)
    arch_config: Path | None = None  #: EAT: the architecture in the official YAML format

    @property
    def model_names(self) -> list[str]:
        return [m.lower() for m in self.models] or [self.model.lower()]

    @property
    def preprocess(self) -> str:
        return preprocess_tag(exact=self.exact, max_side=self.max_side)

    @property
    def failure_options(self) -> str:
        """Decode options a failure depends on: a failure under other options is retried."""
        return f"{self.preprocess};max_pixels={self.max_pixels}"

    @property
    def source(self) -> str:
        """Where the weights come from, the key of the checkpoint-identity memo."""
        arch = ""
        if self.arch_config is not None:  # same weights, another architecture: another identity
            try:
                arch = "#arch=" + hashlib.sha256(Path(self.arch_config).read_bytes()).hexdigest()[:16]
            except OSError:
                arch = "#arch=" + os.path.abspath(self.arch_config)
        if self.checkpoint is not None:
            return "file:" + os.path.abspath(self.checkpoint) + arch
        return "hub:" + self.model.lower() + arch


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
                arch_config=options.arch_config if get_spec(name).family == "eat" else None,
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
    known: bool = False  #: an error recorded by an earlier run, file unchanged (not retried)
    scores: dict[str, float] = field(default_factory=dict)  #: every model's score (issue 13)

    def to_json(self, model: str | None) -> dict[str, Any]:
        """One line of ``--json``; a multi-model run adds ``scores`` (model -> score), the single-model
        contract stays as it was."""
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
            "known_failure": self.known,
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
            self.known_failures += event.known

    @property
    def total(self) -> int:
        return self.scored + self.cached + self.failed + self.skipped


class Profile:
    """Seconds and counts per stage, summed over threads (so stages can overlap wall time)."""

    STAGES = ("scan", "lookup", "read", "hash", "decode", "metadata", "tokenize", "load model", "network", "store")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float, n: int = 1) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.counts[stage] = self.counts.get(stage, 0) + n

    def timer(self, stage: str) -> _Timer:
        return _Timer(self, stage)

    def rows(self) -> list[tuple[str, float, int]]:
        order = {name: i for i, name in enumerate(self.STAGES)}
        names = sorted(self.seconds, key=lambda s: order.get(s, len(order)))
        return [(name, self.seconds[name], self.counts.get(name, 0)) for name in names]


class _Timer:
    def __init__(self, profile: Profile, stage: str) -> None:
        self.profile, self.stage = profile, stage

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.profile.add(self.stage, time.perf_counter() - self.start)


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
        #: set by a front end to show that the model is loading: called with what is loaded,
        #: returns a context manager held while it loads (e.g. a rich status line)
        self.loading: Callable[[str], AbstractContextManager[Any]] = lambda what: contextlib.nullcontext()

    @property
    def loaded(self) -> bool:
        return self._scorer is not None

    def identity(self) -> tuple[str, str]:
        """(model name, checkpoint sha256) for cache lookups; loads the model if not memoised."""
        if self.name is None or self.checkpoint_id is None:
            memo = None if self.options.rescore else self.store.recall_checkpoint(self.options.source)
            wanted = self.options.model.lower() if self.options.model_given else None
            if memo is not None and (wanted is None or memo["model"] == wanted):
                self.name, self.checkpoint_id = memo["model"], memo["checkpoint_id"]
            else:
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
            self.name, self.checkpoint_id = scorer.name, scorer.checkpoint_id
            if weights_file is not None:
                self.store.remember_checkpoint(
                    self.options.source, str(weights_file), scorer.checkpoint_id, scorer.name
                )
            self._scorer = scorer
            return scorer

    def _load(self) -> tuple[Scorer, Path | None]:
        opts = self.options
        from charmcli.model.engine import require_engine
        from charmcli.model.errors import CheckpointError, ModelUnavailableError
        from charmcli.model.registry import fetch, get_spec

        try:
            if get_spec(opts.model).needs_local_file:  # EAT (issue 13): weights the user brings
                from charmcli.model.errors import eat_weights_message
                from charmcli.model.registry import local_weights, models_dir

                spec = get_spec(opts.model)
                weights = Path(opts.checkpoint).absolute() if opts.checkpoint is not None else local_weights(spec)
                if weights is None:  # known before torch loads, like a hub file
                    raise ModelUnavailableError(eat_weights_message(spec.name, spec.filename, models_dir()))
                require_engine()
                from charmcli.model.eat.scorer import EatScorer

                eat = EatScorer.from_files(weights, spec.name, opts.arch_config, device=opts.device)
                return eat, weights  # type: ignore[return-value]
            if opts.checkpoint is None:  # the hub's files first: a missing one is known before torch loads
                spec = get_spec(opts.model)
                checkpoint, pos_embed = fetch(spec.filename, spec.name), fetch(spec.pos_filename, spec.name)
                name: str | None = spec.name
            else:
                checkpoint, pos_embed = Path(opts.checkpoint).absolute(), opts.pos_embed
                name = opts.model if opts.model_given else None
            require_engine()  # a broken torch install: one line, not a 200-line traceback
            from charmcli.model import Scorer

            scorer = Scorer.from_files(checkpoint, pos_embed, name=name, device=opts.device)
            return scorer, checkpoint
        except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise FatalError(f"{opts.model}: {message}" if self.multi else message) from None


def load_scorer(options: ScoreOptions) -> Scorer:
    """The scorer ``options`` name, loaded without a store (cluster workers have none).

    Same resolution and one-line errors (:class:`FatalError`) as a ``charm score`` run.
    """
    return ModelHandle(options, None)._load()[0]  # type: ignore[arg-type]  # _load never uses the store


# -- work items ---------------------------------------------------------------------------------


@dataclass
class _Done:
    event: FileEvent


@dataclass
class _Prepared:
    """A decoded, tokenized file waiting for the network."""

    entry: ScanEntry
    decoded: DecodedImage
    meta: PhotoMeta
    inputs: dict[int, Any]  #: model index -> prepared input (shared between equal preprocessings)
    known: dict[int, dict[str, Any]] = field(default_factory=dict)  #: model index -> cached score row
    results: dict[int, Any] = field(default_factory=dict)  #: model index -> ScoreResult (None: failed)
    event: FileEvent | None = None

    @property
    def tokens(self) -> Any:
        """The first model's input (single-model callers)."""
        return next(iter(self.inputs.values()))


@dataclass
class _Reuse:
    """Known content at a new path: store the path, keep the score."""

    entry: ScanEntry
    sha256: str
    scores: list[dict[str, Any]]  #: one stored score row per model, in model order
    like: dict[str, Any] | None  #: a photos row with the same content (dims + EXIF to copy)
    decoded: DecodedImage | None = None
    meta: PhotoMeta | None = None

    @property
    def score(self) -> dict[str, Any]:
        return self.scores[0]


@dataclass
class _Failed:
    entry: ScanEntry
    reason: str
    kind: str
    sha256: str | None = None


@dataclass
class _Fatal:
    error: FatalError


_Outcome = _Prepared | _Reuse | _Failed | _Fatal


class Pipeline:
    """One scoring run over a list of scan items. Iterate :meth:`run`; read :attr:`summary`."""

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
        self.summary = Summary()

    # -- public ------------------------------------------------------------------------------

    def run(self, items: Sequence[ScanEntry | ScanProblem]) -> Iterator[FileEvent]:
        """Yield one event per item, in order. Ctrl-C: pending rows are committed, then it stops.

        A KeyboardInterrupt raised while the caller handles an event reaches the caller; closing
        the generator (``close()``, or leaving a ``for`` loop by an exception) still commits.
        """
        start = time.perf_counter()
        if self._setup_error is not None:
            raise self._setup_error
        for handle in self.models:
            handle.identity()  # FatalError here means nothing was attempted
        opts = self.options
        inflight = max(2, opts.workers * 2)
        pool = ThreadPoolExecutor(max_workers=opts.workers, thread_name_prefix="charm-decode")
        window: deque[_Done | tuple[ScanEntry, Future[_Outcome]]] = deque()
        ready: list[_Done | _Prepared] = []
        try:
            for item in items:
                if isinstance(item, ScanProblem):
                    status: Status = "skipped" if item.skipped else "error"
                    window.append(_Done(FileEvent(_abs(item.path), status, error=item.reason)))
                else:
                    with self.profile.timer("lookup"):
                        quick = self._by_path(item)
                    if quick is not None:
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

    def _key(self, sha256: str, index: int = 0) -> tuple[str, str, str, str]:
        name, checkpoint_id = self.models[index].identity()
        return sha256, name, checkpoint_id, self.options.preprocess

    def _known(self, sha256: str) -> dict[int, dict[str, Any]]:
        """Model index -> stored score of this content, for the models that have one."""
        found = {}
        for i in range(len(self.models)):
            row = self.store.score_for(*self._key(sha256, i))
            if row is not None:
                found[i] = row
        return found

    def _names(self) -> list[str]:
        return [h.identity()[0] for h in self.models]

    def _by_path(self, entry: ScanEntry) -> FileEvent | None:
        """Cached or known-failed without opening the file; ``None`` = needs reading."""
        path = _abs(entry.path)
        row = self.store.photo_by_path(path)
        unchanged = row is not None and row["size"] == entry.size and row["mtime_ns"] == entry.mtime_ns
        if unchanged and not self.options.rescore:
            found = self._known(row["sha256"])  # type: ignore[index]
            if len(found) == len(self.models):
                self.writer.add(PhotoSeen(path))
                scores = {n: found[i]["score"] for i, n in enumerate(self._names())}
                return FileEvent(
                    path, "cached", score=found[0]["score"], width=row["width"], height=row["height"],  # type: ignore[index]
                    sha256=row["sha256"], scores=scores,  # type: ignore[index]
                )  # fmt: skip
        if not self.options.retry_failed:
            failure = self.store.failure_for(path)
            if (
                failure is not None
                and failure["size"] == entry.size
                and failure["mtime_ns"] == entry.mtime_ns
                and failure["options"] == self.options.failure_options
            ):
                return FileEvent(path, "error", error=failure["reason"], sha256=failure["sha256"], known=True)
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
            sizes = [p.inputs[i].num_tokens for p in pending if i in p.inputs]
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

    def _run_model(self, index: int, items: list[_Prepared]) -> None:
        """One model on the items that need it (one by one if the batch fails): ``results[index]``."""
        scorer = self.models[index].get()
        start = time.perf_counter()
        try:
            results = scorer.score_prepared([p.inputs[index] for p in items])
        except Exception:
            if len(items) == 1:
                results = [None]
            else:
                self.profile.add("network", time.perf_counter() - start, 0)
                for p in items:
                    self._run_model(index, [p])
                return
        self.profile.add("network", time.perf_counter() - start, len(items))
        for p, result in zip(items, results, strict=True):
            p.results[index] = result

    def _score(self, batch: list[_Prepared]) -> None:
        """Run every model on the items that need it and queue the rows (one event per file)."""
        for i in range(len(self.models)):
            todo = [p for p in batch if i in p.inputs]
            if todo:
                self._run_model(i, todo)
        names = self._names()
        for prepared in batch:
            entry, decoded = prepared.entry, prepared.decoded
            path = _abs(entry.path)
            ops: list[WriteRow] = []
            scores: dict[str, float] = {}
            failed: list[str] = []
            for i, name in enumerate(names):
                if i in prepared.known:
                    scores[name] = prepared.known[i]["score"]
                    continue
                result = prepared.results.get(i)
                if result is None:
                    failed.append(name)
                    continue
                ops.append(self._score_row(i, decoded, result))
                scores[name] = result.score
            if failed:
                self._queue(*ops)  # what the other models found is kept
                which = "" if len(names) == 1 else f" ({', '.join(failed)})"
                reason = f"the model failed on this image{which}"
                prepared.event = self._finish(_Failed(entry, reason, "model", decoded.sha256))
                continue
            self._queue(
                _photo_row(entry, decoded.sha256, decoded, prepared.meta, None),
                *ops,
                FailureCleared(path),
            )
            prepared.event = FileEvent(
                path, "scored", score=scores[names[0]], warnings=list(decoded.warnings), width=decoded.width,
                height=decoded.height, sha256=decoded.sha256, scores=scores,
            )  # fmt: skip

    def _score_row(self, index: int, decoded: DecodedImage, result: Any) -> ScoreRow:
        name, checkpoint_id = self.models[index].identity()
        embedding = None if result.embedding is None else result.embedding.astype("float16").tobytes()
        return ScoreRow(
            sha256=decoded.sha256,
            model=name,
            checkpoint_id=checkpoint_id,
            preprocess=decoded.preprocess,
            score=result.score,
            outputs=result.outputs,
            n_tokens=result.n_tokens,
            input_size=tuple(result.input_size),  # type: ignore[arg-type]
            token_path=getattr(result, "path", None),
            kept_cells=[tuple(c) for c in result.kept_cells],  # type: ignore[misc]
            cell_size=getattr(result, "cell_size", None),
            embedding=embedding,
            seconds=result.seconds,
        )

    def _finish(self, outcome: _Reuse | _Failed) -> FileEvent:
        """Queue the rows of a non-network outcome and describe it."""
        path = _abs(outcome.entry.path)
        if isinstance(outcome, _Reuse):
            photo = _photo_row(outcome.entry, outcome.sha256, outcome.decoded, outcome.meta, outcome.like)
            self._queue(photo, FailureCleared(path))
            warnings = list(outcome.decoded.warnings) if outcome.decoded else []
            scores = {n: row["score"] for n, row in zip(self._names(), outcome.scores, strict=True)}
            return FileEvent(
                path, "cached", score=outcome.score["score"], width=photo.width, height=photo.height,
                sha256=outcome.sha256, reused=True, warnings=warnings, scores=scores,
            )  # fmt: skip
        entry = outcome.entry
        failure = FailureRow(
            path, outcome.reason, outcome.kind, outcome.sha256, entry.size, entry.mtime_ns,
            self.options.failure_options,
        )  # fmt: skip
        ops: list[WriteRow] = [failure]
        old = self.store.photo_by_path(path)
        if old is not None and (old["size"], old["mtime_ns"]) != (entry.size, entry.mtime_ns):
            ops.append(PhotoDropped(path))  # its row describes content that is gone
        self._queue(*ops)
        return FileEvent(path, "error", error=outcome.reason, sha256=outcome.sha256)

    def _queue(self, *ops: WriteRow) -> None:
        start = time.perf_counter()
        self.writer.add(*ops)
        self.profile.add("store", time.perf_counter() - start, 0)

    # -- worker thread -----------------------------------------------------------------------

    def _work(self, entry: ScanEntry) -> _Outcome:
        """Read once, hash, reuse known content or decode + EXIF + tokenize. Never raises."""
        opts, profile = self.options, self.profile
        sha: str | None = None
        try:
            with profile.timer("read"):
                data = read_bytes(entry.path)
            with profile.timer("hash"):
                sha = hashlib.sha256(data).hexdigest()
            known: dict[int, dict[str, Any]] = {}
            like = None
            everything = False
            if not opts.rescore:
                with profile.timer("lookup"):
                    known = self._known(sha)
                    everything = len(known) == len(self.models)
                    like = self.store.photo_by_sha(sha) if everything else None
                if everything and like is not None:
                    return _Reuse(entry, sha, [known[i] for i in range(len(self.models))], like)
            if self.notify is not None and (opts.exact or opts.max_side == 0):
                self._warn_if_long(entry, data)
            with profile.timer("decode"):
                decoded = decode_image(
                    data, name=os.fsdecode(entry.path), exact=opts.exact, max_side=opts.max_side,
                    max_pixels=opts.max_pixels, sha256=sha,
                )  # fmt: skip
            with profile.timer("metadata"):
                meta = read_metadata(data, exif_block=decoded.exif_block)
            del data
            if everything:  # content scored before, but no photo row to copy from
                return _Reuse(entry, sha, [known[i] for i in range(len(self.models))], None, decoded, meta)
            # one prepared input per distinct preprocessing, shared by the models that use it
            inputs: dict[int, Any] = {}
            by_key: dict[Any, Any] = {}
            for i, handle in enumerate(self.models):
                if i in known:
                    continue
                scorer = handle.get()
                key = getattr(scorer, "preprocess_key", ("model", i))
                if key not in by_key:
                    with profile.timer("tokenize"):
                        by_key[key] = scorer.prepare(decoded.image)
                inputs[i] = by_key[key]
            return _Prepared(entry, decoded, meta, inputs, known)
        except DecodeError as exc:
            return _Failed(entry, str(exc), exc.kind, sha)
        except FatalError as exc:
            return _Fatal(exc)
        except MemoryError:
            return _Failed(entry, "out of memory; lower --max-pixels or --workers", "too-large", sha)
        except Exception as exc:  # one bad file never stops the run
            message = " ".join(str(exc).split()) or type(exc).__name__
            return _Failed(entry, f"unexpected error: {type(exc).__name__}: {message}"[:300], "internal")


    def _warn_if_long(self, entry: ScanEntry, data: bytes) -> None:
        """One line before a photo that will take long at native resolution (its header only)."""
        size = image_size(data, os.fsdecode(entry.path))
        if size is None or size[0] * size[1] <= LONG_NATIVE_PIXELS:
            return
        assert self.notify is not None
        self.notify(
            f"{display_path(entry.path)}: {size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP at native "
            f"resolution; this one can take a minute or more on a CPU (--max-side {DEFAULT_MAX_SIDE} is fast)"
        )


def _abs(path: os.PathLike[str] | str) -> str:
    return os.fsdecode(os.path.abspath(path))


def _photo_row(
    entry: ScanEntry,
    sha256: str,
    decoded: DecodedImage | None,
    meta: PhotoMeta | None,
    like: dict[str, Any] | None,
) -> PhotoRow:
    """A photos row from a fresh decode, or copied from another row with the same content."""
    if decoded is not None:
        values = meta.to_dict() if meta is not None else {}
        return PhotoRow(
            _abs(entry.path), entry.size, entry.mtime_ns, sha256, decoded.width, decoded.height,
            decoded.format, {c: values.get(c) for c in META_COLUMNS},
        )  # fmt: skip
    assert like is not None
    return PhotoRow(
        _abs(entry.path), entry.size, entry.mtime_ns, sha256, like["width"], like["height"], like["format"],
        {c: like.get(c) for c in META_COLUMNS},
    )  # fmt: skip

