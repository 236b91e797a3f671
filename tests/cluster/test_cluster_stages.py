"""The cluster stages on plain pyarrow tables, without Ray: same results as ``charm score``'s code."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from charmcli.cluster.stages import (
    STAGE_SCHEMA,
    PrepareStage,
    ScoreStage,
    pack_tokens,
    unpack_tokens,
    write_stage,
)
from charmcli.library.decode import decode_image, read_bytes
from charmcli.work import ScoreOptions

from shared_paths import CONFORMANCE, PHOTOS


@pytest.fixture(scope="module")
def options() -> ScoreOptions:
    ckpt, pos = CONFORMANCE / "checkpoints" / "aadb_charm.pth", CONFORMANCE / "dino_small_pos.pt"
    if not ckpt.is_file() or not (PHOTOS / "bad").is_dir():
        pytest.skip("../shared is absent")
    return ScoreOptions(checkpoint=ckpt, pos_embed=pos, device="cpu")


@pytest.fixture(scope="module")
def stages(options, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CHARM_CACHE_DIR", str(tmp_path_factory.mktemp("charm-cache")))
    try:
        yield PrepareStage(options), ScoreStage(options)
    finally:
        mp.undo()


def test_tokens_survive_the_trip_between_processes(stages):
    prepare, _ = stages
    image = Image.open(PHOTOS / "DSCN0010.jpg").convert("RGB")
    t = prepare.preparer.prepare(image)
    back = unpack_tokens(pack_tokens(t))
    assert back.route == t.route and back.input_size == t.input_size and back.grid28 == t.grid28
    for name in ("tokens", "pos_embed", "scale_ids", "kept_cells"):
        a, b = getattr(t, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy()), name
    assert back.kept_cells_rc() == t.kept_cells_rc() and len(back.kept_cells_rc()) > 0


def test_prepare_then_score_equals_the_scorer_on_real_and_bad_files(stages, tmp_path):
    prepare, score = stages
    gone = tmp_path / "vanished.jpg"
    shutil.copy(PHOTOS / "DSCN0010.jpg", gone)
    paths = [
        str(PHOTOS / "DSCN0010.jpg"),
        str(PHOTOS / "Nikon Coolpix P7000.webp"),
        str(PHOTOS / "bad" / "empty.jpg"),
        str(PHOTOS / "bad" / "truncated_half.jpg"),
        str(PHOTOS / "bad" / "not_an_image.jpg"),
        str(gone),
    ]
    prepared = prepare(pa.table({"path": paths[:-1]}))
    gone.unlink()  # listed, then deleted before the CPU stage reads it
    prepared = pa.concat_tables([prepared, prepare(pa.table({"path": paths[-1:]}))])
    assert prepared.schema == STAGE_SCHEMA
    rows = {r["path"]: r for r in score(prepared).to_pylist()}
    assert list(rows) == paths and "tokens" not in next(iter(rows.values()))

    for path in paths[:2]:
        row, data = rows[path], read_bytes(path)
        decoded = decode_image(data, name=path)
        direct = score.scorer.score(decoded.image)
        assert row["status"] == "ok" and row["error"] is None
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["score"] == pytest.approx(direct.score, abs=1e-6)
        assert row["outputs"] == pytest.approx(direct.outputs, abs=1e-6)
        assert (row["width"], row["height"]) == (decoded.width, decoded.height)
        assert row["kept_cells"] == [list(c) for c in direct.kept_cells]
        assert np.frombuffer(row["embedding"], "<f2").shape == direct.embedding.shape
        assert row["model"] == "aadb" and row["preprocess"] == "max1024" and len(row["checkpoint_id"]) == 64
    assert rows[paths[0]]["make"] == "NIKON" and rows[paths[0]]["date_taken"].startswith("2008")

    expected = {
        paths[2]: ("empty", "empty file"),
        paths[3]: ("truncated", "truncated"),
        paths[4]: (None, ""),
        paths[5]: ("unreadable", "No such file"),
    }
    for path, (kind, words) in expected.items():
        row = rows[path]
        assert row["status"] == "error" and row["score"] is None and row["error"], path
        assert "\n" not in row["error"] and words in row["error"]
        if kind:
            assert row["error_kind"] == kind
    assert rows[paths[5]]["sha256"] is None and rows[paths[2]]["sha256"] == hashlib.sha256(b"").hexdigest()


def test_url_paths_are_read_through_pyarrow(stages):
    prepare, _ = stages
    local = PHOTOS / "DSCN0010.jpg"
    by_path, by_url = prepare.prepare(str(local)), prepare.prepare(local.as_uri())
    assert by_url["status"] == "ok" and by_url["sha256"] == by_path["sha256"] and by_url["size"] == local.stat().st_size
    missing = prepare.prepare((local.parent / "no-such.jpg").as_uri())
    assert missing["status"] == "error" and missing["error_kind"] == "unreadable"


def test_network_batches_by_length_and_survives_a_failing_batch(stages):
    prepare, stage = stages
    # a CPU worker holds no weights it never runs
    assert not hasattr(prepare, "scorer") and not hasattr(prepare.preparer, "network")
    scorer_batches: list[list[int]] = []
    real = stage.scorer.score_prepared

    def flaky(batch):
        scorer_batches.append([t.num_tokens for t in batch])
        if len(batch) > 1:
            raise RuntimeError("out of memory")  # a batch fails: each photo is retried alone
        return real(batch)

    sizes = [(64, 48), (300, 200), (120, 90)]
    rows = []
    for w, h in sizes:
        t = prepare.preparer.prepare(Image.new("RGB", (w, h), (w % 256, 40, 90)))
        rows.append({"path": f"/x/{w}.png", "status": "ok", "tokens": pack_tokens(t)})
    rows.append({"path": "/x/bad.jpg", "status": "error", "error": "corrupt"})
    try:
        stage.scorer.score_prepared = flaky
        stage.batch_size = 2
        stage.score_rows(rows)
        lengths = sorted((unpack_tokens(r["tokens"]).num_tokens for r in rows[:3]), reverse=True)
        # 3 photos, batches of 2, longest first: [longest, middle] fails and is retried alone, then [shortest]
        assert scorer_batches == [lengths[:2], [lengths[0]], [lengths[1]], [lengths[2]]]
        assert all(len(b) <= 2 for b in scorer_batches)
        assert all(r["status"] == "ok" and r["score"] is not None for r in rows[:3])
        assert rows[3]["status"] == "error" and rows[3].get("score") is None  # passed through untouched

        stage.scorer.score_prepared = lambda batch: (_ for _ in ()).throw(RuntimeError("boom"))
        again = [{"path": "/x/a.png", "status": "ok", "tokens": rows[0]["tokens"]}]
        stage.score_rows(again)
        assert again[0]["status"] == "error" and again[0]["error"] == "the model failed on this image"
    finally:
        del stage.scorer.score_prepared
        stage.batch_size = None


def test_write_stage_returns_a_slim_summary(tmp_path):
    rows = [{"path": "/p/a.jpg", "status": "ok", "score": 0.5, "tokens": b"xx"},
            {"path": "/p/b.jpg", "status": "error", "error": "corrupt"}]  # fmt: skip
    out = write_stage(pa.Table.from_pylist(rows, schema=STAGE_SCHEMA), str(tmp_path / "out"))
    assert out.to_pylist() == [
        {"path": "/p/a.jpg", "status": "ok", "score": 0.5, "error": None},
        {"path": "/p/b.jpg", "status": "error", "score": None, "error": "corrupt"},
    ]
    parts = sorted(Path(tmp_path / "out").iterdir())
    assert len(parts) == 1 and parts[0].name.startswith("part-")


def test_a_photo_fails_in_the_same_words_on_a_laptop_and_on_a_cluster(stages, options, tmp_path, monkeypatch):
    """The per-photo unit is one: a decode that runs out of memory, a file that is no image and
    a network that fails give `charm score` and the cluster stages the same one-line error."""
    import charmcli.work as work
    from charmcli.pipeline import Pipeline
    from charmcli.store import Store

    prepare, score = stages
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("oom.jpg", "ok.jpg"):
        shutil.copy(PHOTOS / "DSCN0010.jpg", folder / name)
    shutil.copy(PHOTOS / "bad" / "not_an_image.jpg", folder / "text.jpg")
    real_decode = work.decode_image

    def decode(data, *, name="", **kwargs):
        if name.endswith("oom.jpg"):
            raise MemoryError
        return real_decode(data, name=name, **kwargs)

    monkeypatch.setattr(work, "decode_image", decode)
    with Store(tmp_path / "charm.db") as store:
        laptop = {Path(e.path).name: e.error for e in Pipeline(store, options).run([folder])}
    rows = prepare(pa.table({"path": [str(folder / n) for n in ("oom.jpg", "text.jpg", "ok.jpg")]})).to_pylist()
    cluster = {Path(r["path"]).name: r["error"] for r in rows}
    assert laptop["oom.jpg"] == cluster["oom.jpg"] and "--max-pixels" in laptop["oom.jpg"]
    assert laptop["text.jpg"] == cluster["text.jpg"] and laptop["text.jpg"]
    assert laptop["ok.jpg"] is None and cluster["ok.jpg"] is None

    monkeypatch.setattr(score.scorer, "score_prepared", lambda batch: (_ for _ in ()).throw(RuntimeError("boom")))
    scored = score(pa.Table.from_pylist([r for r in rows if r["status"] == "ok"], schema=STAGE_SCHEMA)).to_pylist()
    with Store(tmp_path / "again.db") as store:
        pipeline = Pipeline(store, options)
        monkeypatch.setattr(pipeline.model, "get", lambda: score.scorer)
        pipeline.model.name, pipeline.model.checkpoint_id = score.scorer.name, score.scorer.checkpoint_id
        laptop_ok = {Path(e.path).name: e.error for e in pipeline.run([folder / "ok.jpg"])}
    assert laptop_ok["ok.jpg"] == scored[0]["error"] == "the model failed on this image"
