"""What a new user meets in the first hour: a broken torch install, mistakes with --checkpoint,
an export over a file, the help screens, the model list and its documentation.

The commands whose help is checked are read from the Typer app, so a new command is checked too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

import charmcli
from charmcli.cli import app

from shared_paths import CONFORMANCE

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(charmcli.__file__).resolve().parents[1]  #: the charmcli under test (the child imports it)
WIDTH = 80


def all_commands() -> list[list[str]]:
    """Every command path of the app (``[]`` is ``charm`` itself), read from the Click tree."""
    found: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


# -- a broken torch install -------------------------------------------------------------------


def test_a_mismatched_torchvision_is_one_line_naming_both_packages(tmp_path, library, model_args):
    """A CPU torch beside a CUDA torchvision fails inside ``import torchvision``; simulated by a
    torchvision that raises what the mismatched one raises, first on the path of a child process."""
    fake = tmp_path / "fake" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(SOURCE)])}
    run = subprocess.run(
        [sys.executable, "-c", "from charmcli.cli import main; main()", "score", str(library / "2023"), *model_args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and len(lines) <= 3, run.stderr  # one line, wrapped at 80 at most
    message = " ".join(lines)
    assert message.startswith("charm: error: torch ") and " and torchvision " in message
    assert "operator torchvision::nms does not exist" in message
    assert "pip install --force-reinstall torch torchvision" in message


@pytest.mark.parametrize(
    ("torch_version", "index"),
    [("2.4.0+cpu", "https://download.pytorch.org/whl/cpu"), ("2.4.0+cu121", "https://download.pytorch.org/whl/cu121"),
     ("2.4.0", None)],
)  # fmt: skip
def test_both_packages_come_again_from_the_index_torch_came_from(torch_version, index):
    from charmcli.model.engine import reinstall_command

    command = reinstall_command(torch_version)
    assert command.startswith("pip install --force-reinstall torch torchvision")
    assert (f"--index-url {index}" in command) if index else "--index-url" not in command


# -- checkpoint mistakes answer before a model loads ------------------------------------------


@pytest.fixture
def no_model_loading(monkeypatch):
    """Loading a model fails the test: the answer must come before."""
    from charmcli.pipeline import ModelHandle

    def refuse(self):
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(ModelHandle, "_load", refuse)


def test_the_position_table_given_as_checkpoint_is_told_before_loading(cli, library, no_model_loading):
    table = CONFORMANCE / "dino_small_pos.pt"
    if not table.is_file():
        pytest.skip(f"{CONFORMANCE} is absent")
    result = cli("score", library / "2023", "--checkpoint", table, "--pos-embed", table, "--device", "cpu")
    assert result.exit_code == 2, result.stderr
    assert "--checkpoint" in result.stderr and "position table" in result.stderr


def test_a_checkpoint_given_as_position_table_is_told_before_loading(cli, library, no_model_loading, model_args):
    ckpt = model_args[model_args.index("--checkpoint") + 1]
    result = cli("score", library / "2023", "--checkpoint", ckpt, "--pos-embed", ckpt, "--device", "cpu")
    assert result.exit_code == 2, result.stderr
    assert "--pos-embed" in result.stderr and "not a position table" in result.stderr


def test_a_checkpoint_without_its_table_offline_is_told_before_loading(cli, library, no_model_loading, model_args):
    ckpt = model_args[model_args.index("--checkpoint") + 1]
    result = cli("score", library / "2023", "--checkpoint", ckpt, "--device", "cpu")
    assert result.exit_code == 2, result.stderr
    assert "dino_small_pos.pt" in result.stderr and "--pos-embed" in result.stderr


# -- top --export onto a file -----------------------------------------------------------------


def test_top_export_onto_a_file_fails_before_printing_the_table(cli, library, model_args, tmp_path):
    assert cli("score", library / "2023", *model_args).exit_code == 0
    target = tmp_path / "not-a-folder.txt"
    target.write_text("mine")
    result = cli("top", "5", "--export", target)
    assert result.exit_code == 2
    assert result.stdout == "" and "--export" in result.stderr and "not a folder" in result.stderr
    assert target.read_text() == "mine"


# -- --help -----------------------------------------------------------------------------------

PYTHON_TYPES = re.compile(r"<[a-z][\w\[\], |]*>|\{[^}]*\}|\[\[|list\[")


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: " ".join(c) or "charm")
def test_help_names_values_as_a_command_line_does_at_80_columns(cli, command):
    result = cli(*command, "--help", env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0
    text = result.stdout
    assert not PYTHON_TYPES.findall(text), PYTHON_TYPES.findall(text)
    for line in text.splitlines():
        assert len(line) <= WIDTH, line
        assert line == line.rstrip(), repr(line)


def test_usage_lines_show_arguments_as_written():
    usage = {" ".join(c): cli_usage(c) for c in (["top"], ["score"], ["compare"])}
    assert usage["top"] == "Usage: charm top [OPTIONS] [N] [PATH...]"
    assert usage["score"] == "Usage: charm score [OPTIONS] PATH..."
    assert usage["compare"] == "Usage: charm compare [OPTIONS] A B [C...]"


def cli_usage(command: list[str]) -> str:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    return result.stdout.splitlines()[0]


# -- the models: one truth, the registry ------------------------------------------------------


def _doc_scales(doc: Path) -> dict[str, str]:
    """``name -> score column`` of the model tables in a doc (the first and the last column)."""
    rows = {}
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) > 2:
            rows[re.match(r"`([\w-]+)`", cells[0]).group(1)] = cells[-1]
    return rows


def test_the_docs_give_each_model_the_registry_scale():
    from charmcli.model.registry import MODELS

    documented = {**_doc_scales(REPO / "docs" / "models.md"), **_doc_scales(REPO / "docs" / "eat.md")}
    assert set(documented) == set(MODELS)
    for name, cell in documented.items():
        assert cell.startswith(MODELS[name].scale), (name, cell, MODELS[name].scale)


def test_charm_models_lists_the_registry_scales_without_trailing_spaces(cli):
    from charmcli.model.registry import MODELS

    result = cli("models", env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name, spec in MODELS.items():
        row = next(line for line in lines if line.split(" ", 1)[0] == name)
        assert spec.scale in row.split()
    for line in lines:
        assert len(line) <= WIDTH and line == line.rstrip(), repr(line)
