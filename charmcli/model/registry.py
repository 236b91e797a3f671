"""The published models by name, and where their files come from (torch-free).

Like timm's registry, a name is all a user needs: ``aadb`` (the default, as in the official
package), ``tad66k``, ``para``, ``baid``, ``spaq``, ``koniq10k``, ``ava`` (Charm) and
``eat-ava``, ``eat-tad66k`` (EAT). Each family lists its models, with their scoring rules and
the class that loads them, in its own package (``model/charm/specs.py``, ``model/eat/specs.py``);
this module only gathers the names and never asks which family a model is.

Files come from the Hugging Face hub repo ``FatemehBehrad/Charm`` through ``huggingface_hub``
(so ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured). Offline and not cached,
:class:`ModelUnavailableError` says how to get the files; local files can always be given instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from charmcli.model.charm import specs as charm_specs
from charmcli.model.eat import specs as eat_specs
from charmcli.model.errors import ModelUnavailableError
from charmcli.model.spec import ModelFiles, ModelSpec

__all__ = ["DEFAULT_MODEL", "MODELS", "MODEL_NAMES", "ModelFiles", "ModelSpec", "get_spec"]

HUB_REPO = "FatemehBehrad/Charm"


#: every published model, by name: each family lists its own (a new family adds its list here)
MODELS: dict[str, ModelSpec] = {s.name: s for s in (*charm_specs.SPECS, *eat_specs.SPECS)}
MODEL_NAMES: list[str] = list(MODELS)
DEFAULT_MODEL = "aadb"


def get_spec(name: str) -> ModelSpec:
    """The spec of a model name (case-insensitive); ValueError listing the names otherwise."""
    spec = MODELS.get(name.lower())
    if spec is None:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return spec


def describe_head(num_classes: int, activation: str, args: dict[str, Any] | None, spec: ModelSpec | None,
                  source: str = "checkpoint") -> str:
    """One line for a head: ``1 output, ReLU -> raw output (no factor)``."""
    from charmcli.model.charm.activations import describe

    n = f"{num_classes} output{'s' if num_classes > 1 else ''}"
    rule = spec.score_rule(activation) if spec else "output"
    note = "" if source == "checkpoint" else f" ({source})"
    return f"{n}, {describe(activation, args)}{note} -> {rule}"


def converted_cache_dir() -> Path:
    """Where converted Charm checkpoints are cached (``CHARM_CACHE_DIR`` overrides)."""
    if os.environ.get("CHARM_CACHE_DIR"):
        return Path(os.environ["CHARM_CACHE_DIR"])
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("charm")) / "converted"


def recorded_config(checkpoint_id: str) -> dict[str, Any] | None:
    """The network config charm recorded when it converted checkpoint ``checkpoint_id``.

    Reads only the JSON header of the cached safetensors file (no torch), so `charm models`
    and `charm show` can say which head a file really has once it has been loaded.
    """
    import json

    path = converted_cache_dir() / f"{checkpoint_id}.safetensors"
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < 10_000_000 else {}
        return json.loads(header["__metadata__"]["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def hub_checkpoint_id(name: str) -> str | None:
    """The sha256 of a model's cached hub checkpoint, without hashing it: the hub cache names
    large files' blobs by their sha256."""
    local = cached_file(get_spec(name).filename)
    if local is None:
        return None
    blob = Path(os.path.realpath(local)).name
    return blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else None


def head_of(checkpoint_id: str | None, spec: ModelSpec | None) -> str | None:
    """The head of a converted checkpoint as :func:`describe_head` words it, if known."""
    cfg = recorded_config(checkpoint_id) if checkpoint_id else None
    if not cfg:
        return None
    return describe_head(cfg["num_classes"], cfg["activation"], cfg.get("activation_args"), spec,
                         cfg.get("activation_source", "checkpoint"))  # fmt: skip


