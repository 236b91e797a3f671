"""What every command shares: options, argument checks, ``--json`` output and 80-column tables.

Nothing here imports torch. Every check that can turn a command line down runs here, before a
command imports the model, so a usage error answers at once (exit code 2).

Tables are designed for 80 columns and use more when there is more (:func:`print_table`):
numbers never wrap, a path keeps its file name whole and loses leading folders first, and
optional columns go before the path is squeezed below a readable width.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, get_type_hints

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from charmcli.flags import FLAG_NAMES, Limits, parse_limits, parse_names
from charmcli.library.decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE
from charmcli.library.scan import display_path
from charmcli.model.precision import DEFAULT_PRECISION, REQUESTS, gpu_possible  # torch-free
from charmcli.model.registry import DEFAULT_MODEL  # torch-free
from charmcli.store import Store, StoreError, default_db_path
from charmcli.work import ScoreOptions

# -- output -------------------------------------------------------------------------------------


_TRAILING = re.compile(r"(?:\x1b\[[0-9;]*m)*(?: (?:\x1b\[[0-9;]*m)*)+(?=\n|$)")
_STYLE = re.compile(r"\x1b\[[0-9;]*m")


class _LineEndsTrimmed:
    """A text stream whose lines end without spaces: rich pads every cell of a table to its
    column's width (the last one too) and keeps the space where it wraps a line. Rich writes each
    print's whole rendering in one ``write``; everything else (``isatty``, ``encoding``,
    ``fileno``) is the stream's own, so rich sees the terminal it would have seen."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_TRAILING.sub(lambda m: "".join(_STYLE.findall(m.group())), text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _console(stream: Any) -> Console:
    return Console(file=_LineEndsTrimmed(stream), highlight=False)


def err() -> Console:
    """stderr: progress, per-file errors, summaries. Created per call: CliRunner (and pytest's
    capsys) swap ``sys.stderr`` between invocations.

    In a terminal a long message wraps between words at its width (the terminal itself would cut
    words in two); written to a file or a pipe, every message stays one line, for grep.
    """
    console = _console(sys.stderr)
    console.soft_wrap = not console.is_terminal
    return console


def out() -> Console:
    """stdout: the data (tables, ``--json``, ``--csv``).

    Fitted to the terminal, or to ``COLUMNS``; a pipe or a file without ``COLUMNS`` has no width,
    so nothing is shortened or left out there (see :func:`table_width`).
    """
    console = _console(sys.stdout)
    if table_width(console) is None:
        console.width = 1 << 16
    return console


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``charm: error: <one line>`` on stderr and exit (2: the command cannot run as asked)."""
    line = " ".join(str(message).split())
    err().print(f"[red]charm: error:[/red] {escape(line)}")
    raise typer.Exit(code)


def say(console: Console, *parts: str, sep: str = " · ", indent: int = 0) -> None:
    """A message made of parts (markup): one line in a log, or in a terminal wide enough; else a
    line per part (the later ones indented by ``indent``), so a narrow terminal breaks it where
    the sense breaks, not mid-phrase."""
    shown = [part for part in parts if part]
    line = sep.join(shown)
    if console.soft_wrap or Text.from_markup(line).cell_len <= console.width:
        console.print(line)
        return
    for i, part in enumerate(shown):
        text = Text.from_markup(part)
        if i and indent:
            text.pad_left(indent)
        console.print(text)


def say_file(console: Console, label: str, path: str, message: str) -> None:
    """``LABEL PATH: MESSAGE`` for one file (``error``, ``skipped``): one line in a log; in a narrow
    terminal the message goes under the path, indented, rather than wrapping mid-phrase."""
    say(console, f"{label} {escape(path)}:", escape(message), sep=" ", indent=2)


def emit_json(data: Any) -> None:
    try:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    except UnicodeEncodeError:  # a non-UTF-8 file name (or a non-UTF-8 terminal): \uXXXX escapes
        sys.stdout.write(json.dumps(data, ensure_ascii=True, default=str) + "\n")
    sys.stdout.flush()


def write_raw(text: str) -> None:
    """Write text whose paths may hold undecodable bytes: those go out exactly as on disk."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode(sys.stdout.encoding or "utf-8", "surrogateescape"))
    sys.stdout.flush()


