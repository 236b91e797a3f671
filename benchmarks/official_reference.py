"""Driver for the *official* Charm inference pipeline, used as a reference.

This module runs only inside the separate benchmark environment described in
``benchmarks/README.md`` (PyPI ``charm-tokenizer==1.0.17`` with ``transformers==4.36.0``).
It imports the official package (module ``Charm_tokenizer``); nothing of it is vendored here.

The official code fetches two kinds of files from the Hugging Face hub repository
``FatemehBehrad/Charm``: the position-embedding table (``dino_small_pos.pt`` or
``dino_large.pt``, in ``Charm_tokenizer.ImageProcessor``) and the checkpoint
(``aadb_charm.pth`` ... ``Ava_large_charm.pth``, in ``Charm_tokenizer.Backbone``). Both
modules call ``hf_hub_download`` through a name imported at module level; :func:`load_official`
replaces that name with a resolver that serves local files, so no network is needed and the
rest of the official code path runs unchanged.

Public functions:

* :func:`load_official` -- build the official tokenizer and ``backbone`` for a training set,
  with a local checkpoint and position-embedding table.
* :func:`official_tokenize` -- the official ``Charm_Tokenizer.preprocess`` (tokens,
  position embeddings, scale mask), with stage timings.
* :func:`official_network` -- the official model on one tokenized image.
* :func:`official_score` -- tokenize and run the network; returns the model output, the
  unrounded score and the score the official ``predict`` returns (rounded to 3 decimals),
  with stage timings (``decode``, ``tokenize``, ``network``; seconds).

Example (inside the benchmark environment)::

    from official_reference import load_official, official_score
    pipe = load_official("aadb_full12.pth", "aadb", "dino_small_pos.pt")
    result = official_score("photo.jpg", pipe)
    print(result["score"], result["timings"])
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

try:
    import Charm_tokenizer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "official_reference.py needs the official package: run it with the benchmark "
        "environment's python (see benchmarks/README.md: pip install charm-tokenizer==1.0.17 ...)"
    ) from exc

# The pickled checkpoints reference a top-level module named ``model`` (the package's
# model.py); Backbone.py puts the package folder on sys.path for that reason. Do the same
# before anything is unpickled.
_PKG_DIR = os.path.dirname(os.path.abspath(Charm_tokenizer.__file__))
if _PKG_DIR not in sys.path:
    sys.path.insert(0, _PKG_DIR)

from Charm_tokenizer import Backbone as _official_backbone  # noqa: E402
from Charm_tokenizer import ImageProcessor as _official_ip  # noqa: E402

#: training set -> ViT backbone of the published checkpoint (only AVA uses DINOv2-large).
BACKBONES = {
    "aadb": "facebook/dinov2-small",
    "tad66k": "facebook/dinov2-small",
    "baid": "facebook/dinov2-small",
    "spaq": "facebook/dinov2-small",
    "koniq10k": "facebook/dinov2-small",
    "para": "facebook/dinov2-small",
    "ava": "facebook/dinov2-large",
}

#: hub file names the official code asks for.
POS_EMBED_HUB_FILES = {"facebook/dinov2-small": "dino_small_pos.pt", "facebook/dinov2-large": "dino_large.pt"}
CHECKPOINT_HUB_FILES = {
    "aadb": "aadb_charm.pth",
    "ava": "Ava_large_charm.pth",
    "para": "para_charm.pth",
    "baid": "baid_charm.pth",
    "koniq10k": "koniq10k_charm.pth",
    "spaq": "spaq_charm.pth",
    "tad66k": "tad66k_charm.pth",
}

_LOCAL_HUB_FILES: dict[str, str] = {}


def _local_hf_hub_download(repo_id: str, filename: str, *args: Any, **kwargs: Any) -> str:
    """Stand-in for ``huggingface_hub.hf_hub_download`` that serves registered local files."""
    try:
        return _LOCAL_HUB_FILES[filename]
    except KeyError:
        raise FileNotFoundError(
            f"official pipeline asked for {repo_id}:{filename}, which has no local copy registered "
            f"(registered: {sorted(_LOCAL_HUB_FILES)})"
        ) from None


def _install_local_hub(files: dict[str, str]) -> None:
    _LOCAL_HUB_FILES.update({name: str(Path(path).resolve()) for name, path in files.items()})
    _official_ip.hf_hub_download = _local_hf_hub_download
    _official_backbone.hf_hub_download = _local_hf_hub_download


@dataclass
class OfficialPipeline:
    """The official tokenizer and ``backbone`` wrapper for one training set."""

    ds: str
    backbone_name: str
    tokenizer: Any  # Charm_tokenizer.ImageProcessor.Charm_Tokenizer
    backbone: Any  # Charm_tokenizer.Backbone.backbone
    device: str
    checkpoint: str
    pos_embed_file: str
    load_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        return self.backbone.model


def load_official(
    checkpoint: str | os.PathLike,
    ds: str,
    pos_embed_file: str | os.PathLike,
    *,
    backbone: str | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
) -> OfficialPipeline:
    """Build the official pipeline for training set ``ds`` from local files.

    ``checkpoint`` is an official-format checkpoint (``torch.save({'model_state_dict': <model.Model>,
    'epoch': ...})``), loaded by the official ``Backbone.backbone`` class exactly as it loads the
    published ones. ``pos_embed_file`` is the position-embedding table the official tokenizer loads
    (``dino_small_pos.pt``, or ``dino_large.pt`` for ``ava``). ``backbone`` defaults to the one of the
    published checkpoint for ``ds`` (DINOv2-large for ``ava``, DINOv2-small otherwise).
    """
    if ds not in CHECKPOINT_HUB_FILES:
        raise ValueError(f"unknown training set {ds!r}; expected one of {sorted(CHECKPOINT_HUB_FILES)}")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    backbone = backbone or BACKBONES[ds]
    _install_local_hub(
        {CHECKPOINT_HUB_FILES[ds]: str(checkpoint), POS_EMBED_HUB_FILES[backbone]: str(pos_embed_file)}
    )
    t0 = time.perf_counter()
    tokenizer = _official_ip.Charm_Tokenizer(
        patch_selection="frequency", training_dataset=ds, backbone=backbone, without_pad_or_dropping=True
    )
    with contextlib.redirect_stdout(io.StringIO()):
        bb = _official_backbone.backbone(training_dataset=ds, device=device)
    bb.model = bb.model.to(device)
    bb.model.eval()
    load_seconds = time.perf_counter() - t0
    return OfficialPipeline(
        ds=ds,
        backbone_name=backbone,
        tokenizer=tokenizer,
        backbone=bb,
        device=device,
        checkpoint=str(checkpoint),
        pos_embed_file=str(pos_embed_file),
        load_seconds=load_seconds,
        info={"token_budget": tokenizer.hidden_size, "num_classes": _num_classes(bb.model)},
    )


def _num_classes(model: torch.nn.Module) -> int:
    """Head size (checkpoints built outside the official code may lack the ``num_classes`` attribute)."""
    n = getattr(model, "num_classes", None)
    return int(n) if n is not None else int(model.mlp_head.linear.out_features)


class _PreDecodedImageModule:
    """Proxy for the ``PIL.Image`` module as seen by the official tokenizer: ``open`` returns an
    already decoded image, so decoding can be timed apart from tokenization while the official
    ``preprocess`` (``.convert('RGB')``, para/spaq resize, ``ToTensor``, patching) runs unchanged."""

    def __init__(self, image: Image.Image):
        self._image = image

    def open(self, *_args: Any, **_kwargs: Any) -> Image.Image:
        return self._image

    def __getattr__(self, name: str) -> Any:
        return getattr(Image, name)


def decode(path: str | os.PathLike) -> Image.Image:
    """Decode as the official ``preprocess`` does: ``Image.open(path).convert('RGB')``."""
    return Image.open(path).convert("RGB")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def official_tokenize(
    image: str | os.PathLike | Image.Image,
    pipe: OfficialPipeline,
    *,
    fresh_pos_cache: bool = False,
) -> dict:
    """Run the official ``Charm_Tokenizer.preprocess`` on ``image``.

    ``image`` is a path (decoded here with :func:`decode`, timed as ``decode``) or an image
    already decoded that way. Returns ``tokens`` (N, 3, 14, 14), ``pos_embed`` (N, D), ``mask``
    (N,) as torch tensors, plus ``image_size`` ([W, H] of the decoded image), ``input_size``
    ([W, H] of the image the tokenizer patched: smaller for para/spaq when the longer side exceeds
    1024) and ``timings``.
    The official tokenizer caches interpolated position tables per grid size across calls;
    ``fresh_pos_cache=True`` empties that cache first (cold-start timing).
    """
    timings: dict[str, float] = {}
    if isinstance(image, Image.Image):
        img = image
        timings["decode"] = 0.0
    else:
        t0 = time.perf_counter()
        img = decode(image)
        img.load()
        timings["decode"] = time.perf_counter() - t0
    if fresh_pos_cache:
        pipe.tokenizer.pos_embeds = {}
    tokenizer = pipe.tokenizer
    seen: dict[str, list[int]] = {}
    official_prepare = type(tokenizer).preprare_patches  # (sic) the official method name

    def record_input(original_image: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen["input_size"] = [int(original_image.shape[2]), int(original_image.shape[1])]
        return official_prepare(tokenizer, original_image, *args, **kwargs)

    saved = _official_ip.Image
    _official_ip.Image = _PreDecodedImageModule(img)
    tokenizer.preprare_patches = record_input
    try:
        t0 = time.perf_counter()
        tokens, pos_embed, mask = tokenizer.preprocess("<pre-decoded>")
        timings["tokenize"] = time.perf_counter() - t0
    finally:
        _official_ip.Image = saved
        del tokenizer.preprare_patches
    return {
        "tokens": tokens,
        "pos_embed": pos_embed,
        "mask": mask,
        "image_size": [img.size[0], img.size[1]],
        "input_size": seen["input_size"],
        "timings": timings,
    }


def _score_from_output(pipe: OfficialPipeline, prediction: torch.Tensor) -> torch.Tensor:
    # Same branch as the official ``backbone.predict``: expected value for the softmax heads
    # (official ``mean_score``), the sigmoid output otherwise.
    if pipe.ds in ("ava", "para"):
        return pipe.backbone.mean_score(prediction)
    return prediction


def official_network(
    tokens: torch.Tensor,
    pos_embed: torch.Tensor,
    mask: torch.Tensor,
    pipe: OfficialPipeline,
    *,
    no_grad: bool = True,
) -> dict:
    """Run the official model on one tokenized image (batch of one), as ``backbone.predict`` does.

    Returns ``prediction`` (torch, (1, C), after Sigmoid/Softmax), ``score`` (unrounded float),
    ``score_rounded`` and ``seconds``. The official ``predict`` runs with autograd enabled;
    ``no_grad=False`` does the same (slower), the default uses ``torch.no_grad()`` (same numbers).
    """
    device = pipe.device
    ctx = torch.no_grad() if no_grad else contextlib.nullcontext()
    _sync(device)
    t0 = time.perf_counter()
    with ctx:
        # The model writes into the mask it is given (padding marks), hence the clone.
        prediction = pipe.model(
            tokens.unsqueeze(0).to(device),
            pos_embed.unsqueeze(0).to(device),
            mask.clone().unsqueeze(0).to(device),
        )
        score_t = _score_from_output(pipe, prediction)
    _sync(device)
    seconds = time.perf_counter() - t0
    score = float(score_t[0])
    return {"prediction": prediction, "score": score, "score_rounded": round(score, 3), "seconds": seconds}


def official_score(
    image: str | os.PathLike | Image.Image,
    pipe: OfficialPipeline,
    *,
    fresh_pos_cache: bool = False,
    no_grad: bool = True,
    check_predict: bool = False,
    return_tokens: bool = False,
) -> dict:
    """Tokenize ``image`` and score it with the official model.

    Returns ``output`` (model output after Sigmoid/Softmax, numpy float32), ``score`` (unrounded,
    float), ``score_rounded`` (``round(score, 3)``, what the official ``predict`` returns),
    ``n_tokens`` (sequence length including the CLS slot), ``input_size`` and ``timings``
    (``decode``, ``tokenize``, ``network``, ``total`` in seconds). See :func:`official_network`
    for ``no_grad``. ``check_predict=True`` also calls the official ``predict`` (stdout silenced)
    and raises if its value differs from ``score_rounded``.
    """
    tok = official_tokenize(image, pipe, fresh_pos_cache=fresh_pos_cache)
    tokens, pos_embed, mask = tok["tokens"], tok["pos_embed"], tok["mask"]
    net = official_network(tokens, pos_embed, mask, pipe, no_grad=no_grad)
    timings = dict(tok["timings"])
    timings["network"] = net["seconds"]
    timings["total"] = timings["decode"] + timings["tokenize"] + timings["network"]
    result = {
        "output": net["prediction"][0].detach().cpu().numpy().astype(np.float32),
        "score": net["score"],
        "score_rounded": net["score_rounded"],
        "n_tokens": int(tokens.shape[0]),
        "input_size": tok["input_size"],
        "timings": timings,
    }
    if check_predict:
        with contextlib.redirect_stdout(io.StringIO()):
            official = pipe.backbone.predict(tokens, pos_embed, mask.clone())
        if official != result["score_rounded"]:
            raise AssertionError(
                f"official predict gave {official}, driver computed {result['score_rounded']}"
            )
        result["official_predict"] = official
    if return_tokens:
        result.update(tokens=tokens, pos_embed=pos_embed, mask=mask)
    return result


# -- JSON worker (driven by benchmarks/bench.py from charm's own environment) -----------------------


def _worker() -> None:
    """One JSON request per stdin line, one JSON reply per stdout line.

    Requests: ``{"cmd": "load", "checkpoint", "ds", "pos_embed", "num_threads"}``;
    ``{"cmd": "tokenize", "image", "fresh_pos_cache", "save"}`` (``save``: a ``.pt`` path that
    receives tokens/pos_embed/mask); ``{"cmd": "score", "image", "no_grad"}``; ``{"cmd": "rss"}``;
    ``{"cmd": "quit"}``. Replies carry ``ok`` and, on failure, ``error``. Anything the official
    code prints goes to stderr, so stdout stays a clean channel.
    """
    import json
    import platform
    import resource
    import traceback

    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    pipe: OfficialPipeline | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "quit":
                break
            if cmd == "load":
                pipe = load_official(
                    req["checkpoint"], req["ds"], req["pos_embed"], num_threads=req.get("num_threads")
                )
                import transformers

                reply = {
                    "load_seconds": pipe.load_seconds,
                    "info": pipe.info,
                    "versions": {
                        "python": platform.python_version(),
                        "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "threads": torch.get_num_threads(),
                    },
                }
            elif cmd == "tokenize":
                assert pipe is not None, "load first"
                tok = official_tokenize(req["image"], pipe, fresh_pos_cache=req.get("fresh_pos_cache", False))
                if req.get("save"):
                    torch.save({k: tok[k] for k in ("tokens", "pos_embed", "mask")}, req["save"])
                reply = {
                    "timings": tok["timings"],
                    "n_tokens": int(tok["tokens"].shape[0]),
                    "image_size": tok["image_size"],
                    "input_size": tok["input_size"],
                }
            elif cmd == "score":
                assert pipe is not None, "load first"
                r = official_score(req["image"], pipe, no_grad=req.get("no_grad", True))
                reply = {k: r[k] for k in ("score", "score_rounded", "n_tokens", "input_size", "timings")}
                reply["output"] = [float(v) for v in r["output"]]
            elif cmd == "rss":
                reply = {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
            else:
                raise ValueError(f"unknown cmd {cmd!r}")
            reply["ok"] = True
        except Exception as exc:  # report, keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        channel.write(json.dumps(reply) + "\n")
        channel.flush()


if __name__ == "__main__":
    if sys.argv[1:] == ["--json-worker"]:
        _worker()
    else:
        print("usage: python official_reference.py --json-worker  (see benchmarks/bench.py)", file=sys.stderr)
        sys.exit(2)


__all__ = [
    "BACKBONES",
    "CHECKPOINT_HUB_FILES",
    "POS_EMBED_HUB_FILES",
    "OfficialPipeline",
    "decode",
    "load_official",
    "official_network",
    "official_score",
    "official_tokenize",
]
