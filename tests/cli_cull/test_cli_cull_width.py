"""``groups`` and ``rate`` read well at 80 columns and use a wide terminal (issue 11, items 3 and 9).

The width is pinned with ``COLUMNS`` for every rendered check, so nothing here depends on the
terminal the tests run in.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

from rich.cells import cell_len

NARROW, WIDE = {"COLUMNS": "80"}, {"COLUMNS": "250"}


def _fits(text: str, width: int) -> bool:
    return all(cell_len(line) <= width for line in text.splitlines())


def _deep(shoot: Path) -> Path:
    """The shoot moved under a long folder name, as real libraries are."""
    deep = shoot.parent / "Pictures" / "2024-06-01 Lake Constance with the whole family and friends"
    deep.parent.mkdir(parents=True)
    shutil.copytree(shoot, deep)  # copy2 keeps the mtimes the m-burst is timed by
    return deep


def test_groups_at_80_columns_and_wide(cli, shoot, model_args):
    deep = _deep(shoot)
    assert cli("score", deep, *model_args, "--quiet").exit_code == 0  # known content: no model run
    data = json.loads(cli("groups", deep, "--json").stdout)
    narrow = cli("groups", deep, env=NARROW)
    assert narrow.exit_code == 0 and _fits(narrow.stdout, 80), narrow.stdout
    for g in data:
        for m in g["members"]:
            assert Path(m["path"]).name in narrow.stdout and f"{m['score']:.4f}" in narrow.stdout
    wide = cli("groups", deep, env=WIDE)
    assert "taken" in wide.stdout and str(deep) in wide.stdout.splitlines()[0]
    # Photos timed by the file's clock show that time, marked, instead of a blank.
    m_burst = next(g for g in data if g["time_source"] == "mtime")
    for m in m_burst["members"]:
        stamp = datetime.fromtimestamp(Path(m["path"]).stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        assert m["date_taken"] is None and m["taken"] == f"{stamp} (file)" and m["time_source"] == "mtime"
        assert f"{stamp} (file)" in wide.stdout
    # One word, one meaning: the title says how frames chain, the numbers run 1, 2, 3.
    assert "chain previous" in wide.stdout and "link" not in wide.stdout.splitlines()[0]
    assert [g["group"] for g in data] == [1, 2, 3]


def test_rate_at_80_columns_and_wide(cli, shoot):
    narrow = cli("rate", shoot, "--dry-run", env=NARROW)
    assert narrow.exit_code == 0 and _fits(narrow.stdout, 80), narrow.stdout
    photos = json.loads(cli("rate", shoot, "--dry-run", "--json").stdout)["photos"]
    for p in photos:
        assert Path(p["path"]).name in narrow.stdout
    wide = cli("rate", shoot, "--dry-run", env=WIDE)
    assert "label" in wide.stdout and "score" in wide.stdout