def fmt_score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


# -- the database and paths ---------------------------------------------------------------------


@contextmanager
def open_db(db: Path | None) -> Iterator[Store]:
    try:
        store = Store(db if db is not None else default_db_path())
    except StoreError as exc:
        fail(str(exc))
    try:
        yield store
    finally:
        store.close()


def as_typed(path: os.PathLike[str] | str) -> str:
    """A path as the user would type it: relative to the working folder when it lies below it
    (``Photos/a.jpg`` for ``charm score Photos``), else whole; printable either way."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return display_path(path)
    return display_path(path if relative.startswith(os.pardir) else relative)


def check_paths(paths: Sequence[Path], *, files_only: bool = False) -> None:
    for path in paths:
        if not os.path.lexists(path):
            fail(f"no such file or folder: {display_path(path)}")
        if files_only and os.path.isdir(path):
            fail(f"{display_path(path)} is a folder; this command takes image files")


# -- options ------------------------------------------------------------------------------------

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", envvar="CHARM_DB", metavar="FILE", help="Score database (default: user data dir charm/charm.db)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
# Model and decode options of the commands that score (`score`, `compare`, `show --explain`,
# `cluster score`): each option is defined once, in a bundle below, and a command takes the
# bundle as one parameter (see :func:`bundled`), as sqlite-utils' `insert_upsert_options` does.
ModelsOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", metavar="NAME",
                 help=f"Model (default {DEFAULT_MODEL}); repeat for several in one pass (-m aadb -m eat-ava). "
                      "See `charm models`."),
]  # fmt: skip
ArchConfigOpt = Annotated[
    Path | None,
    typer.Option("--arch-config", metavar="YAML",
                 help="EAT: architecture in the official YAML format (default dat_base)."),
]  # fmt: skip
CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", envvar="CHARM_CHECKPOINT", metavar="FILE",
                 help="Local checkpoint (.pth or .safetensors) instead of the hub."),
]  # fmt: skip
PosEmbedOpt = Annotated[
    Path | None,
    typer.Option("--pos-embed", envvar="CHARM_POS_EMBED", metavar="FILE",
                 help="Local position table (dino_small_pos.pt or dino_large.pt) for --checkpoint."),
]  # fmt: skip
DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto, cpu or cuda[:N].")]
#: ``--precision`` values, as the model's precision module names them
Precision = Enum("Precision", {r: r for r in REQUESTS}, type=str)  # type: ignore[misc]
_DEFAULT_PRECISION = Precision(DEFAULT_PRECISION)
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", envvar="CHARM_PRECISION",
                 help="Network number format: auto = bf16 where the CPU/GPU has it (scores within ~1% of "
                      "fp32's spread, several times faster), else fp32; --exact means fp32."),
]  # fmt: skip
ExactOpt = Annotated[
    bool,
    typer.Option("--exact", help="Official preprocessing exactly: no EXIF rotation, no downscale."),
]
MaxSideOpt = Annotated[
    int,
    typer.Option("--max-side", min=0, metavar="PX", help="Cap the long side before scoring (0 = native resolution)."),
]
MaxPixelsOpt = Annotated[
    int,
    typer.Option("--max-pixels", min=0, metavar="N", help="Refuse larger images before decoding (0 = no limit)."),
]


@dataclass(frozen=True)
class ModelArgs:
    """Which model(s) to score with and where its files come from: the model options, once.

    A command takes ``model: ModelArgs`` and :func:`bundled` turns every field into an option;
    a new option is one more field here.
    """

    model: ModelsOpt = None
    checkpoint: CheckpointOpt = None
    arch_config: ArchConfigOpt = None
    pos_embed: PosEmbedOpt = None
    device: DeviceOpt = "auto"
    precision: PrecisionOpt = _DEFAULT_PRECISION


@dataclass(frozen=True)
class DecodeArgs:
    """How a photo is decoded before scoring: the decode options, once (see :class:`ModelArgs`)."""

    exact: ExactOpt = False
    max_side: MaxSideOpt = DEFAULT_MAX_SIDE
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS


HideFlaggedOpt = Annotated[
    bool, typer.Option("--hide-flagged", help="Leave out photos with any technical flag (see `charm show`).")
]
HideOpt = Annotated[
    str | None,
    typer.Option("--hide", metavar="FLAG,...", help=f"Leave out photos with these flags ({', '.join(FLAG_NAMES)})."),
]
FlagLimitsOpt = Annotated[
    str | None,
    typer.Option("--flag-limits", metavar="NAME=VALUE,...",
                 help="Change flag thresholds, e.g. soft_width=1.5 (docs/flags.md lists them)."),
]  # fmt: skip


@dataclass(frozen=True)
class FlagArgs:
    """Which technical flags hide a photo and the limits that raise them (see :mod:`charmcli.flags`)."""

    hide_flagged: HideFlaggedOpt = False
    hide: HideOpt = None
    flag_limits: FlagLimitsOpt = None

    def limits(self) -> Limits:
        """The limits asked for; a usage error (one line, exit 2) when the text is wrong."""
        try:
            return parse_limits(self.flag_limits or "")
        except ValueError as exc:
            fail(f"--flag-limits: {exc}")

    def hidden(self) -> frozenset[str]:
        """Flag names whose photos are left out (every flag with --hide-flagged)."""
        if self.hide_flagged:
            return frozenset(FLAG_NAMES)
        try:
            return frozenset(parse_names(self.hide or ""))
        except ValueError as exc:
            fail(f"--hide: {exc}")


_BUNDLES = (ModelArgs, DecodeArgs, FlagArgs)


def bundled(command: Callable[..., Any]) -> Callable[..., Any]:
    """Let a Typer command take option bundles (:class:`ModelArgs`, :class:`DecodeArgs`).

    Typer sees each field of a bundle as one option, in the place the bundle's parameter holds
    in the command's signature; the command receives the bundle built from them.
    """
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    bundles: dict[str, type] = {}
    for param in signature.parameters.values():
        if param.annotation not in _BUNDLES:
            params.append(param)
            continue
        bundles[param.name] = param.annotation
        hints = get_type_hints(param.annotation, include_extras=True)
        params += [
            inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=hints[f.name], default=f.default)
            for f in fields(param.annotation)
        ]
    taken = [p.name for p in params]
    if len(set(taken)) != len(taken):
        raise TypeError(f"{command.__name__}: a parameter shadows a bundled option ({', '.join(taken)})")

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for name, bundle in bundles.items():
            kwargs[name] = bundle(**{f.name: kwargs.pop(f.name) for f in fields(bundle)})
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


RankModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="NAME", help="Use this model's scores (default: the most used)."),
]
# A learned taste (`charm learn`): Typer options cannot take an optional value, so the name is apart.
TasteOpt = Annotated[bool, typer.Option("--taste", help="Rank by your learned taste (`charm learn`), not the score.")]
TasteNameOpt = Annotated[str, typer.Option("--name", metavar="NAME", help="Which learned taste --taste uses.")]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, metavar="N", help="Decode threads (default: up to 4).")
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", min=1, metavar="N",
                 help="Images per network call (default: 1 on CPU; on CUDA, from free memory, up to 128)."),
]  # fmt: skip
PathsArg = Annotated[
    list[Path] | None, typer.Argument(metavar="[PATH...]", help="Only photos under these files/folders.")
]


class Chain(str, Enum):
    """How frames chain into a burst (``--chain``): with the previous frame or the group's best."""

    previous = "previous"
    best = "best"


