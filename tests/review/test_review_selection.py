"""One selection, one group number: ``top``, ``groups``, ``report`` and the desk see the same photos.

Each command builds a :class:`~charmcli.selection.Query` and calls
:func:`~charmcli.selection.select`; these tests compare what each *shows* with what ``select``
returns for the same filter, so a command that re-ranked, re-filtered or attached its own
percentile or decision would disagree.
"""

from __future__ import annotations

import json
import re

from review_lib import BURST

from charmcli.selection import Query, select
from charmcli.store import Store


def _view(row: dict) -> tuple:
    return row["path"], row["rank"], row["score"], row["percentile"], row["rating"], row["label"]


def test_top_groups_report_and_the_desk_show_the_rows_select_returns(serve, library, cli, tmp_path, _private_db):
    decided = str(library / "jolla.jpg")
    with Store(_private_db) as store:
        store.record_decisions([(decided, None, 4, "Green")], source="review")
        want = select(store, Query(paths=[str(library)]))
        narrowed = select(store, Query(paths=[str(library)], camera="nikon"))
    assert want.rows and any(r["path"] == decided and r["rating"] == 4 for r in want.rows)
    assert 0 < len(narrowed.rows) < len(want.rows)

    top = json.loads(cli("top", "50", library, "--json").stdout)
    assert [_view(r) for r in top] == [_view(r) for r in want.rows]
    top_nikon = json.loads(cli("top", "50", library, "--camera", "nikon", "--json").stdout)
    assert [r["path"] for r in top_nikon] == [r["path"] for r in narrowed.rows]

    s = serve([library])
    desk = json.loads(s.request("GET", "/api/photos", token="header")[2])
    assert [_view(p) for p in desk] == [_view(r) for r in want.rows]
    desk_nikon = json.loads(s.request("GET", "/api/photos?camera=nikon", token="header")[2])
    assert [p["path"] for p in desk_nikon] == [r["path"] for r in narrowed.rows]

    pct = {r["path"]: r["percentile"] for r in want.rows}
    groups = json.loads(cli("groups", library, "--all", "--json").stdout)
    assert {m["path"]: m["percentile"] for g in groups for m in g["members"]} == pct

    sheet = tmp_path / "sheet"
    assert cli("report", library, "-o", sheet).exit_code == 0
    html = (sheet / "index.html").read_text()
    shown = [float(p) for p in re.findall(r'<span title="percentile">p(\d+)</span>', html)]
    assert shown == [float(f"{r['percentile']:.0f}") for r in want.rows]  # the top layout is best first


def test_a_burst_has_one_number_in_groups_the_sheet_and_the_desk(serve, library, cli, tmp_path):
    [burst] = json.loads(cli("groups", library, "--json").stdout)
    members = {m["path"] for m in burst["members"]}
    assert members == {str(library / n) for n in BURST}
    number = burst["group"]

    everything = json.loads(cli("groups", library, "--all", "--json").stdout)
    assert [g["group"] for g in everything if g["size"] > 1] == [number]  # listing singles keeps it
    assert len(everything) > 1  # singles are taken before the burst: an index would differ

    s = serve([library])
    listed = json.loads(s.request("GET", "/api/photos", token="header")[2])
    assert {p["group"] for p in listed if p["path"] in members} == {number}

    top_sheet, group_sheet = tmp_path / "top", tmp_path / "groups"
    assert cli("report", library, "-o", top_sheet).exit_code == 0
    assert cli("report", library, "-o", group_sheet, "--layout", "groups").exit_code == 0
    assert re.findall(r"group (\d+) · 2 frames", (top_sheet / "index.html").read_text()) == [str(number)] * 2
    assert re.findall(r"Group (\d+) <span>", (group_sheet / "index.html").read_text()) == [str(number)]


def test_with_a_taste_the_desk_marks_the_burst_frame_the_taste_likes_best(serve, library, cli, _private_db):
    """`charm review --taste`: the best-of-burst mark follows the taste, as `top` and `rate` do."""
    import numpy as np

    from charmcli.store import TasteRow
    from charmcli.taste.model import TasteModel

    with Store(_private_db) as store:
        (checkpoint,) = {r["checkpoint_id"] for r in store.all("SELECT checkpoint_id FROM latest_scores")}
        contrary = TasteModel(method="ridge", strength=1.0, layout=[(f"score:aadb:{checkpoint}", 1)],
                              weights=np.array([-1.0], dtype=np.float32), bias=3.0, n_ratings=20)  # fmt: skip
        store.write([TasteRow("mine", contrary.to_bytes(), 20, "ridge")])
    [burst] = json.loads(cli("groups", library, "--json").stdout)
    members = {m["path"]: m["score"] for m in burst["members"]}
    assert len(set(members.values())) == len(members) > 1  # the score and the taste disagree on a pick

    def marked(**options) -> str:
        listed = json.loads(serve([library], **options).request("GET", "/api/photos", token="header")[2])
        [best] = [p["path"] for p in listed if p["best"]]
        assert best in members
        return best

    assert marked() == burst["best"] == max(members, key=members.__getitem__)
    assert marked(taste="mine") == min(members, key=members.__getitem__)  # the taste likes low scores
