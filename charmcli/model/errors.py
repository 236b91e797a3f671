"""Errors of the model side, importable without torch (the CLI reports them as one line)."""


class CheckpointError(Exception):
    """A checkpoint or position-table file that charm cannot use; ``str()`` is one line."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for a callable outside charm's allow-list; nothing was executed."""


class ModelUnavailableError(Exception):
    """The model's files are neither cached nor downloadable; ``str()`` is one actionable line.

    ``str()`` advises the command line (its flags and environment variables); ``python_advice``,
    when set, is the same line for a Python caller (``Scorer.from_files``), which
    :meth:`charmcli.model.base.Scorer.from_pretrained` raises instead.
    """

    def __init__(self, message: str, *, python_advice: str | None = None) -> None:
        super().__init__(message)
        self.python_advice = python_advice


#: Where the EAT authors publish their weights (their README, "How to Run"); issue 13.
EAT_WEIGHTS_URL = "https://drive.google.com/drive/folders/1UpLYGLU5omztVsIWkRPFTVKAOVe_4p3K"


def eat_weights_message(model: str, filename: str, folder: object, *, python: bool = False) -> str:
    """One line for EAT weights that are not here: where the authors publish them, which file
    (``python``: advice for the Python API instead of the command line)."""
    use = f"call Scorer.from_files(FILE, name={model!r})" if python else "pass --checkpoint FILE"
    return (
        f"model {model!r} needs the authors' checkpoint {filename}, which charm cannot download: the EAT "
        f"authors publish their weights on Google Drive ({EAT_WEIGHTS_URL}). Download it, then "
        f"{use} or put it in {folder}"
    )


def unavailable_eat(model: str, filename: str, folder: object) -> ModelUnavailableError:
    """The error for EAT weights that are not here, with advice for the CLI and for Python."""
    return ModelUnavailableError(
        eat_weights_message(model, filename, folder),
        python_advice=eat_weights_message(model, filename, folder, python=True),
    )