# Grouping options shared by `top --best-of-group` and the cull commands. `--link` means one thing
# only, hard links (`top --export --link`); how frames chain is `--chain`.
GapOpt = Annotated[float, typer.Option("--gap", min=0, metavar="SECONDS", help="Bursts: max seconds between consecutive frames.")]
SimilarityOpt = Annotated[
    float,
    typer.Option("--similarity", min=-1, max=1,
                 help="Bursts: min cosine similarity of Charm embeddings (see `charm groups --calibrate`)."),
]  # fmt: skip
ChainOpt = Annotated[
    Chain,
    typer.Option("--chain", help="Bursts: compare a frame with the previous frame or with the group's best so far."),
]


# -- checks that must run before torch is imported ---------------------------------------------

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device_problem(device: str) -> str | None:
    """Why ``--device`` cannot work here, if that is knowable without importing torch."""
    if not _DEVICE_RE.match(device):
        return f"invalid --device {device!r}; use auto, cpu or cuda[:N]"
    if device.startswith("cuda"):
        if sys.platform == "darwin":
            return "--device cuda: macOS has no CUDA; use --device mps or cpu"
        if sys.platform.startswith("linux") and not gpu_possible():
            return f"--device {device}: this machine has no GPU driver (no CUDA device); use --device cpu"
    if device == "mps" and sys.platform != "darwin":
        return "--device mps needs a Mac with Apple silicon; use --device cpu"
    return None


