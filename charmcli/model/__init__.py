"""The Charm model: tokenizer, network and safe checkpoint loading.

Nothing here touches photo folders, databases or the CLI: it turns decoded RGB images into
scores. Entry point: :class:`Scorer`.
"""

from charmcli.model.checkpoint import CheckpointError, UnsafeCheckpointError
from charmcli.model.registry import DEFAULT_MODEL, MODEL_NAMES, MODELS, ModelSpec, ModelUnavailableError
from charmcli.model.scorer import Scorer, ScoreResult
from charmcli.model.tokenizer import CharmTokenizer, PositionTable, Tokenized

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "MODEL_NAMES",
    "CharmTokenizer",
    "CheckpointError",
    "ModelSpec",
    "ModelUnavailableError",
    "PositionTable",
    "ScoreResult",
    "Scorer",
    "Tokenized",
    "UnsafeCheckpointError",
]
