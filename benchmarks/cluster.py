"""``charm cluster score`` vs ``charm score`` on the same photos, and the CPU stage's bound (issue 12).

    python benchmarks/cluster.py [--images 24] [--repeats 3] [--workdir DIR]

Both commands get the same ~1 MP JPEGs (made from the shared photos, as ``bench.py`` makes them)
and the same randomly initialised full-depth (12-layer) DINOv2-small aadb checkpoint, and run as
subprocesses, so each figure includes what a user waits for (process start, model load, and for
the cluster a local Ray start). Sections:

1. the CPU stage (read, hash, decode, EXIF, tokenize: ``PrepareStage.prepare``) and the network
   (``ScoreStage`` on CPU) per photo on one core, for a 1 MP and a 24 MP JPEG (default policy and
   ``--max-side 0``): the CPU stage bounds a GPU pipeline, so this says how many CPU workers a GPU
   scoring R images/s needs (R x seconds per photo);
2. end to end: images/s of ``charm score`` and ``charm cluster score`` (local Ray, all CPUs), in
   interleaved repeats, and their ratio.

Nothing is written outside the work directory; the shared photos are only read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import BIG, POS, build_checkpoint, make_e2e_images, table  # noqa: E402

MAX_CPU_TOKENS = 4096


def med(values: list[float]) -> float:
    return statistics.median(values)


def charm(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    code = "import sys; from charmcli.cli import main; sys.argv = ['charm', *sys.argv[1:]]; main()"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, done


def section_cpu_stage(work: Path, checkpoint: Path, one_mp: Path, repeats: int) -> dict:
    import torch

    from charmcli.cluster.stages import PrepareStage, ScoreStage, unpack_tokens
    from charmcli.work import ScoreOptions

    torch.set_num_threads(1)  # one Ray CPU worker = one core
    print("## 1. Per photo on one core (CPU seconds of the thread, median): CPU stage and network on CPU\n")
    rows, res = [], {}
    for label, path, max_side in (("1 MP JPEG", one_mp, 1024), ("24 MP JPEG, default (max1024)", BIG, 1024),
                                  ("24 MP JPEG, --max-side 0 (native)", BIG, 0)):  # fmt: skip
        options = ScoreOptions(checkpoint=checkpoint, pos_embed=POS, device="cpu", max_side=max_side)
        prep, net = PrepareStage(options), ScoreStage(options)
        cpu_s, net_s, tokens = [], [], 0
        for _ in range(repeats):
            t0 = time.thread_time()  # CPU seconds of this thread: robust to a shared machine
            row = prep.prepare(str(path))
            cpu_s.append(time.thread_time() - t0)
            if row["status"] != "ok":
                raise RuntimeError(f"{path}: {row['error']}")
            tokens = unpack_tokens(row["tokens"]).num_tokens
            if tokens <= MAX_CPU_TOKENS:  # native 24 MP is ~31k tokens: minutes per photo on one core
                t0 = time.thread_time()
                net.score_rows([row])
                net_s.append(time.thread_time() - t0)
        c = med(cpu_s)
        n = med(net_s) if net_s else None
        res[label] = {"cpu_stage_s": c, "network_cpu_s": n, "tokens": tokens}
        net_text = f"{1000 * n:.0f}" if n is not None else f"not run (> {MAX_CPU_TOKENS} tokens)"
        rows.append([label, str(tokens), f"{1000 * c:.0f}", f"{1 / c:.1f}", net_text])
    table(["photo", "tokens", "CPU stage ms (read+hash+decode+EXIF+tokenize)", "photos/s per CPU worker",
           "network ms (CPU, 1 thread)"], rows)  # fmt: skip
    print()
    one, big = res["1 MP JPEG"]["cpu_stage_s"], res["24 MP JPEG, default (max1024)"]["cpu_stage_s"]
    native = res["24 MP JPEG, --max-side 0 (native)"]["cpu_stage_s"]
    print("CPU workers a GPU needs to stay busy = (GPU images/s) x (CPU stage seconds per photo):\n")
    table(["GPU network images/s", "1 MP photos", "24 MP (default)", "24 MP (native)"],
          [[str(r), str(math.ceil(r * one)), str(math.ceil(r * big)), str(math.ceil(r * native))]
           for r in (100, 300, 1000)])  # fmt: skip
    print("\n(no GPU in this run: the GPU rates are examples, not measurements)\n")
    return res


def section_e2e(work: Path, checkpoint: Path, photos: list[Path], repeats: int) -> dict:
    n = len(photos)
    print(f"## 2. End to end on {n} photos of ~1 MP, {os.cpu_count()} CPUs, wall time of the whole command\n")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "CHARM_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    model = ["--checkpoint", str(checkpoint), "--pos-embed", str(POS), "--device", "cpu"]
    local_s, cluster_s = [], []
    for r in range(repeats):
        db, out = work / f"bench-{r}.db", work / f"out-{r}"
        shutil.rmtree(out, ignore_errors=True)
        db.unlink(missing_ok=True)
        wall, done = charm("score", str(photos[0].parent), *model, "--db", str(db), "--quiet", env=env)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        local_s.append(wall)
        wall, done = charm("cluster", "score", str(photos[0].parent), "-o", str(out), *model, "--json", env=env)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        summary = json.loads(done.stdout)
        assert summary["scored"] == n, summary
        cluster_s.append(wall)
        print(f"- repeat {r + 1}: charm score {wall_fmt(local_s[-1])}, charm cluster score {wall_fmt(wall)} "
              f"({summary['cpu_workers']} CPU + {summary['gpu_workers']} network workers)")  # fmt: skip
    print()
    a, b = med(local_s), med(cluster_s)
    table(["command", "wall s (median)", "images/s", "speed vs charm score"],
          [["charm score", f"{a:.1f}", f"{n / a:.2f}", "1.00x"],
           ["charm cluster score (local Ray)", f"{b:.1f}", f"{n / b:.2f}", f"{a / b:.2f}x"]])  # fmt: skip
    print()
    return {"charm_score_s": a, "cluster_s": b, "images": n, "ratio": a / b}


def wall_fmt(s: float) -> str:
    return f"{s:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end repeats (each starts Ray)")
    parser.add_argument("--stage-repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--skip-stage", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="charm-cluster-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CHARM_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    checkpoint = build_checkpoint(work / "aadb_full12_random.pth", dim=384, depth=12, heads=6,
                                  num_classes=1, dataset="aadb")  # fmt: skip
    photos = make_e2e_images(work / f"photos-{args.images}", args.images)  # a folder of exactly these
    print(f"# charm cluster benchmark ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, work dir {work})\n")
    results = {}
    if not args.skip_stage:
        results["cpu_stage"] = section_cpu_stage(work, checkpoint, photos[0], args.stage_repeats)
    if not args.skip_e2e:
        results["e2e"] = section_e2e(work, checkpoint, photos, args.repeats)
    (work / "cluster_bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
