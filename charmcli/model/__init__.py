"""The Charm model: tokenizer, network and safe checkpoint loading.

Nothing here touches photo folders, databases or the CLI: it turns decoded RGB images into
scores. Entry point: :class:`Scorer`.

The registry and the errors import without torch, so a CLI run that finds everything cached
never pays for importing torch; the rest loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from charmcli.model.errors import CheckpointError, ModelUnavailableError, UnsafeCheckpointError
from charmcli.model.registry import DEFAULT_MODEL, MODEL_NAMES, MODELS, ModelSpec, get_spec

if TYPE_CHECKING:
    from charmcli.model.charm.scorer import Scorer, ScoreResult
    from charmcli.model.charm.tokenizer import CharmTokenizer, PositionTable, Tokenized
    from charmcli.model.eat.scorer import EatScorer

_LAZY = {
    "Scorer": "charmcli.model.charm.scorer",
    "ScoreResult": "charmcli.model.charm.scorer",
    "CharmTokenizer": "charmcli.model.charm.tokenizer",
    "PositionTable": "charmcli.model.charm.tokenizer",
    "Tokenized": "charmcli.model.charm.tokenizer",
    "EatScorer": "charmcli.model.eat.scorer",  # issue 13
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "MODEL_NAMES",
    "CharmTokenizer",
    "CheckpointError",
    "EatScorer",
    "ModelSpec",
    "ModelUnavailableError",
    "PositionTable",
    "ScoreResult",
    "Scorer",
    "Tokenized",
    "UnsafeCheckpointError",
    "get_spec",
]
