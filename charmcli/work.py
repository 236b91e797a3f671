"""The work done for one photo, the same on a laptop (:mod:`charmcli.pipeline`) and on a
cluster (:mod:`charmcli.cluster.stages`, :mod:`charmcli.cluster.importer`).

Each rule is written once, here:

* :func:`load_scorer` / :func:`load_preparer`: the model of a run's options, through the one
  factory (:mod:`charmcli.model.factory`), every failure one line (:class:`FatalError`);
* :func:`prepare_file`: read once, hash, decode, EXIF, prepare once per distinct
  preprocessing → :class:`Prepared`, or a one-line :class:`Failure` (never raises for a file);
* :func:`run_batch`: the network on a batch, retried one photo at a time if the batch fails;
* :func:`score_row`, :func:`photo_row`, :func:`failure_row`, :func:`failure_key`: what is
  stored for a photo, wherever it was scored.

What a later measure needs from the decoded photo belongs in :class:`Prepared` (computed in
:func:`prepare_file`, once per photo); what it needs from the network in
:class:`~charmcli.model.base.ScoreResult`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from charmcli.library.measures import measure_photo, measures_version
from charmcli.library.metadata import PhotoMeta, read_metadata
from charmcli.library.scan import display_path
from charmcli.model.precision import DEFAULT_PRECISION, PrecisionChoice  # torch-free until detection
from charmcli.model.registry import DEFAULT_MODEL  # the registry is torch-free
from charmcli.store import META_COLUMNS, FailureRow, MeasuresRow, PhotoRow, ScoreRow

if TYPE_CHECKING:  # torch is imported only when a file really needs the network
    from charmcli.model.base import Preparer, Scorer, ScoreResult
    from charmcli.model.spec import ModelFiles

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
    #: fp32, bf16 or auto (:mod:`charmcli.model.precision`); ``exact`` runs fp32 whatever this says
    precision: str = DEFAULT_PRECISION

    @property
    def requested_precision(self) -> str:
        """What the run asks of the network: ``--exact`` means the official outputs, so fp32."""
        return "fp32" if self.exact else self.precision

    def precision_choice(self) -> PrecisionChoice:
        """The precision this run's scores will carry (torch-free on a CPU machine); the model's
        family decides whether a CPU has a reduced-precision path for it."""
        from charmcli.model.precision import resolve_for_run
        from charmcli.model.registry import get_spec

        if self.exact:
            return PrecisionChoice("fp32", self.precision, "--exact means fp32")

        try:
            cpu_reduced = get_spec(self.model).cpu_reduced_precision
        except ValueError:  # a checkpoint named after no published model: a Charm checkpoint
            cpu_reduced = True
        return resolve_for_run(self.requested_precision, self.device, cpu_reduced=cpu_reduced)

    @property
    def model_names(self) -> list[str]:
        return [m.lower() for m in self.models] or [self.model.lower()]

    @property
    def preprocess(self) -> str:
        return preprocess_tag(exact=self.exact, max_side=self.max_side)

    @property
    def failure_options(self) -> str:
        """Decode options a failure depends on: a failure under other options is retried."""
        return failure_key(self.preprocess, self.max_pixels)

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


# -- the model ---------------------------------------------------------------------------------


def _fatal(options: ScoreOptions, exc: BaseException, multi: bool) -> FatalError:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return FatalError(f"{options.model}: {message}" if multi else message)


def model_files(options: ScoreOptions, *, multi: bool = False) -> ModelFiles:
    """Where the weights of ``options`` are (torch-free: a missing file is known before torch loads).

    A named model is that model; a checkpoint without ``--model`` holds its own name.
    """
    from charmcli.model import factory
    from charmcli.model.errors import CheckpointError, ModelUnavailableError

    name = options.model if options.model_given or options.checkpoint is None else None
    try:
        return factory.locate(name, checkpoint=options.checkpoint, pos_embed=options.pos_embed,
                              arch_config=options.arch_config)  # fmt: skip
    except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
        raise _fatal(options, exc, multi) from None


def load_scorer(
    options: ScoreOptions, *, multi: bool = False, precision: str | None = None
) -> tuple[Scorer, Path]:
    """The scorer ``options`` name on ``options.device`` in ``precision`` (default: what the
    options ask for), and the weights file it came from; :class:`FatalError` (one line, naming
    the model when ``multi``) if it cannot be loaded."""
    files = model_files(options, multi=multi)
    from charmcli.model.errors import CheckpointError, ModelUnavailableError

    try:
        from charmcli.model import factory

        precision = precision or options.requested_precision
        return factory.load(files, device=options.device, precision=precision), files.checkpoint
    except ImportError as exc:  # pragma: no cover - broken installation
        raise FatalError(f"cannot import the model engine: {exc}") from None
    except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
        raise _fatal(options, exc, multi) from None


def load_preparer(options: ScoreOptions) -> Preparer:
    """The CPU half of the model ``options`` name, without its network (cluster CPU workers)."""
    files = model_files(options)
    from charmcli.model.errors import CheckpointError, ModelUnavailableError

    try:
        from charmcli.model import factory

        return factory.load_preparer(files)
    except (ModelUnavailableError, CheckpointError, ValueError, OSError) as exc:
        raise _fatal(options, exc, False) from None


# -- timing ------------------------------------------------------------------------------------


class Profile:
    """Seconds and counts per stage, summed over threads (so stages can overlap wall time)."""

    STAGES = ("scan", "lookup", "read", "hash", "decode", "metadata", "measures", "tokenize", "load model", "network",
              "store")  # fmt: skip

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


def _timer(profile: Profile | None, stage: str) -> AbstractContextManager[Any]:
    return profile.timer(stage) if profile is not None else nullcontext()


# -- one file: read → hash → decode → EXIF → prepare -------------------------------------------


@dataclass
class Prepared:
    """One photo decoded and made ready for the network (what the stored rows need, too)."""

    sha256: str
    decoded: DecodedImage  #: the RGB image under the run's decode policy, its size and warnings
    meta: PhotoMeta
    inputs: dict[int, Any] = field(default_factory=dict)  #: model index -> prepared input (shared by equal keys)
    #: technical measures of the decoded image (:func:`~charmcli.library.measures.measure_photo`),
    #: ``None`` when not asked for (or when measuring failed: the score still counts)
    measures: dict[str, Any] | None = None


@dataclass
class Failure:
    """Why one photo could not be prepared or scored: ``reason`` is one line for the user."""

    reason: str
    kind: str | None  #: empty, unreadable, corrupt, too-large, model, internal, … (None: not recorded)
    sha256: str | None = None


@dataclass
class Hashed:
    """Read and hashed only: the caller's ``plan`` found nothing more to do for this content."""

    sha256: str


