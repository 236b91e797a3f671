"""Errors of the model side, importable without torch (the CLI reports them as one line)."""


class CheckpointError(Exception):
    """A checkpoint or position-table file that charm cannot use; ``str()`` is one line."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for a callable outside charm's allow-list; nothing was executed."""


class ModelUnavailableError(Exception):
    """The model's files are neither cached nor downloadable; ``str()`` is one actionable line."""
