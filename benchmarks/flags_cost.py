"""What the technical measures cost next to scoring one photo at the default settings.

    python benchmarks/flags_cost.py [--repeats 3] [--workdir DIR]

Per photo, in one process and interleaved (the machine may be shared, so every stage of a photo
is timed in the same round): decode as ``charm score`` does by default (≤ 1024 px), the Charm
model's ``prepare`` + ``score_prepared`` (random-weight full-depth DINOv2-small aadb checkpoint
in the official format, as ``bench.py`` builds it; random weights cost the same as trained ones),
then :func:`charmcli.library.measures.measure` and the face pass. Prints medians per stage and
the share the measures add to the per-photo time.

Then end to end: ``charm score``'s pipeline (default settings: decode pool, batches, SQLite) on
the same photos into a fresh database, alternately with the measures and with them switched off
(``charmcli.work.measure_photo`` replaced by a no-op), rounds interleaved; and a cached re-run.
Only the work directory is written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bench import POS, build_checkpoint  # noqa: E402

from charmcli.library import faces  # noqa: E402
from charmcli.library.decode import load_image  # noqa: E402
from charmcli.library.measures import measure  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
FILES = [
    "unsplash-rachel-hisko-rEM3cK8F1pk.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Kodak PIXPRO S-1.jpg",
    "jolla.jpg",
    "DSCN0010.jpg",
    "FujiFilm DS-7 (1).jpg",
]


def cpu() -> str:
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = sorted(
        flags & {"amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx_vnni", "avx512f", "avx2"}
    )
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(shown)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="charm-flags-cost-"))
    work.mkdir(parents=True, exist_ok=True)

    import torch

    from charmcli.model import Scorer

    checkpoint = build_checkpoint(
        work / "aadb_full12_random.pth", dim=384, depth=12, heads=6, num_classes=1, dataset="aadb"
    )
    scorer = Scorer.from_files(checkpoint, POS, device="cpu")
    paths = [PHOTOS / f for f in FILES if (PHOTOS / f).is_file()]
    stages = ("decode", "score", "measures", "faces")
    times: dict[str, list[float]] = {s: [] for s in stages}
    for _ in range(args.repeats):
        for path in paths:
            t0 = time.perf_counter()
            image = load_image(path).image
            t1 = time.perf_counter()
            scorer.score_prepared([scorer.prepare(image)])
            t2 = time.perf_counter()
            measure(image)
            t3 = time.perf_counter()
            faces.detect(image)
            t4 = time.perf_counter()
            for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[stage].append(seconds)

    med = {s: statistics.median(v) for s, v in times.items()}
    base = med["decode"] + med["score"]
    print("# Cost of the technical measures per photo")
    print()
    print(f"- CPU: {cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"- {len(paths)} photos of shared/photos (0.08 to 24 MP), {args.repeats} interleaved rounds; "
          f"faces: {faces.detector_version()}")  # fmt: skip
    print()
    print("| stage | median s/photo | share of decode + score |")
    print("| --- | ---: | ---: |")
    for stage in stages:
        print(f"| {stage} | {med[stage]:.3f} | {med[stage] / base:.1%} |")
    added = med["measures"] + med["faces"]
    print(f"| **measures + faces** | **{added:.3f}** | **{added / base:.1%}** |")
    print()
    end_to_end(work, checkpoint, paths, args.repeats)
    print()
    print("Budget: at most 15 % of the per-photo time of `charm score` at the default settings.")


def end_to_end(work: Path, checkpoint: Path, paths: list[Path], repeats: int) -> None:
    """Wall time of the scoring pipeline with and without the measures, interleaved, plus a re-run."""
    import shutil

    import charmcli.work as unit
    from charmcli.pipeline import Pipeline
    from charmcli.store import Store
    from charmcli.work import ScoreOptions

    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    for p in paths:
        if not (folder / p.name).exists():
            shutil.copy2(p, folder / p.name)
    options = ScoreOptions(checkpoint=checkpoint, pos_embed=POS, device="cpu")
    real = unit.measure_photo

    def run(measured: bool, db: Path) -> float:
        unit.measure_photo = real if measured else (lambda image: None)
        try:
            with Store(db) as store:
                start = time.perf_counter()
                events = list(Pipeline(store, options).run([folder]))
                seconds = time.perf_counter() - start
        finally:
            unit.measure_photo = real
        assert all(e.status in ("scored", "cached") for e in events), [e.error for e in events]
        return seconds

    walls: dict[bool, list[float]] = {True: [], False: []}
    rerun: list[float] = []
    for r in range(repeats):
        for measured in (r % 2 == 0, r % 2 != 0):  # alternate which goes first
            db = work / f"e2e-{r}-{int(measured)}.db"
            db.unlink(missing_ok=True)
            walls[measured].append(run(measured, db))
            if measured:
                rerun.append(run(True, db))
    with_m, without = statistics.median(walls[True]), statistics.median(walls[False])
    n = len(paths)
    print("### End to end: `charm score` pipeline, default settings, fresh database")
    print()
    print("| run | median s | s/photo |")
    print("| --- | ---: | ---: |")
    print(f"| without measures | {without:.2f} | {without / n:.3f} |")
    print(f"| with measures | {with_m:.2f} | {with_m / n:.3f} |")
    print(f"| **added by the measures** | **{with_m - without:+.2f}** | **{(with_m - without) / without:+.1%}** |")
    print(f"| cached re-run (measures stored) | {statistics.median(rerun):.3f} | {statistics.median(rerun) / n:.4f} |")


if __name__ == "__main__":
    main()
