"""``charm groups`` (+ ``--calibrate``), ``top --best-of-group`` and library percentiles, end to end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from cull_shoot import ALL, BURSTS, SINGLES, STRICT

GROUP_KEYS = {"group", "size", "best", "best_score", "seconds", "time_source", "members"}
MEMBER_KEYS = {"path", "score", "percentile", "date_taken", "taken", "time_source", "best", "flags"}


def run_json(cli, *args):
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def names(paths) -> list[str]:
    return [Path(p).name for p in paths]


def scores_of(cli, shoot) -> dict[str, float]:
    return {Path(r["path"]).name: r["score"] for r in run_json(cli, "top", "100", shoot)}


def test_groups_json_shape_time_chains_and_best_frame(cli, shoot):
    scores = scores_of(cli, shoot)
    assert set(scores) == set(ALL)
    groups = run_json(cli, "groups", shoot)
    assert all(set(g) == GROUP_KEYS for g in groups)
    assert all(set(m) == MEMBER_KEYS for g in groups for m in g["members"])
    # Default threshold: bursts by time (the a-frames chain over 3.6 s with a 3 s gap); c joins b.
    assert sorted(names(m["path"] for m in g["members"]) for g in groups) == sorted(BURSTS.values())
    for g in groups:
        members = names(m["path"] for m in g["members"])
        best = max(members, key=scores.get)
        assert Path(g["best"]).name == best and g["best_score"] == scores[best]
        assert [m["best"] for m in g["members"]] == [n == best for n in members]
        assert g["size"] == len(members) and [m["score"] for m in g["members"]] == [scores[n] for n in members]
        assert members == sorted(members)  # capture order (names follow time here)
    by_first = {names([g["members"][0]["path"]])[0]: g for g in groups}
    assert by_first["a0.jpg"]["seconds"] == 3.6 and by_first["a0.jpg"]["time_source"] == "exif"
    assert by_first["a0.jpg"]["members"][1]["date_taken"] == "2024-06-01T10:00:01.200"  # SubSecTimeOriginal
    assert by_first["m0.jpg"]["time_source"] == "mtime" and by_first["m0.jpg"]["seconds"] == 1.0

    everything = run_json(cli, "groups", shoot, "--all")
    assert sorted(n for g in everything for n in names(m["path"] for m in g["members"])) == sorted(ALL)
    assert sorted(names(g["best"] for g in everything if g["size"] == 1)) == SINGLES
    assert [g["group"] for g in everything] == sorted(g["group"] for g in everything)

    human = cli("groups", shoot)
    assert human.exit_code == 0 and "★ best" in human.stdout and "a3.jpg" in human.stdout
    assert "14 photos: 3 group(s) of 2 or more frames hold 11 of them" in human.stderr
    assert "leaves 6" in human.stderr
    assert [g["group"] for g in groups] == list(range(1, len(groups) + 1))  # numbered as listed


def test_similarity_threshold_splits_a_different_scene_and_link_best_agrees(cli, shoot):
    strict = run_json(cli, "groups", shoot, *STRICT)
    assert sorted(names(m["path"] for m in g["members"]) for g in strict) == sorted(
        [BURSTS["a"], ["b0.jpg", "b1.jpg", "b2.jpg"], BURSTS["m"]]
    )
    best = run_json(cli, "groups", shoot, *STRICT, "--chain", "best")
    assert [[m["path"] for m in g["members"]] for g in best] == [[m["path"] for m in g["members"]] for g in strict]
    # a tighter time gap breaks the EXIF bursts (frames 1 and 1.2 s apart); the m frames are 0.5 s apart
    assert [g["time_source"] for g in run_json(cli, "groups", shoot, "--gap", "0.9")] == ["mtime"]
    assert cli("groups", shoot, "--chain", "nearest").exit_code == 2
    assert cli("groups", shoot, "--link", "best").exit_code == 2  # --link means hard links, in `top` only
    assert cli("groups", shoot, "--similarity", "1.5").exit_code == 2


def test_calibrate_histogram_and_suggestion(cli, shoot):
    data = run_json(cli, "groups", shoot, "--calibrate")
    # neighbouring pairs within 3 s with the same clock: a 3, b+c 3, m 2
    assert data["pairs"] == 8 and data["linked"] == 8 and data["similarity"] == 0.9
    assert sum(b["count"] for b in data["histogram"]) == 8
    assert all(b["from"] < b["to"] for b in data["histogram"]) and data["histogram"][-1]["to"] == 1.0
    assert data["suggested"] is None  # fewer than 20 pairs: no evidence for a threshold
    assert set(data["quantiles"]) == {"p5", "p25", "p50", "p75", "p95"}
    strict = run_json(cli, "groups", shoot, "--calibrate", *STRICT)
    assert strict["linked"] == 7  # only the b2 → c pair falls under 0.995
    human = cli("groups", shoot, "--calibrate")
    assert human.exit_code == 0 and "█" in human.stdout and "Too few pairs" in human.stdout


def test_top_best_of_group_keeps_one_frame_per_burst(cli, shoot):
    scores = scores_of(cli, shoot)
    groups = run_json(cli, "groups", shoot, "--all", *STRICT)
    rows = run_json(cli, "top", "100", shoot, "--best-of-group", *STRICT)
    assert sorted(names(r["path"] for r in rows)) == sorted(names(g["best"] for g in groups))
    assert len(rows) == 7 and [r["rank"] for r in rows] == list(range(1, 8))  # a, b, c, m, s0..s2
    assert [r["score"] for r in rows] == sorted((scores[n] for n in names(r["path"] for r in rows)), reverse=True)
    loose = run_json(cli, "top", "100", shoot, "--best-of-group")
    default_bests = names(g["best"] for g in run_json(cli, "groups", shoot, "--all"))
    assert len(loose) == 6 and sorted(names(r["path"] for r in loose)) == sorted(default_bests)
    assert names(r["path"] for r in run_json(cli, "top", "2", shoot, "--best-of-group")) == names(
        r["path"] for r in loose[:2]
    )
    table = cli("top", "3", shoot, "--best-of-group", "--chain", "best")
    assert table.exit_code == 0 and "pct" in table.stdout


def test_percentiles_are_library_standing_consistent_with_ranks(cli, shoot, tmp_path):
    rows = run_json(cli, "top", "100")
    n = len(rows)
    pcts = [r["percentile"] for r in rows]
    assert n == len(ALL) and all(0 < p < 100 for p in pcts)
    assert pcts == sorted(pcts, reverse=True)
    # Mid-rank percentile, ties included: 100 (below + ½ equal) / n; without ties 100 (n - rank + ½) / n.
    scores = [r["score"] for r in rows]
    expected = [100 * (sum(t < s for t in scores) + 0.5 * sum(t == s for t in scores)) / n for s in scores]
    assert np.allclose(pcts, expected, atol=0.01)
    if len(set(scores)) == n:
        assert np.allclose(pcts, [100 * (n - r["rank"] + 0.5) / n for r in rows], atol=0.01)
    by_name = {Path(r["path"]).name: r["percentile"] for r in rows}
    # library-wide, not within the selection: a filtered listing keeps each photo's standing
    for r in run_json(cli, "top", "3", shoot / "a0.jpg", shoot / "s1.jpg"):
        assert r["percentile"] == by_name[Path(r["path"]).name]
    for g in run_json(cli, "groups", shoot, "--all"):
        for m in g["members"]:
            assert m["percentile"] == by_name[Path(m["path"]).name]
    info = run_json(cli, "show", shoot / "a3.jpg")
    assert info["scores"][0]["percentile"] == by_name["a3.jpg"]
    assert "pct" in cli("show", shoot / "a3.jpg").stdout
    table = list(csv.DictReader(io.StringIO(cli("top", "2", "--csv").stdout)))
    assert float(table[0]["percentile"]) == pcts[0]


def test_nothing_scored_yet(cli, tmp_path):
    result = cli("groups", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == [] and "No scores yet" in result.stderr
    assert cli("groups", tmp_path / "nope").exit_code == 2