def model_problem(model: str | None) -> str | None:
    """Why ``--model`` names no published Charm model (``None`` if it does)."""
    if model is None:
        return None
    from charmcli.model.registry import MODEL_NAMES  # torch-free

    if model.lower() not in MODEL_NAMES:
        return f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)} (see `charm models`)"
    return None


def score_options(
    model: ModelArgs,
    decode: DecodeArgs,
    *,
    rescore: bool = False,
    retry_failed: bool = False,
    workers: int | None = None,
    batch_size: int | None = None,
) -> ScoreOptions:
    """Validate the model and decode options (exit 2 with one line) and bundle them for the pipeline.

    Every check that needs no model runs here, so a mistake answers before torch is imported:
    a checkpoint or position table that cannot be one, a checkpoint given as the position table
    (or the other way round), a checkpoint without its position table when the hub cache has
    none either."""
    from charmcli.model.files import weights_format  # torch-free

    names = [m.lower() for m in model.model or []]
    first = names[0] if names else None
    checkpoint, pos_embed, arch_config = model.checkpoint, model.pos_embed, model.arch_config
    problem = device_problem(model.device) or next(filter(None, map(model_problem, names)), None)
    if problem:
        fail(problem)
    if arch_config is not None:
        from charmcli.model.registry import get_spec  # torch-free

        if not any(get_spec(n).takes_arch_config for n in names):
            fail("--arch-config is for EAT models (--model eat-ava or eat-tad66k)")
        if not arch_config.is_file():
            fail(f"--arch-config {display_path(arch_config)}: no such file")
    precision = str(getattr(model.precision, "value", model.precision))
    if decode.exact and precision == "bf16":
        fail("--exact means the official outputs, in fp32: drop --precision bf16 (or CHARM_PRECISION)")
    if pos_embed is not None and checkpoint is None:
        fail("--pos-embed needs --checkpoint (hub models bring their own position table; CHARM_POS_EMBED too)")
    for label, path in (("--checkpoint", checkpoint), ("--pos-embed", pos_embed)):
        if path is None:
            continue
        if not path.is_file():
            fail(f"{label} {display_path(path)}: no such file")
        if weights_format(path) is None:
            fail(f"{label} {display_path(path)}: not a PyTorch (.pth) or safetensors file")
    options = ScoreOptions(
        model=(first or DEFAULT_MODEL).lower(),
        model_given=first is not None,
        checkpoint=checkpoint,
        pos_embed=pos_embed,
        device=model.device,
        precision=precision,
        exact=decode.exact,
        max_side=decode.max_side,
        max_pixels=decode.max_pixels,
        rescore=rescore,
        retry_failed=retry_failed,
        batch_size=batch_size,
        models=names,
        arch_config=arch_config,
    )
    if workers is not None:
        options.workers = workers
    if len(names) > 1:
        from charmcli.pipeline import per_model_options
        from charmcli.work import FatalError

        try:
            per_model_options(options)
        except FatalError as exc:
            fail(str(exc))
    _check_weights(names, checkpoint, pos_embed)
    return options


