"""What a new user meets in the first hour: a broken torch install, mistakes with --checkpoint,
an export over a file, the help screens, the model list and its documentation.

The commands whose help is checked are read from the Typer app, so a new command is checked too.
"""

from __future__ import annotations

import json
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


# -- 80 columns: every line fits, no word is cut ----------------------------------------------

#: A terminal as rich sees one (wrapping at its width), without colours or a live progress bar.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "NO_COLOR": "1"}
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SECONDS = re.compile(r"\b\d+(\.\d+)? s\b")
NOTE = re.compile(r"\([^()]*? at \d+ columns: a wider terminal or --json shows all\)")

#: Commands that cannot run here, and why; every other command of the app runs below.
NOT_RUN = {
    "": "the app itself (its help is checked above)",
    "review": "serves until Ctrl-C (tests/review)",
    "cluster": "a group (its commands are listed)",
    "cluster score": "needs Ray Data (tests/cluster)",
    "cluster import": "reads a cluster job's output (tests/cluster)",
    "models download": "needs the network",
}


def _runs(library: Path, model_args: list[str], tmp_path: Path) -> dict[str, list[list[object]]]:
    a, b = library / "2023" / "a.jpg", library / "2023" / "b.jpg"
    return {
        "score": [[library, *model_args], [library, "--retry-failed", "--max-pixels", "1000", *model_args]],
        "top": [["5"]],
        "compare": [[a, b, *model_args]],
        "show": [[a], [library / "misc" / "broken.jpg"]],
        "groups": [["--all"]],
        "rate": [["--dry-run"]],
        "report": [["-o", tmp_path / "sheet"]],
        "learn": [[library], ["--forget", "mine"]],
        "stats": [[]],
        "forget": [["--dry-run"]],
        "models": [[]],
    }


def _lines(text: str) -> list[str]:
    return CONTROL.sub("", text).replace("\r", "\n").splitlines()


def test_every_command_fits_80_columns_without_cutting_a_word(cli, library, model_args, tmp_path):
    """Each command runs three times on the same library: once to settle it (scores, the failure),
    once as a log would see it (no terminal, one line per message) and once in an 80-column
    terminal. There every line fits, and its messages hold the same words as the log's: a wrap
    that cut a word in two would make two words of it."""
    (library / "misc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    runs = _runs(library, model_args, tmp_path)
    commands = {" ".join(c) for c in all_commands()}
    assert set(runs) | set(NOT_RUN) == commands, "a command is neither run here nor named in NOT_RUN"
    for name, variants in runs.items():
        for args in variants:
            cli(*name.split(), *args)
            log = cli(*name.split(), *args, env={"COLUMNS": "1000"})
            narrow = cli(*name.split(), *args, env={"COLUMNS": str(WIDTH), **TERMINAL})
            assert narrow.exit_code == log.exit_code, (name, args, narrow.stderr)
            for line in _lines(narrow.stdout) + _lines(narrow.stderr):  # a URI alone may be longer
                assert len(line) <= WIDTH or " " not in line.strip(), (name, args, line)
                assert line == line.rstrip(), (name, args, line)
            # a message of parts may put each on a line of its own: their " · " is no word
            said = [w for w in NOTE.sub("", SECONDS.sub("N s", " ".join(_lines(narrow.stderr)))).split() if w != "·"]
            logged = [w for w in SECONDS.sub("N s", " ".join(_lines(log.stderr))).split() if w != "·"]
            assert _same_words(said, logged), (name, args, " ".join(said), " ".join(logged))


def _same_words(wrapped: list[str], words: list[str]) -> bool:
    """Whether ``wrapped`` holds ``words`` whole, in order; only a word too long for a line of its
    own (a deep path) may come in pieces."""
    pieces = iter(wrapped)
    for word in words:
        seen = next(pieces, None)
        while seen is not None and seen != word and len(word) >= WIDTH - 1 and word.startswith(seen):
            more = next(pieces, None)
            seen = None if more is None else seen + more
        if seen != word:
            return False
    return next(pieces, None) is None


# -- tables at 80 columns: what is left out is said, a pipe gets everything -------------------

LONG = "a-rather-long-burst-frame-name-number-{:02}.jpg"


@pytest.fixture
def long_names(tmp_path, model_args, cli) -> Path:
    """Photos with long, similar names (one series), a long camera name, one second apart."""
    from cli_helpers import make_photo

    root = tmp_path / "series"
    for i in range(12):
        make_photo(root / LONG.format(i), seed=i, date=f"2024:06:01 10:00:{i:02}",
                   make="OLYMPUS IMAGING CORP.", model="u1020,S1020")  # fmt: skip
    make_photo(root / "openprinting_4x6-portrait-photo-adobergb.jpg", seed=40)
    make_photo(root / "openprinting_4x6-portrait-photo-sgray.jpg", seed=41)
    assert cli("score", root, *model_args).exit_code == 0
    return root


def _table(text: str) -> tuple[str, list[str]]:
    """(header line, data lines) of the table in ``text``."""
    lines = _lines(text)
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    return lines[rule - 1], [line for line in lines[rule + 1 :] if line.strip()]


def test_top_says_what_80_columns_leave_out_and_a_pipe_gets_all(cli, long_names):
    narrow = cli("top", "5", env={"COLUMNS": str(WIDTH), **TERMINAL})
    header, rows = _table(narrow.stdout)
    assert "taken" in header and "camera" not in header  # every name whole, the camera gives way
    assert all(len(line) <= WIDTH for line in rows) and all(re.search(LONG.replace("{:02}", r"\d\d"), r) for r in rows)
    assert "(camera left out" in narrow.stderr and "at 80 columns" in " ".join(_lines(narrow.stderr))
    piped = cli("top", "5", env={"COLUMNS": None})
    assert "OLYMPUS IMAGING CORP. u1020,S1020" in piped.stdout and "2024-06-01 10:00" in piped.stdout
    assert any(LONG.format(i) in piped.stdout for i in range(12)) and str(long_names) in piped.stdout and "columns" not in piped.stderr


def test_rate_at_80_columns_keeps_the_score_and_tells_the_names_apart(cli, long_names):
    result = cli("rate", "--dry-run", env={"COLUMNS": str(WIDTH), **TERMINAL})
    header, rows = _table(result.stdout)
    assert header.split()[:3] == ["file", "score", "pct"]
    names = [line.split("  ")[0] for line in rows]
    assert len(set(names)) == len(names) == 14, names


def test_groups_at_80_columns_keeps_the_capture_time(cli, long_names):
    result = cli("groups", "--similarity", "-1", env={"COLUMNS": str(WIDTH), **TERMINAL})
    header, rows = _table(result.stdout)
    assert "taken" in header and all("2024-06-01" in line for line in rows if "a-rather" in line)


# -- show on a known failure --------------------------------------------------------------------


def test_show_on_a_known_failure_says_it_failed_and_why(cli, library, model_args):
    broken = library / "misc" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    assert cli("score", library, *model_args).exit_code == 1
    result = cli("show", broken)
    assert "Not scored yet" not in result.stdout and "run `charm score`" not in result.stdout
    said = " ".join(result.stdout.split())
    assert "failed" in said and "--retry-failed" in said
    reason = cli("stats", "--json")
    failure = next(f for f in json.loads(reason.stdout)["failures"] if f["path"] == str(broken))
    assert failure["reason"] in said