def expected_head(name: str) -> dict[str, str]:
    """What `charm models` says of a model's head: read from the file once charm has converted
    the downloaded checkpoint, else what the authors' code and published outputs suggest."""
    spec = get_spec(name)
    cfg = recorded_config(cid) if (cid := hub_checkpoint_id(name)) else None
    from charmcli.model.charm.activations import describe

    if cfg:
        activation, basis = cfg["activation"], "file"
        shown = describe(activation, cfg.get("activation_args"))
    else:
        activation, basis = spec.head, spec.head_basis
        shown = describe(activation)
    return {"activation": shown, "basis": basis, "rule": spec.score_rule(activation)}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (tests change it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_address() -> tuple[str, int]:
    """Host and port a download would connect to first: the HTTPS proxy if one is set."""
    from urllib.parse import urlsplit

    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)  # fmt: skip
    url = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else
                   os.environ.get("HF_ENDPOINT") or "https://huggingface.co")  # fmt: skip
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


_REACHABLE: dict[tuple[str, int], str | None] = {}


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (``None`` if a TCP connection opens), asked once per run.

    huggingface_hub retries a failed request for about half a minute and logs each retry; one
    connection attempt with a short timeout answers the usual offline case in milliseconds
    (no DNS) or at most ``timeout`` seconds (a silent firewall) instead.
    """
    import socket

    address = _hub_address()
    if address not in _REACHABLE:
        try:
            socket.create_connection(address, timeout=timeout).close()
            _REACHABLE[address] = None
        except OSError as exc:
            reason = "no network" if isinstance(exc, socket.gaierror) else (exc.strerror or type(exc).__name__)
            _REACHABLE[address] = f"{address[0]} is unreachable: {reason}"
    return _REACHABLE[address]


def cached_file(filename: str) -> Path | None:
    """The local copy of a hub file, if it is in the cache (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(HUB_REPO, filename, cache_dir=str(hub_cache_dir()))
    return Path(found) if isinstance(found, str) else None


def _download(filename: str) -> Path:
    """Download one hub file, raising ``OSError(reason)`` at once when the hub is out of reach."""
    if _offline():
        raise OSError("offline mode is on (HF_HUB_OFFLINE)")
    if (why := hub_unreachable()) is not None:
        raise OSError(why)
    import logging

    from huggingface_hub import hf_hub_download

    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry lines would bury charm's one-line message
    try:
        return Path(hf_hub_download(HUB_REPO, filename, cache_dir=str(hub_cache_dir())))
    except Exception as exc:  # DNS, HTTP errors, a proxy that refuses, …
        raise OSError(hub_reason(exc)) from None
    finally:
        hub_logger.setLevel(level)


def hub_reason(exc: BaseException, limit: int = 160) -> str:
    """The hub's error as a clause of charm's own sentence (``…, and <reason>; <advice>``).

    Its first sentence only (the rest is advice charm gives better), starting lower-case unless
    it starts with a name (``HTTPError``), cut at a word if it is still long.
    """
    text = " ".join(str(exc).split())
    first = re.split(r"(?<=[.!?]) ", text, maxsplit=1)[0].rstrip(".") or type(exc).__name__
    if len(first) > 1 and first[0].isupper() and first[1].islower():
        first = first[0].lower() + first[1:]
    if len(first) > limit:
        first = first[: limit - 1].rsplit(" ", 1)[0] + "…"
    return first


def _cached_or_download(filename: str) -> Path:
    """A hub file from the cache, else downloaded; ``OSError(reason)`` when neither can be."""
    local = cached_file(filename)
    return local if local is not None else _download(filename)


def fetch(filename: str, model: str, *, downloading: bool = False) -> Path:
    """A hub file's local path: from the cache, else downloaded; one-line error if impossible.

    ``downloading`` is set by ``charm models download``, whose message must not suggest running
    that very command again.
    """
    try:
        return _cached_or_download(filename)
    except OSError as exc:
        where = f"{filename} from {HUB_REPO}, which is not in the hub cache ({hub_cache_dir()}), and {exc}"
        spec = MODELS.get(model)
        if downloading:
            advice = ("connect to the network and run this again, or copy the file from a connected "
                      "machine's hub cache (same HF_HOME)")  # fmt: skip
        else:
            files = f"--checkpoint {spec.filename} --pos-embed {spec.pos_filename}" if spec else "--checkpoint FILE"
            advice = (f"on a connected machine run `charm models download {model}`, or use local files: "
                      f"{files} (or set CHARM_CHECKPOINT and CHARM_POS_EMBED)")  # fmt: skip
        local = f"Scorer.from_files({spec.filename!r}, {spec.pos_filename!r})" if spec else "Scorer.from_files(FILE)"
        python = (f"on a connected machine call Scorer.from_pretrained({model!r}) once, or load local files: "
                  f"{local}")  # fmt: skip
        raise ModelUnavailableError(f"model {model!r} needs {where}; {advice}",
                                    python_advice=f"model {model!r} needs {where}; {python}") from None


def position_table_for(width: int, fallback: str) -> str:
    """The hub file name of the position table that fits a checkpoint of ``width`` channels."""
    return {384: "dino_small_pos.pt", 1024: "dino_large.pt"}.get(width, fallback)


def fetch_position_table(filename: str, model: str) -> Path:
    """The position table for ``--checkpoint`` given without ``--pos-embed``: from the hub cache,
    else downloaded; the error names the file and the two ways to provide it."""
    try:
        return _cached_or_download(filename)
    except OSError as exc:
        raise ModelUnavailableError(
            f"the checkpoint needs the position table {filename}, which is not in the hub cache, and {exc}; "
            f"pass --pos-embed {filename} (or set CHARM_POS_EMBED)"
        ) from None


def position_table_problem(model: str | None) -> str | None:
    """Why ``--checkpoint`` without ``--pos-embed`` will find no position table, asked before any
    model loads (the table is fetched only after the checkpoint, seconds later); ``None`` if one
    is cached or the hub can be asked. ``model``: the named model, whose table it must be."""
    names = [get_spec(model).pos_filename] if model else sorted({s.pos_filename for s in MODELS.values()} - {""})
    if any(cached_file(name) is not None for name in names):
        return None
    why = "offline mode is on (HF_HUB_OFFLINE)" if _offline() else hub_unreachable()
    if why is None:
        return None
    return (
        f"the checkpoint needs a position table ({' or '.join(names)}), which is not in the hub cache, "
        f"and {why}; pass --pos-embed FILE (or set CHARM_POS_EMBED)"
    )


def is_cached(name: str) -> bool:
    """Whether both files of a model are in the local hub cache (EAT: its file in the models folder)."""
    spec = get_spec(name)
    if spec.needs_local_file:
        return local_weights(spec) is not None
    return cached_file(spec.filename) is not None and cached_file(spec.pos_filename) is not None


def models_dir() -> Path:
    """Where user-supplied weights (EAT) are looked up by their published file name (issue 13).

    ``$CHARM_MODELS_DIR``, else ``<user data dir>/charm/models`` beside the database.
    """
    env = os.environ.get("CHARM_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("charm", appauthor=False)) / "models"


def local_weights(spec: ModelSpec) -> Path | None:
    """A user-supplied checkpoint under its published name in :func:`models_dir`, if present."""
    path = models_dir() / spec.filename
    return path if path.is_file() else None


def download(name: str) -> tuple[Path, Path]:
    """Fetch a model's checkpoint and position table into the hub cache (for use offline later)."""
    spec = get_spec(name)
    if spec.needs_local_file:
        from charmcli.model.errors import eat_weights_message

        raise ModelUnavailableError(eat_weights_message(spec.name, spec.filename, models_dir()))
    return fetch(spec.filename, spec.name, downloading=True), fetch(spec.pos_filename, spec.name, downloading=True)