def _check_weights(names: list[str], checkpoint: Path | None, pos_embed: Path | None) -> None:
    """The ``--checkpoint``/``--pos-embed`` mistakes that are knowable without loading a model."""
    from charmcli.model.files import weights_content  # torch-free
    from charmcli.model.registry import get_spec, position_table_problem

    if checkpoint is not None and weights_content(checkpoint) == "tensor":
        fail(f"--checkpoint {display_path(checkpoint)} holds one tensor, like a position table, not a model; "
             "give the model's .pth as --checkpoint and the table as --pos-embed")  # fmt: skip
    if pos_embed is not None and weights_content(pos_embed) == "mapping":
        fail(f"--pos-embed {display_path(pos_embed)} holds a model checkpoint, not a position table "
             "(dino_small_pos.pt or dino_large.pt)")  # fmt: skip
    if checkpoint is not None and pos_embed is None and not any(get_spec(n).needs_local_file for n in names):
        problem = position_table_problem(names[0] if names else None)
        if problem:
            fail(problem)


def loading_status(what: str) -> contextlib.AbstractContextManager:
    """A spinner on stderr while the model loads (a terminal only: logs stay clean)."""
    console = err()
    return console.status(f"loading {what}…") if console.is_terminal else contextlib.nullcontext()


def check_date_option(label: str, value: str | None) -> None:
    from charmcli.store import check_date

    if value is not None:
        try:
            check_date(value)
        except ValueError as exc:
            fail(f"{label}: {exc}")


# -- tables for 80 columns ----------------------------------------------------------------------


@dataclass
class Column:
    """One column of :func:`print_table`.

    ``drop``: 0 = always shown; columns with higher values go first when the terminal is narrow.
    ``path``: the column holds raw paths (shortened to fit, then escaped); at most one per table.
    ``wrap``: free text that may wrap (an error message); it counts at most ``wrap`` cells wide.
    ``short``: when narrow, cells are cut to this many cells (a date without its time) before
    any column is dropped; with ``ellipsis``, a cut cell ends in ``…`` (a camera's name).
    """

    header: str
    justify: str = "left"
    drop: int = 0
    path: bool = False
    wrap: int = 0
    short: int = 0
    ellipsis: bool = False


MIN_PATH = 24  #: a path column narrower than this drops optional columns first


