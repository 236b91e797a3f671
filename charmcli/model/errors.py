"""Errors of the model side, importable without torch (the CLI reports them as one line)."""


class CheckpointError(Exception):
    """A checkpoint or position-table file that charm cannot use; ``str()`` is one line."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for a callable outside charm's allow-list; nothing was executed."""


class ModelUnavailableError(Exception):
    """The model's files are neither cached nor downloadable; ``str()`` is one actionable line."""


#: Where the EAT authors publish their weights (their README, "How to Run"); issue 13.
EAT_WEIGHTS_URL = "https://drive.google.com/drive/folders/1UpLYGLU5omztVsIWkRPFTVKAOVe_4p3K"


def eat_weights_message(model: str, filename: str, folder: object) -> str:
    """One line for EAT weights that are not here: where the authors publish them, which file."""
    return (
        f"model {model!r} needs the authors' checkpoint {filename}, which charm cannot download: the EAT "
        f"authors publish their weights on Google Drive ({EAT_WEIGHTS_URL}). Download it, then pass "
        f"--checkpoint FILE or put it in {folder}"
    )
