"""The selection attaches technical flags under the query's limits, hides flagged photos before the
limit and before grouping, and a burst's best frame is chosen knowing its frames' flags."""

from __future__ import annotations

import numpy as np
import pytest

from charmcli.flags import parse_limits
from charmcli.selection import Grouping, Query, select
from charmcli.store import MeasuresRow, PhotoRow, ScoreRow, Store

SHARP = {"focus_width": 0.6, "textured_tiles": 200, "motion_ratio": 1.1, "motion_width": 1.0, "highlights": 0.0,
         "brightness": 0.5, "luma_p99": 0.95, "faces": 1, "eyes_closed": 0}  # fmt: skip


@pytest.fixture
def store(tmp_path):
    """Three frames of one burst (same second, same embedding): a is best-scored but soft, b has
    closed eyes, c is clean; d is a separate, overexposed photo."""
    emb = np.ones(8, dtype=np.float16).tobytes()
    rows = []
    for name, score, measures in [
        ("a", 0.9, {**SHARP, "focus_width": 2.5}),
        ("b", 0.8, {**SHARP, "eyes_closed": 1}),
        ("c", 0.5, SHARP),
        ("d", 0.7, {**SHARP, "highlights": 0.4}),
    ]:
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(b"x")
        when = "2024-05-01T12:00:00" if name != "d" else "2024-05-02T12:00:00"
        rows += [PhotoRow(str(path), 1, 1, f"s{name}", meta={"date_taken": when}),
                 ScoreRow(f"s{name}", "aadb", "c", "max1024", score, [score], embedding=emb),
                 MeasuresRow(f"s{name}", "v", measures)]  # fmt: skip
    with Store(tmp_path / "charm.db") as s:
        s.write(rows)
        yield s


def _names(sel) -> list[str]:
    return [r["path"].rsplit("/", 1)[1][0] for r in sel.rows]


def test_rows_carry_flags_and_reasons(store):
    sel = select(store, Query())
    assert _names(sel) == ["a", "b", "d", "c"]
    flags = {n: r["flags"] for n, r in zip(_names(sel), sel.rows, strict=True)}
    assert flags == {"a": ["soft"], "b": ["eyes-closed"], "c": [], "d": ["overexposed"]}
    assert sel.rows[1]["flag_reasons"] == ["eyes closed: 1 of 1 face"]
    assert sel.rows[0]["measures"]["focus_width"] == 2.5


def test_hidden_flags_leave_rows_out_before_the_limit(store):
    assert _names(select(store, Query(hide_flags=frozenset({"soft", "eyes-closed"}), limit=1))) == ["d"]
    assert _names(select(store, Query(hide_flags=frozenset({"soft", "eyes-closed", "overexposed"})))) == ["c"]


def test_limits_from_the_query_decide(store):
    lenient = parse_limits("soft_width=3")
    sel = select(store, Query(flag_limits=lenient, hide_flags=frozenset({"soft"})))
    assert "a" in _names(sel)


def test_the_best_of_a_burst_is_its_best_unflagged_frame(store):
    best = select(store, Query(best_of_group=Grouping()))
    assert _names(best) == ["d", "c"]  # a (soft) and b (eyes closed) lose to c despite their scores
    lenient = select(store, Query(best_of_group=Grouping(), flag_limits=parse_limits("soft_width=3")))
    assert _names(lenient) == ["a", "d"]  # with a not soft any more, the score decides