def fit_path(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` cells: the file name whole, leading folders replaced by ``…``.

    A name that alone is too long keeps its start and its end (``IMG_2024…0317_0001.jpg``): names
    of one series differ at the end as often as at the start.
    """
    if cell_len(text) <= limit:
        return text
    head, _sep, name = text.rpartition(os.sep)
    if cell_len(name) + 2 > limit:
        stem, ext = os.path.splitext(name)
        keep = max(2, limit - cell_len(ext) - 1)
        front = (keep + 1) // 2
        return stem[:front] + "…" + stem[len(stem) - (keep - front):] + ext
    shown = name
    for part in reversed(head.split(os.sep)):
        candidate = part + os.sep + shown
        if cell_len(candidate) + 2 > limit:
            break
        shown = candidate
    return "…" + os.sep + shown


def common_folder(paths: Sequence[str]) -> str | None:
    """The deepest folder holding every path (``None`` for one file, none, or only ``/``)."""
    if len(paths) < 2:
        return None
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # mixed drives or relative/absolute
        return None
    return folder if folder and folder != os.path.dirname(folder) else None


def relative_to(path: str, folder: str | None) -> str:
    return os.path.relpath(path, folder) if folder else path


def new_table(title: str | None = None) -> Table:
    """The house style: a header rule, no frame, one space between columns."""
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        title_style="bold", header_style="bold", padding=(0, 1),
    )  # fmt: skip


def _cell_width(cell: str, column: Column) -> int:
    if column.path:
        return cell_len(display_path(cell))
    width = Text.from_markup(cell).cell_len
    return min(width, column.wrap) if column.wrap else width


def table_width(console: Console) -> int | None:
    """The width a table is fitted to: the terminal's, or ``COLUMNS``; ``None`` (no limit) when
    the output goes to a pipe or a file and ``COLUMNS`` is not set: nothing is left out there."""
    return console.width if console.is_terminal or os.environ.get("COLUMNS", "").isdigit() else None


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str] | None],
    *,
    title: str | None = None,
    min_path: int | None = None,
) -> None:
    """Print rows (``None`` = a section break) fitted to the console's width; see :class:`Column`.

    Optional columns give way so that every file name stays whole (``min_path=None``), or until
    the path column is ``min_path`` cells wide, where the other columns matter more (names then
    keep their start and end). What does not fit is said in one line on stderr: a column left
    out, a column cut short.
    """
    active = list(range(len(columns)))
    natural = [
        max([cell_len(c.header)] + [_cell_width(r[i], c) for r in rows if r is not None]) for i, c in enumerate(columns)
    ]
    full = list(natural)
    path_col = next((i for i, c in enumerate(columns) if c.path), None)
    limited = table_width(console)
    width = console.width

    def budget() -> int:
        fixed = sum(natural[i] for i in active if i != path_col)
        return width - fixed - 3 * (len(active) - 1)  # a space and two paddings between

    names = [] if path_col is None else [cell_len(os.path.basename(display_path(r[path_col]))) for r in rows if r]
    floor = min_path if min_path is not None else max([MIN_PATH] + [n + 2 for n in names])
    cut: dict[int, int] = {}
    while path_col is not None and budget() < min(natural[path_col], floor):
        shorter = [i for i in active if columns[i].short and natural[i] > columns[i].short]
        if shorter:
            i = shorter[0]
            cut[i] = natural[i] = max(columns[i].short, cell_len(columns[i].header))
            continue
        optional = [i for i in active if columns[i].drop]
        if not optional:
            break
        active.remove(max(optional, key=lambda i: columns[i].drop))
    for i in list(cut):  # a column left out may have made room for a cut one, the path losing nothing
        natural[i] = full[i]
        if path_col is not None and budget() < natural[path_col]:
            natural[i] = cut[i]
        else:
            del cut[i]
    hidden = [f"{columns[i].header} left out" for i in range(len(columns)) if i not in active and columns[i].header]
    hidden += [f"{columns[i].header} cut short" for i in cut if i in active]
    if path_col is not None:  # free text gives way (down to 16 cells) before a file name is cut
        need = min(natural[path_col], max([MIN_PATH] + [n + 2 for n in names]))
        for i in active:
            if columns[i].wrap and budget() < need:
                natural[i] = max(min(16, natural[i]), natural[i] - (need - budget()))
    limit = max(12, budget()) if path_col is not None else 0
    for line in (title or "").splitlines():
        console.print(Text.from_markup(line), no_wrap=True, overflow="ellipsis")
    table = new_table()
    for i in active:
        c = columns[i]
        table.add_column(
            c.header, justify=c.justify, no_wrap=not c.wrap, overflow="fold" if c.wrap else "ellipsis",  # type: ignore[arg-type]
            min_width=min(natural[i], limit) if c.path else None,
        )  # fmt: skip
    for r in rows:
        if r is None:
            table.add_section()
            continue
        cells = []
        for i in active:
            cell = r[i]
            if columns[i].path:
                cell = escape(fit_path(display_path(cell), limit))
            elif i in cut:
                text = Text.from_markup(cell)
                if columns[i].ellipsis and text.cell_len > cut[i]:
                    text = text[: cut[i] - 1] + "…"
                cell = text[: cut[i]].markup
            cells.append(cell)
        table.add_row(*cells)
    console.print(table)
    if hidden and limited:
        err().print(f"[dim]({', '.join(hidden)} at {width} columns: a wider terminal or --json shows all)[/]")



def folder_title(base: str, folder: str | None, width: int) -> str:
    """``base`` plus `` · in FOLDER/`` (shortened to fit one line) when rows share a folder."""
    if not folder:
        return escape(base)
    shown = display_path(folder) + os.sep
    room = width - cell_len(base) - 6
    if room >= min(cell_len(shown), 24):
        return f"{escape(base)} · in {escape(fit_path(shown, room))}"
    return f"{escape(base)}\nin {escape(fit_path(shown, width - 3))}"  # a line of its own
