"""CPU lanes: the workers run the network themselves, with the same results as the main thread."""

from __future__ import annotations

import threading

import pytest
import torch

from charmcli.model.scorer import Scorer
from charmcli.pipeline import Pipeline, ScoreOptions, scan
from charmcli.store import Store

from shared_paths import CONFORMANCE


def options(**kw) -> ScoreOptions:
    ckpt, pos = CONFORMANCE / "checkpoints" / "aadb_charm.pth", CONFORMANCE / "dino_small_pos.pt"
    if not ckpt.is_file():
        pytest.skip(f"{CONFORMANCE} is absent")
    return ScoreOptions(checkpoint=ckpt, pos_embed=pos, device="cpu", **{"max_side": 320, **kw})


def run(library, db, opts: ScoreOptions, monkeypatch) -> tuple[dict[str, float], set[str]]:
    """Score the library; returns {path: score} and the names of the threads the network ran in."""
    threads: set[str] = set()
    real = Scorer.score_prepared

    def spy(self, batch):
        threads.add(threading.current_thread().name)
        return real(self, batch)

    monkeypatch.setattr(Scorer, "score_prepared", spy)
    with Store(db) as store:
        events = list(Pipeline(store, opts).run(scan([library])))
    assert events and all(e.status == "scored" for e in events), [e.error for e in events]
    return {e.path: e.score for e in events}, threads


def test_lanes_score_in_the_workers_like_the_main_thread_does(library, tmp_path, monkeypatch):
    before = torch.get_num_threads()
    in_lanes, lane_threads = run(library, tmp_path / "a.db", options(workers=2), monkeypatch)
    assert lane_threads and all(name.startswith("charm-decode") for name in lane_threads)
    assert torch.get_num_threads() == before  # given back after the run

    main, main_threads = run(library, tmp_path / "b.db", options(workers=2, lanes=False), monkeypatch)
    assert main_threads == {threading.current_thread().name}
    assert in_lanes.keys() == main.keys()
    for path, score in main.items():  # one vs several threads may round the last bits differently
        assert in_lanes[path] == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize(
    ("kw", "why"),
    [({"workers": 1}, "one worker"), ({"workers": 2, "batch_size": 4}, "batches"), ({"workers": 2, "max_side": 0}, "native")],
)
def test_no_lanes_where_they_do_not_pay(library, tmp_path, monkeypatch, kw, why):
    opts = options(**kw)
    if opts.max_side == 0:  # native resolution: keep the photos small for the test
        for big in library.rglob("*.jpg"):
            if big.stat().st_size > 30_000:
                big.unlink()
    _, threads = run(library, tmp_path / "c.db", opts, monkeypatch)
    assert threads == {threading.current_thread().name}, why


def test_a_network_failure_in_a_lane_fails_only_that_photo(library, tmp_path, monkeypatch):
    real = Scorer.score_prepared

    def flaky(self, batch):
        if any(t.input_size == (64, 96) for t in batch):  # 2024/d.jpg
            raise RuntimeError("boom")
        return real(self, batch)

    monkeypatch.setattr(Scorer, "score_prepared", flaky)
    with Store(tmp_path / "d.db") as store:
        events = list(Pipeline(store, options(workers=2)).run(scan([library])))
    failed = [e for e in events if e.status == "error"]
    assert [(e.path.endswith("d.jpg"), e.error) for e in failed] == [(True, "the model failed on this image")]
    assert all(e.status == "scored" for e in events if e not in failed) and len(events) == 8