def unexpected(exc: BaseException) -> str:
    """An unexpected error as one line (bounded), naming its type."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error: {type(exc).__name__}: {message}"[:300]


def failure_of(exc: BaseException, sha256: str | None = None) -> Failure:
    """The one-line failure of a per-photo exception (the same words on a laptop and a cluster)."""
    if isinstance(exc, DecodeError):
        return Failure(str(exc), exc.kind, sha256)
    if isinstance(exc, MemoryError):
        return Failure("out of memory; lower --max-pixels or the number of workers", "too-large", sha256)
    return Failure(unexpected(exc), "internal", sha256)


def prepare_file(
    path: os.PathLike[str] | str,
    options: ScoreOptions,
    models: Sequence[Callable[[], Preparer]],
    *,
    data: bytes | None = None,
    plan: Callable[[str], Sequence[int] | None] | None = None,
    measure: Callable[[str], bool] | None = None,
    notify: Callable[[str], None] | None = None,
    profile: Profile | None = None,
) -> Prepared | Failure | Hashed:
    """Read ``path`` once (unless ``data`` is given), hash, decode, read EXIF, and prepare the
    input of each model in ``models`` (callables returning its :class:`Preparer`, so a model
    loads only once a file needs it), once per distinct ``preprocess_key``. Never raises for a bad file: a :class:`Failure` says why.

    ``plan(sha256)``, called once the content is known, names the model indices that still
    need an input (``None``: nothing more to do, :class:`Hashed` is returned without decoding).
    ``measure(sha256)`` says whether the technical measures of this content are wanted: they are
    then taken from the decoded image (even when ``plan`` needs no model) into
    :attr:`Prepared.measures`.
    ``notify`` gets one line before a photo that will take long at native resolution.
    A :class:`FatalError` (a model that cannot load) is raised: the run cannot go on.
    """
    sha: str | None = None
    name = os.fsdecode(path)
    try:
        if data is None:
            with _timer(profile, "read"):
                data = read_bytes(path)
        with _timer(profile, "hash"):
            sha = hashlib.sha256(data).hexdigest()
        wanted = list(range(len(models))) if plan is None else plan(sha)
        measuring = measure is not None and measure(sha)
        if wanted is None:
            if not measuring:
                return Hashed(sha)
            wanted = []  # every score is known, the measures are not: decode for them alone
        if notify is not None and (options.exact or options.max_side == 0):
            _warn_if_long(name, data, notify)
        with _timer(profile, "decode"):
            decoded = decode_image(
                data, name=name, exact=options.exact, max_side=options.max_side,
                max_pixels=options.max_pixels, sha256=sha,
            )  # fmt: skip
        with _timer(profile, "metadata"):
            meta = read_metadata(data, exif_block=decoded.exif_block)
        del data
        inputs: dict[int, Any] = {}
        by_key: dict[Hashable, Any] = {}
        for i in wanted:
            preparer = models[i]()  # a model is loaded when a file first needs it
            key = preparer.preprocess_key
            if key not in by_key:
                with _timer(profile, "tokenize"):
                    by_key[key] = preparer.prepare(decoded.image)
            inputs[i] = by_key[key]
        measured = None
        if measuring:
            with _timer(profile, "measures"):
                measured = _measure(decoded)
        return Prepared(sha, decoded, meta, inputs, measured)
    except FatalError:
        raise
    except Exception as exc:  # one bad file never stops the run
        return failure_of(exc, sha)


def _measure(decoded: DecodedImage) -> dict[str, Any] | None:
    """The technical measures of the image already decoded for the score (no second decode); a
    failure here loses the measures, never the score."""
    try:
        return measure_photo(decoded.image)
    except Exception as exc:  # e.g. a broken OpenCV install: say so, keep the photo
        decoded.warnings.append(f"technical measures failed: {type(exc).__name__}: {exc}"[:200])
        return None


def _warn_if_long(name: str, data: bytes, notify: Callable[[str], None]) -> None:
    """One line before a photo that will take long at native resolution (its header only)."""
    size = image_size(data, name)
    if size is None or size[0] * size[1] <= LONG_NATIVE_PIXELS:
        return
    notify(
        f"{display_path(name)}: {size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP at native "
        f"resolution; this one can take a minute or more on a CPU (--max-side {DEFAULT_MAX_SIDE} is fast)"
    )


# -- the network on a batch --------------------------------------------------------------------

MODEL_FAILED = "the model failed on this image"


def run_batch(
    scorer: Scorer, inputs: Sequence[Any], *, profile: Profile | None = None
) -> list[ScoreResult | None]:
    """``scorer.score_prepared`` on a batch; if the batch fails, each input is retried alone,
    and one that fails alone gets ``None`` (its photo fails with :data:`MODEL_FAILED`)."""
    if not inputs:
        return []
    start = time.perf_counter()
    try:
        results: list[ScoreResult | None] = list(scorer.score_prepared(inputs))
    except Exception:
        if profile is not None:
            profile.add("network", time.perf_counter() - start, 0)
        if len(inputs) == 1:
            return [None]
        return [r for one in inputs for r in run_batch(scorer, [one], profile=profile)]
    if profile is not None:
        profile.add("network", time.perf_counter() - start, len(inputs))
    return results


# -- what is stored ----------------------------------------------------------------------------


def failure_key(preprocess: str | None, max_pixels: int | None) -> str:
    """The decode options a recorded failure depends on: under other options it is retried."""
    return f"{preprocess};max_pixels={max_pixels}"


def score_row(
    result: ScoreResult, *, sha256: str, model: str, checkpoint_id: str, preprocess: str, precision: str
) -> ScoreRow:
    """The stored score of one photo's content under one model, decode policy and precision."""
    embedding = None if result.embedding is None else result.embedding.astype("<f2").tobytes()
    return ScoreRow(
        sha256=sha256,
        model=model,
        checkpoint_id=checkpoint_id,
        preprocess=preprocess,
        score=float(result.score),
        outputs=[float(v) for v in result.outputs],
        n_tokens=result.n_tokens,
        input_size=(int(result.input_size[0]), int(result.input_size[1])),
        token_path=result.route,
        kept_cells=[(int(r), int(c)) for r, c in result.kept_cells],
        cell_size=result.cell_size,
        embedding=embedding,
        seconds=result.seconds,
        head_input=None if result.head_input is None else result.head_input.astype("<f2").tobytes(),
        precision=precision,
    )


def measures_row(prepared: Prepared) -> MeasuresRow | None:
    """The stored measures of one photo's content (``None`` when none were taken)."""
    if prepared.measures is None:
        return None
    return MeasuresRow(prepared.sha256, measures_version(), prepared.measures)


def photo_row(path: str, size: int, mtime_ns: int, prepared: Prepared) -> PhotoRow:
    """The stored description of one file as read: content hash, displayed size, format, EXIF."""
    decoded, values = prepared.decoded, prepared.meta.to_dict()
    return PhotoRow(
        path, size, mtime_ns, prepared.sha256, decoded.width, decoded.height, decoded.format,
        {c: values.get(c) for c in META_COLUMNS},
    )  # fmt: skip


def failure_row(
    path: str, failure: Failure, size: int | None, mtime_ns: int | None, preprocess: str | None,
    max_pixels: int | None,
) -> FailureRow:  # fmt: skip
    """The stored failure of one file, keyed to the decode options it happened under."""
    return FailureRow(
        path, failure.reason, failure.kind, failure.sha256, size, mtime_ns, failure_key(preprocess, max_pixels)
    )
