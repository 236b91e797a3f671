"""charm vs the official Charm pipeline: speed, agreement, re-runs and memory (issue 5).

Run with charm's own environment; the official pipeline runs in its own environment as a JSON
worker (``official_reference.py --json-worker``), spawned with ``--official-python``::

    python benchmarks/bench.py --official-python /work/offenv/bin/python [--quick] [--workdir DIR]

Both sides get the same images and the same randomly initialised full-depth (12-layer)
DINOv2-small aadb Charm model, written in the official checkpoint format by
``tests/official_format.py`` (the official code loads that very file). Sections:

1. tokenizer: official ``preprocess`` vs charm's tokenizer on a 1024x768 photo and on a 24 MP
   photo (native resolution, aadb budget): median seconds, ratio, max |token diff|, |pos diff|;
2. end to end on ~1 MP photos: official decode + tokenize + network (no_grad) vs charm's scoring
   pipeline at default settings (decode pool, batched network, SQLite store): images/s, scores;
3. 24 MP JPEGs at the default resolution policy: per-stage times, share of wall time outside the
   network, draft-decode savings;
4. re-run of an already-scored folder of 5,000 files: wall time of a fresh ``charm score``;
5. memory: peak RSS of ``charm score`` on 24 MP / 16 MP photos, default and ``--max-side 0``.

Timings are medians of interleaved repeats in one run (the machine may be shared). Nothing is
written outside the work directory (a temp dir unless ``--workdir``); the repository and the
shared data are only read.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
PHOTOS = SHARED / "photos"
POS = SHARED / "conformance" / "dino_small_pos.pt"
BIG = PHOTOS / "unsplash-rachel-hisko-rEM3cK8F1pk.jpg"  # 6000x4000, 24 MP, no EXIF
MP16 = [PHOTOS / "seeding_by_Clements_Engelhardt.jpg", PHOTOS / "Kodak PIXPRO S-1.jpg"]
E2E_SOURCES = [
    BIG,
    PHOTOS / "seeding_by_Clements_Engelhardt.jpg",
    PHOTOS / "Dragonfly_by_Bolly.jpg",
    PHOTOS / "Kodak PIXPRO S-1.jpg",
    PHOTOS / "jolla.jpg",
    PHOTOS / "bad" / "corrupted.jpg",  # decodes fine (only its EXIF block is damaged)
]
DEFAULT_OFFICIAL_PYTHON = "/work/offenv/bin/python"

LINES: list[str] = []


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    out("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    out("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        out("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


# -- fixtures (all under the work directory) ----------------------------------------------------


def build_checkpoint(path: Path, **kwargs) -> Path:
    """An official-format checkpoint with random weights (tests/official_format.py)."""
    if not path.exists():
        sys.path.insert(0, str(REPO / "tests"))
        from official_format import build_official_model, save_official

        tmp = path.with_suffix(".tmp")
        save_official(build_official_model(**kwargs), tmp)
        tmp.replace(path)
    return path


def save_jpeg(image, path: Path) -> Path:
    if not path.exists():
        image.save(path, "JPEG", quality=95)  # no EXIF: default policy == official input
    return path


def make_e2e_images(folder: Path, n: int) -> list[Path]:
    """~1 MP JPEGs (long side 1024, q95, no EXIF): resized crops of the shared photos."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    shapes = [(1024, 768), (768, 1024), (1024, 1024)]
    i = 0
    while len(paths) < n:
        src = E2E_SOURCES[i % len(E2E_SOURCES)]
        shape = shapes[i % len(shapes)]
        path = folder / f"e2e_{i:02d}_{shape[0]}x{shape[1]}.jpg"
        if not path.exists():
            with Image.open(src) as im:
                im = im.convert("RGB")
                w, h = im.size
                # a crop of the target aspect ratio, at a different place for each pass
                scale = min(w / shape[0], h / shape[1]) * (0.9 - 0.2 * ((i // len(E2E_SOURCES)) % 3))
                cw, ch = int(shape[0] * scale), int(shape[1] * scale)
                x0 = (w - cw) * ((i * 37) % 100) // 100
                y0 = (h - ch) * ((i * 61) % 100) // 100
                save_jpeg(im.crop((x0, y0, x0 + cw, y0 + ch)).resize(shape, Image.Resampling.LANCZOS), path)
        paths.append(path)
        i += 1
    return paths


def distinct_copy(src: Path, dst: Path, salt: int) -> Path:
    """Same pixels, different bytes (a trailer after the JPEG EOI): no content-hash reuse."""
    if not dst.exists():
        data = src.read_bytes() + b"charm-bench-%d" % salt
        dst.write_bytes(data)
    return dst


def big_folder(folder: Path, copies: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [distinct_copy(BIG, folder / f"big24_{i}.jpg", i) for i in range(copies)]
    paths += [distinct_copy(p, folder / f"mp16_{i}.jpg", 100 + i) for i, p in enumerate(MP16)]
    return paths


# -- the official worker -------------------------------------------------------------------------


class Official:
    def __init__(self, python: str, checkpoint: Path) -> None:
        self.proc = subprocess.Popen(
            [python, str(HERE / "official_reference.py"), "--json-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=str(HERE),
        )
        self.load = self.call(cmd="load", checkpoint=str(checkpoint), ds="aadb", pos_embed=str(POS))

    def call(self, **req) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"official worker died (exit {self.proc.poll()})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"official worker: {reply.get('error')}\n{reply.get('trace', '')}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(cmd="quit")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- sections ------------------------------------------------------------------------------------


def section_tokenizer(work: Path, official: Official | None, scorer, repeats: int, big_repeats: int) -> dict:
    import torch
    from PIL import Image

    out("## 1. Tokenizer (aadb budget 1025; decoded image in, tokens out; warm caches)")
    out()
    with Image.open(BIG) as im:
        im = im.convert("RGB")
        w, h = im.size
        crop = im.crop((0, 0, w, w * 3 // 4) if w * 3 // 4 <= h else (0, 0, h * 4 // 3, h))
        small_path = save_jpeg(crop.resize((1024, 768), Image.Resampling.LANCZOS), work / "photo_1024x768.jpg")
    cases = [("1024x768 photo", small_path, repeats), ("24 MP photo (6000x4000, native)", BIG, big_repeats)]
    rows, result = [], {}
    for label, path, n in cases:
        with Image.open(path) as im:
            img = im.convert("RGB")  # the official decode
        scorer.prepare(img)  # warm-up (position cache, allocator)
        ours, theirs = [], []
        saved = work / f"official_tokens_{path.stem}.pt"
        for r in range(n):
            if official is not None:
                rep = official.call(cmd="tokenize", image=str(path), save=str(saved) if r == 0 else None)
                theirs.append(rep["timings"]["tokenize"])
            t0 = time.perf_counter()
            tok = scorer.prepare(img)
            ours.append(time.perf_counter() - t0)
        row = {"charm_s": med(ours), "n_tokens": tok.num_tokens, "path": tok.path}
        tdiff = pdiff = mdiff = None
        if official is not None:
            ref = torch.load(saved, weights_only=True)
            ot, op, om = ref["tokens"], ref["pos_embed"], ref["mask"]
            if ot.shape[0] == tok.tokens.shape[0] + 1:  # official row 0 is the CLS slot
                ot, om = ot[1:], om[1:]
            if ot.shape == tok.tokens.shape and op.shape == tok.pos_embed.shape:
                tdiff = float((ot.float() - tok.tokens).abs().max())
                pdiff = float((op.float() - tok.pos_embed).abs().max())
                mdiff = int((om.long() != tok.scale_ids).sum())
            row.update(official_s=med(theirs), ratio=med(theirs) / med(ours), token_diff=tdiff, pos_diff=pdiff,
                       mask_mismatch=mdiff, same_shape=tdiff is not None)  # fmt: skip
            saved.unlink(missing_ok=True)
        result[label] = row
        rows.append([
            label, f"{tok.num_tokens} ({tok.path})",
            fmt_s(row["official_s"]) if official else "-", fmt_s(row["charm_s"]),
            f"{row['ratio']:.1f}x" if official else "-",
            "shape differs" if official and tdiff is None else (f"{tdiff:.3g}" if tdiff is not None else "-"),
            f"{pdiff:.3g}" if pdiff is not None else "-",
            str(mdiff) if mdiff is not None else "-",
            f"{len(theirs)}/{len(ours)}",
        ])  # fmt: skip
    table(["image", "tokens", "official s", "charm s", "speed-up", "max abs token diff", "max abs pos diff",
           "mask mismatches", "runs (off/charm)"], rows)  # fmt: skip
    out()
    return result


def _run_pipeline(paths: list[Path], db: Path, checkpoint: Path, **opts):
    """charm's scoring pipeline (what ``charm score`` runs) on ``paths`` with a fresh DB."""
    from charmcli.pipeline import Pipeline
    from charmcli.store import Store
    from charmcli.work import Profile, ScoreOptions

    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    options = ScoreOptions(checkpoint=checkpoint, pos_embed=POS, device="cpu", **opts)
    prof = Profile()
    store = Store(db)
    try:
        t0 = time.perf_counter()
        pipe = Pipeline(store, options, profile=prof)
        events = list(pipe.run([str(p) for p in paths]))
        wall = time.perf_counter() - t0
    finally:
        store.close()
    load = prof.seconds.get("load model", 0.0)
    return events, wall, load, prof


def official_pass(official: Official, paths: list[Path]) -> tuple[float, dict[str, float], dict[str, list[float]]]:
    """One pass of the official pipeline, one photo at a time (``no_grad``): photos/s, each file's
    score by name, and each stage's seconds for every photo."""
    total, scores, stages = 0.0, {}, {k: [] for k in ("decode", "tokenize", "network")}
    for p in paths:
        rep = official.call(cmd="score", image=str(p), no_grad=True)
        total += rep["timings"]["total"]
        scores[p.name] = rep["score"]
        for k, seconds in stages.items():
            seconds.append(rep["timings"][k])
    return len(paths) / total, scores, stages


def scored_pipeline(paths: list[Path], db: Path, checkpoint: Path, **opts):
    """:func:`_run_pipeline`, refusing a run where any photo was not scored (a timing of failures
    would mean nothing): events, photos/s (model load excluded), profile."""
    events, wall, load, prof = _run_pipeline(paths, db, checkpoint, **opts)
    bad = [e for e in events if e.status != "scored"]
    if bad:
        raise RuntimeError(f"charm did not score {bad[0].path}: {bad[0].status} {bad[0].error}")
    return events, len(paths) / (wall - load), prof


def section_e2e(work: Path, official: Official | None, checkpoint: Path, n_images: int, repeats: int) -> dict:
    out(f"## 2. End to end, default settings, {n_images} photos of ~1 MP (long side 1024, JPEG q95, no EXIF)")
    out()
    paths = make_e2e_images(work / "e2e", n_images)
    off_rates, ours_rates, off_scores, our_scores = [], [], {}, {}
    off_stage: dict[str, list[float]] = {}
    our_stage: dict[str, list[float]] = {}
    for _r in range(repeats):
        if official is not None:
            rate, off_scores, stage = official_pass(official, paths)
            off_rates.append(rate)
            for k, seconds in stage.items():
                off_stage.setdefault(k, []).extend(seconds)
        events, rate, prof = scored_pipeline(paths, work / "e2e.db", checkpoint)
        ours_rates.append(rate)
        our_scores = {Path(e.path).name: e.score for e in events}
        for stage, seconds, _count in prof.rows():
            our_stage.setdefault(stage, []).append(seconds)
    diffs = [abs(off_scores[k] - our_scores[k]) for k in off_scores]
    res = {"charm_img_s": med(ours_rates), "runs": repeats}
    rows = [["charm score (pipeline, defaults; model load excluded)", f"{med(ours_rates):.3f}", "", ""]]
    if official is not None:
        res.update(official_img_s=med(off_rates), ratio=med(ours_rates) / med(off_rates),
                   max_abs_score_diff=max(diffs), n_compared=len(diffs))  # fmt: skip
        rows.insert(0, ["official (decode + tokenize + network, no_grad)", f"{med(off_rates):.3f}", "", ""])
        rows[0][2] = rows[1][2] = f"{res['ratio']:.2f}x charm/official"
        rows[0][3] = rows[1][3] = f"{max(diffs):.2e} ({len(diffs)} images)"
    table(["pipeline", "images/s (median)", "ratio", "max abs score diff"], rows)
    out()
    parts = []
    if official is not None:
        n = len(paths)
        parts.append("official per image: " + ", ".join(
            f"{k} {sum(v) / len(v):.3f} s" for k, v in off_stage.items()))  # fmt: skip
        del n
    parts.append("charm per image (summed over threads): " + ", ".join(
        f"{k} {med(v) / len(paths):.3f} s" for k, v in our_stage.items() if k not in ("scan", "load model")))  # fmt: skip
    for p in parts:
        out(f"- {p}")
    out()
    return res


def section_big(work: Path, checkpoint: Path, copies: int, repeats: int) -> dict:
    from PIL import Image

    from charmcli.library.decode import decode_image, read_bytes

    paths = big_folder(work / "big", copies)
    out(f"## 3. 24 MP / 16 MP JPEGs at the default policy (max side 1024): {copies} x 24 MP + {len(MP16)} x 16 MP")
    out()
    walls, nets, stage_runs = [], [], []
    for _ in range(repeats):
        events, wall, load, prof = _run_pipeline(paths, work / "big.db", checkpoint)
        assert all(e.status == "scored" for e in events), [e.error for e in events if e.status != "scored"]
        walls.append(wall - load)
        nets.append(prof.seconds.get("network", 0.0))
        stage_runs.append(dict(prof.seconds))
    i = walls.index(med(walls)) if med(walls) in walls else 0
    stages = stage_runs[i]
    wall, net = walls[i], nets[i]
    n = len(paths)
    rows = [[k, f"{v:.3f}", f"{1000 * v / n:.0f}"] for k, v in stages.items() if k not in ("load model",)]
    # decode = open + (draft) + load + EXIF orientation + bicubic resize; split it apart here
    data = read_bytes(BIG)
    t_draft, t_nodraft, t_load_draft = [], [], []
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        decode_image(data, name="x.jpg", use_draft=False)
        t_nodraft.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decode_image(data, name="x.jpg")
        t_draft.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (2048, 1365))
        im.load()
        t_load_draft.append(time.perf_counter() - t0)
    table(["stage (pipeline profile, summed over threads)", "seconds", "ms / image"], rows)
    out()
    share = (wall - net) / wall
    out(f"- wall (model load excluded) {wall:.2f} s for {n} images = {n / wall:.2f} images/s; "
        f"network {net:.2f} s; **outside the network: {100 * share:.0f}% of wall** (target <= 25%)")  # fmt: skip
    out(f"- 24 MP decode to 1024 px: with draft {med(t_draft):.3f} s (of which JPEG draft decode "
        f"{med(t_load_draft):.3f} s, orient/resize/convert {med(t_draft) - med(t_load_draft):.3f} s); "
        f"without draft {med(t_nodraft):.3f} s -> draft saves {med(t_nodraft) - med(t_draft):.3f} s/image "
        f"({med(t_nodraft) / med(t_draft):.1f}x)")  # fmt: skip
    out()
    return {"wall_s": wall, "network_s": net, "outside_share": share, "stages": stages,
            "decode_draft_s": med(t_draft), "decode_nodraft_s": med(t_nodraft)}  # fmt: skip


def _charm_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("charm")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from charmcli.cli import main; main()"]


def section_rerun(work: Path, n_files: int, repeats: int) -> dict:
    import numpy as np
    from PIL import Image

    out(f"## 4. Re-run of an already-scored folder of {n_files} files (fresh `charm score` process)")
    out()
    base = work / f"rerun{n_files}"
    folder, db, ck = base / "photos", base / "charm.db", base / "tiny.pth"
    done = base / "scored.ok"
    base.mkdir(parents=True, exist_ok=True)
    build_checkpoint(ck, dim=384, depth=2, heads=6, num_classes=1, dataset="aadb")  # width of the pos table
    cmd = [*_charm_cmd(), "score", str(folder), "--db", str(db), "--checkpoint", str(ck),
                          "--pos-embed", str(POS), "--device", "cpu", "--quiet"]  # fmt: skip
    first = None
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(5)
        for i in range(n_files):
            sub = folder / f"d{i // 500:02d}"
            sub.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(sub / f"img_{i:05d}.png")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        first = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"first charm score failed ({proc.returncode}): {proc.stderr[-2000:]}")
        done.write_text("ok")
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"re-run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        statuses = [json.loads(line)["status"] for line in proc.stdout.splitlines() if line.startswith("{")]
        if len(statuses) != n_files or any(s != "cached" for s in statuses):
            raise RuntimeError(f"re-run did not find all {n_files} files cached")
    t0 = time.perf_counter()
    subprocess.run([*_charm_cmd(), "--help"], capture_output=True)
    startup = time.perf_counter() - t0
    rows = [["re-run, all cached (median)", f"{med(walls):.2f}", ", ".join(f"{w:.2f}" for w in walls)],
            ["`charm --help` (interpreter + CLI import)", f"{startup:.2f}", ""]]  # fmt: skip
    if first is not None:
        rows.insert(0, ["first run (2-layer random model, not the target)", f"{first:.1f}", ""])
    table(["run", "wall s", "runs"], rows)
    out()
    out(f"- command: `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}` (+ `--json` to check "
        f"every file came back `cached`); target < 3 s")  # fmt: skip
    out()
    return {"rerun_wall_s": med(walls), "runs": walls, "startup_s": startup, "n_files": n_files}


_RSS_WRAPPER = r"""
import resource, subprocess, sys, time, json
t0 = time.perf_counter()
try:
    rc = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        timeout=float(sys.argv[1])).returncode
except subprocess.TimeoutExpired:
    rc = "timeout"
print(json.dumps({"rc": rc, "wall": time.perf_counter() - t0,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _peak_rss(cmd: list[str], timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, str(timeout), *cmd], capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def section_memory(work: Path, checkpoint: Path, copies: int, native: bool, native_timeout: float) -> dict:
    out("## 5. Memory: peak RSS of `charm score` (fresh process, fresh DB)")
    out()
    paths = big_folder(work / "big", copies)
    rows, res = [], {}
    runs = [("default (max side 1024)", work / "big", [], f"{copies} x 24 MP + {len(MP16)} x 16 MP")]
    if native:
        one = work / "native_one"
        one.mkdir(exist_ok=True)
        distinct_copy(paths[0], one / "big24.jpg", 999)
        runs.append(("native (--max-side 0)", one, ["--max-side", "0"], "1 x 24 MP (~31k tokens)"))
    for label, folder, extra, what in runs:
        db = work / "mem.db"
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        cmd = [*_charm_cmd(), "score", str(folder), "--db", str(db), "--checkpoint", str(checkpoint),
                              "--pos-embed", str(POS), "--device", "cpu", "--quiet", *extra]  # fmt: skip
        r = _peak_rss(cmd, native_timeout)
        res[label] = r
        rows.append([label, what, f"{r['maxrss_kb'] / 1024 ** 2:.2f}", f"{r['wall']:.1f}", str(r["rc"])])
    table(["run", "files", "peak RSS GiB", "wall s", "exit"], rows)
    out()
    out("- target: < 3 GB at default settings")
    out()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-python", default=DEFAULT_OFFICIAL_PYTHON,
                    help="interpreter of the official-pipeline environment (benchmarks/README.md); "
                         "if missing, charm-only")  # fmt: skip
    ap.add_argument("--workdir", type=Path, help="where fixtures, DBs and caches go (default: a new temp dir)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run: fewer images, repeats and files")
    ap.add_argument("--sections", default="1,2,3,4,5", help="comma-separated subset of 1..5")
    ap.add_argument("--repeats", type=int, help="repeats per timing (default 3, quick 1)")
    ap.add_argument("--no-native", action="store_true", help="skip the native-resolution memory run")
    ap.add_argument("--native-timeout", type=float, default=900.0, help="seconds allowed for the native run")
    ap.add_argument("--rerun-files", type=int, help="files in the re-run folder (default 5000, quick 500)")
    ap.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="charm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    for forbidden in (REPO, SHARED):
        if work == forbidden.resolve() or forbidden.resolve() in work.parents:
            ap.error(f"--workdir must be outside {forbidden}")

    import torch

    from charmcli.model import Scorer

    checkpoint = build_checkpoint(work / "aadb_full12_random.pth", dim=384, depth=12, heads=6,
                                  num_classes=1, dataset="aadb")  # fmt: skip
    official = None
    if Path(args.official_python).exists():
        official = Official(args.official_python, checkpoint)
    out("# charm vs official Charm pipeline")
    out()
    t0 = time.perf_counter()
    scorer = Scorer.from_files(checkpoint, POS, device="cpu")
    load = time.perf_counter() - t0
    out(f"- model: random full-depth DINOv2-small aadb Charm ({scorer.config.depth} layers, dim "
        f"{scorer.config.dim}), official checkpoint format, {checkpoint.stat().st_size / 1e6:.0f} MB")  # fmt: skip
    out(f"- charm: torch {torch.__version__}, {torch.get_num_threads()} threads, load {load:.2f} s")
    if official is not None:
        v = official.load["versions"]
        out(f"- official: charm-tokenizer 1.0.17, transformers {v['transformers']}, torch {v['torch']}, "
            f"{v['threads']} threads, loaded the same file in {official.load['load_seconds']:.2f} s")  # fmt: skip
    else:
        out(f"- official: NOT RUN ({args.official_python} not found): charm-only numbers")
    out(f"- machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
        f"mode {'quick' if quick else 'full'}, {repeats} repeat(s)")  # fmt: skip
    out()
    results: dict = {}
    try:
        if 1 in sections:
            results["tokenizer"] = section_tokenizer(work, official, scorer, max(repeats, 2) if not quick else 1,
                                                     1 if quick else 2)  # fmt: skip
        if 2 in sections:
            results["e2e"] = section_e2e(work, official, checkpoint, 4 if quick else 10, repeats)
        if official is not None:
            official.close()
            official = None
        del scorer
        if 3 in sections:
            results["big"] = section_big(work, checkpoint, 1 if quick else 4, repeats)
        if 4 in sections:
            results["rerun"] = section_rerun(work, args.rerun_files or (500 if quick else 5000), repeats)
        if 5 in sections:
            results["memory"] = section_memory(work, checkpoint, 1 if quick else 4, not (quick or args.no_native),
                                               args.native_timeout)  # fmt: skip
    finally:
        if official is not None:
            official.close()
    out(f"(load average {os.getloadavg()[0]:.1f} at the end; work dir {work})")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2, default=str))
    if args.workdir is None and not quick:
        shutil.rmtree(work / "big", ignore_errors=True)  # GBs of copies; the rest is small
    return 0


if __name__ == "__main__":
    sys.exit(main())
