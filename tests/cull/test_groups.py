"""Grouping bursts / near-duplicates: synthetic bursts with controlled times and embeddings."""

from __future__ import annotations

import math
import sys
import tracemalloc
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charmcli.cull import groups as groups_module
from charmcli.cull.groups import (
    DEFAULT_MAX_GAP_S,
    DEFAULT_MIN_SIMILARITY,
    PhotoRecord,
    adjacent_similarities,
    best_frames,
    capture_time,
    find_groups,
    group_index,
    parse_capture_time,
    record_from_row,
    suggest_min_similarity,
)
from charmcli.flags import BURST_BLOCKERS

DIM = 384  # the CLS size of Charm's DINOv2-small models


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def near(base: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A vector with cosine exactly ``cos`` to ``base`` (in a random orthogonal direction)."""
    other = rng.standard_normal(base.size)
    other -= other @ base * base
    return cos * base + math.sqrt(1 - cos**2) * unit(other)


def burst(name, base, t0, n, rng, *, dt=0.2, cos=0.98, scores=None):
    scores = rng.uniform(0, 1, n) if scores is None else scores
    return [
        PhotoRecord(f"{name}{i}", f"/p/{name}{i}.jpg", t0 + i * dt, near(base, cos, rng).astype(np.float16), float(s))
        for i, s in enumerate(scores)
    ]


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_bursts_separated_by_content_and_time(rng):
    scene_a, scene_b = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    a = burst("a", scene_a, 1000.0, 6, rng)
    b = burst("b", scene_b, a[-1].timestamp + 1.0, 4, rng)  # within the time gap, other subject
    a_later = burst("c", scene_a, 5000.0, 3, rng)  # same subject, an hour later
    records = a_later + b + a  # input order must not matter
    groups = find_groups(records)
    assert [g.ids for g in groups] == [[r.id for r in a], [r.id for r in b], [r.id for r in a_later]]
    for g in groups:
        assert g.best.score == max(m.score for m in g.members)
    assert [g.index for g in groups] == [0, 1, 2]
    assert group_index(groups)["b2"] is groups[1]


def test_chaining_follows_drift_and_best_link_stops_it(rng):
    """A slow pan: each frame is 0.97 like the previous one, the ends are far apart."""
    base = unit(rng.standard_normal(DIM))
    frames, v = [], base
    for i in range(12):
        frames.append(PhotoRecord(i, f"/p/{i}.jpg", 100.0 + i, v.copy(), float(i == 0)))
        v = near(v, 0.97, rng)
    ends = float(unit(frames[0].embedding) @ unit(frames[-1].embedding))
    assert ends < DEFAULT_MIN_SIMILARITY  # the premise: first and last frames are not similar
    assert [g.size for g in find_groups(frames)] == [12]
    by_best = find_groups(frames, chain="best")
    assert len(by_best) > 1
    for g in by_best:  # every member is similar to its group's best frame
        for m in g.members:
            assert float(unit(m.embedding.astype(np.float64)) @ unit(g.best.embedding.astype(np.float64))) >= (
                DEFAULT_MIN_SIMILARITY - 1e-6
            )


def test_time_gap_chains_frame_to_frame(rng):
    base = unit(rng.standard_normal(DIM))
    slow = burst("s", base, 0.0, 5, rng, dt=DEFAULT_MAX_GAP_S * 0.9)  # spans > max_gap overall
    assert len(find_groups(slow)) == 1
    assert len(find_groups(slow, max_gap=DEFAULT_MAX_GAP_S * 0.5)) == 5


def test_missing_time_or_embedding_are_singletons_and_time_sources_do_not_mix(rng):
    base = unit(rng.standard_normal(DIM))
    recs = burst("x", base, 50.0, 4, rng)
    recs[1] = PhotoRecord("x1", "/p/x1.jpg", recs[1].timestamp, None, 0.5)
    recs.append(PhotoRecord("notime", "/p/n.jpg", None, base, 0.9))
    recs.append(PhotoRecord("mt", "/p/m.jpg", 50.1, base, 0.9, time_source="mtime"))
    groups = find_groups(recs)
    sizes = {tuple(g.ids): g.size for g in groups}
    assert ("x1",) in sizes and ("notime",) in sizes and ("mt",) in sizes
    assert groups[-1].ids == ["notime"]  # untimed photos come last
    assert sorted(i for g in groups for i in g.ids) == sorted(r.id for r in recs)


def test_best_tie_goes_to_earliest_and_unscored_never_wins(rng):
    base = unit(rng.standard_normal(DIM))
    recs = burst("t", base, 0.0, 4, rng, scores=[0.5, 0.9, 0.9, 0.1])
    recs.insert(0, PhotoRecord("u", "/p/u.jpg", -0.1, base, None))
    (g,) = find_groups(recs)
    assert g.best.id == "t1"
    assert [r.id for r in best_frames([g])] == ["t1"]


@pytest.mark.parametrize("blocker", sorted(BURST_BLOCKERS))
def test_a_blocked_frame_is_never_best_while_an_unblocked_one_exists(rng, blocker):
    base = unit(rng.standard_normal(DIM))
    recs = burst("f", base, 0.0, 4, rng, scores=[0.3, 0.95, 0.6, 0.5])
    recs[1].flags = frozenset({blocker})  # the best-scored frame has closed eyes / is soft / shaken
    recs[2].flags = frozenset({"underexposed"})  # exposure alone does not block (bursts share it)
    for chain in ("previous", "best"):
        (g,) = find_groups(recs, chain=chain)
        assert g.best.id == "f2", chain
    for r in recs:
        r.flags = frozenset({blocker})  # every frame blocked: the score decides again
    (g,) = find_groups(recs)
    assert g.best.id == "f1"


def test_record_from_row_reads_flags():
    row = {"path": "/p/a.jpg", "score": 0.5, "flags": ["soft", "eyes-closed"]}
    assert record_from_row(row).flags == {"soft", "eyes-closed"}
    assert record_from_row({"path": "/p/b.jpg"}).flags == frozenset()


def test_best_frames_sorted_by_score(rng):
    groups = find_groups(
        burst("a", unit(rng.standard_normal(DIM)), 0.0, 3, rng, scores=[0.1, 0.2, 0.3])
        + burst("b", unit(rng.standard_normal(DIM)), 100.0, 2, rng, scores=[0.8, 0.7])
    )
    assert [r.id for r in best_frames(groups)] == ["b0", "a2"]


def test_rejects_mixed_embedding_sizes_and_bad_options(rng):
    recs = [PhotoRecord(1, "a", 0.0, np.ones(384), 1.0), PhotoRecord(2, "b", 1.0, np.ones(1024), 1.0)]
    with pytest.raises(ValueError, match="different models"):
        find_groups(recs)
    with pytest.raises(ValueError):
        find_groups(recs[:1], chain="nearest")  # type: ignore[arg-type]
    assert find_groups([]) == []


def _reference(records, max_gap, min_sim, link):
    """A plain loop that states the rule directly, to check the vectorised version against."""
    def u(r):
        if r.embedding is None:
            return None
        v = np.asarray(r.embedding, dtype=np.float32)
        n = np.linalg.norm(v)
        return v / n if n > 0 else None

    order = sorted(range(len(records)), key=lambda i: (records[i].timestamp is None, records[i].timestamp or 0, i))
    groups: list[list[int]] = []
    for i in order:
        r = records[i]
        if groups:
            prev = records[groups[-1][-1]]
            members = [records[j] for j in groups[-1]]
            anchor = prev if link == "previous" else max(
                members, key=lambda m: (not m.flags & BURST_BLOCKERS, -math.inf if m.score is None else m.score))
            ok = (
                r.timestamp is not None and prev.timestamp is not None and u(r) is not None
                and u(prev) is not None and r.time_source == prev.time_source
                and r.timestamp - prev.timestamp <= max_gap
                and float(u(r) @ u(anchor)) >= min_sim
            )
            if ok:
                groups[-1].append(i)
                continue
        groups.append([i])
    return [[records[i].id for i in g] for g in groups]


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(0, 30, allow_nan=False)),  # time
            st.integers(0, 2),  # which of 3 scenes
            st.floats(0.85, 1.0),  # cosine to the scene
            st.one_of(st.none(), st.floats(0, 1)),  # score
        ),
        max_size=25,
    ),
    link=st.sampled_from(["previous", "best"]),
    max_gap=st.floats(0.5, 5),
)
def test_matches_reference_rule(data, link, max_gap):
    rng = np.random.default_rng(0)
    scenes = [unit(rng.standard_normal(16)) for _ in range(3)]
    records = [
        PhotoRecord(i, f"/p/{i}", t, near(scenes[s], c, rng).astype(np.float32) if c < 1 else scenes[s], sc)
        for i, (t, s, c, sc) in enumerate(data)
    ]
    groups = find_groups(records, max_gap=max_gap, min_similarity=0.9, chain=link)
    assert [g.ids for g in groups] == _reference(records, max_gap, 0.9, link)
    for g in groups:
        assert g.best in g.members


def test_parse_capture_time_formats():
    base = parse_capture_time("2024-05-01T12:00:00")
    assert base is not None
    assert parse_capture_time("2024:05:01 12:00:00") == base
    assert parse_capture_time("2024-05-01T12:00:00.25") == pytest.approx(base + 0.25)
    assert parse_capture_time("2024-05-01 12:00:01.123456789") == pytest.approx(base + 1.123456789)
    assert parse_capture_time("2024-05-01T14:00:00+02:00") == base
    assert parse_capture_time("2024-05-01T12:00:00Z") == base
    for bad in (None, "", "0000:00:00 00:00:00", "2024-13-01T00:00:00", "yesterday"):
        assert parse_capture_time(bad) is None


def test_capture_time_falls_back_to_mtime():
    assert capture_time("2024-05-01T12:00:00.5", 123.0)[1] == "exif"
    assert capture_time("0000:00:00 00:00:00", 123.0) == (123.0, "mtime")
    assert capture_time(None, None) == (None, None)


def test_record_from_row_decodes_stored_float16_blob(rng):
    emb = rng.standard_normal(DIM).astype(np.float16)
    rec = record_from_row({"id": 3, "path": "/p/x.jpg", "date_taken": None, "mtime_ns": 2_500_000_000,
                           "score": 0.4, "embedding": emb.tobytes()})
    assert rec.timestamp == 2.5 and rec.time_source == "mtime"
    np.testing.assert_array_equal(rec.embedding, emb)


def test_adjacent_similarities_and_suggestion(rng):
    """Bursts (neighbours ~0.97) interleaved with subject changes (~0.36): the hint lands between."""
    common = unit(rng.standard_normal(DIM))  # real embeddings share a common component
    records, t = [], 0.0
    for k in range(15):
        scene = near(common, 0.6, rng)
        records += burst(f"s{k}_", scene, t, 4, rng, cos=0.985)
        t = records[-1].timestamp + 1.0  # the next subject follows within the time gap
    sims = adjacent_similarities(records)
    assert len(sims) == len(records) - 1  # all neighbours are within the gap, records are in time order
    same_scene = np.array([a.id.split("_")[0] == b.id.split("_")[0] for a, b in pairwise(records)])
    hint = suggest_min_similarity(sims)
    assert hint is not None
    assert sims[~same_scene].max() < hint <= sims[same_scene].min()
    assert find_groups(records, min_similarity=hint)[0].size == 4
    assert suggest_min_similarity(sims[:5]) is None


def test_a_large_library_is_partitioned(rng):
    n = 20_000
    emb = rng.standard_normal((n, DIM)).astype(np.float16)
    recs = [PhotoRecord(i, f"/p/{i}", float(i) * 0.5, emb[i], float(i % 97)) for i in range(n)]
    groups = find_groups(recs)
    assert sum(g.size for g in groups) == n
    assert sorted(m.id for g in groups for m in g.members) == list(range(n))


def _shoot(n: int, rng) -> list[PhotoRecord]:
    """``n`` records in bursts of 1-8 frames (near-identical within, other subjects between)."""
    records: list[PhotoRecord] = []
    t = 0.0
    while len(records) < n:
        size = min(int(rng.integers(1, 9)), n - len(records))
        records += burst(f"g{len(records)}_", unit(rng.standard_normal(DIM)), t, size, rng, cos=0.99)
        t = records[-1].timestamp + 1.0
    return records


def _grouping_cost(records: list[PhotoRecord], link: str) -> tuple[int, int, int]:
    """(Python lines run in groups.py, peak bytes allocated, groups) for one ``find_groups`` call.

    Both are counts, the same on any machine: a per-pair Python loop shows up as lines, a
    vectorised all-pairs matrix as memory (numpy reports its buffers to tracemalloc).
    """
    lines = 0

    def trace(frame, event, arg):
        nonlocal lines
        if frame.f_code.co_filename != groups_module.__file__:
            return None  # numpy's own Python is not ours to count
        if event == "line":
            lines += 1
        return trace

    previous = sys.gettrace()
    tracemalloc.start()
    sys.settrace(trace)
    try:
        groups = find_groups(records, chain=link)
    finally:
        sys.settrace(previous)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return lines, peak, len(groups)


@pytest.mark.parametrize("link", ["previous", "best"])
def test_grouping_cost_is_linear(link):
    """What used to be a stopwatch: the work and memory per photo stay constant as the library
    grows (no all-pairs comparison, in Python or in numpy)."""
    costs = {}
    for n in (1_000, 4_000):
        records = _shoot(n, np.random.default_rng(n))
        lines, peak, n_groups = _grouping_cost(records, link)
        assert 0 < n_groups < n  # real bursts and singletons: both paths of the loop ran
        assert lines <= 40 * n, (n, lines)  # about 20 lines of Python per photo today
        assert peak <= 4 * n * DIM * 4 + (1 << 20), (n, peak)  # a few copies of the float32 embeddings
        costs[n] = (lines, peak)
    assert costs[4_000][0] / costs[1_000][0] < 4.5  # 4x the photos: 4x the lines, not 16x
    assert costs[4_000][1] / costs[1_000][1] < 4.5
