"""Per-photo time of EAT and of a three-model run against single-model runs (issue 13).

    python benchmarks/bench_models.py [--photos 6] [--repeats 3] [--large] [--workdir DIR]

Same photos, same process, same run: ~1 MP JPEGs (benchmarks/bench.py's end-to-end set) scored
by charm's pipeline at default settings (decode pool, batch of one on CPU, SQLite store) with

* ``aadb`` alone: a full-size (12-layer DINOv2-small) Charm model, random weights, served from
  an offline hub cache in the work directory;
* ``eat-ava`` alone and ``eat-tad66k`` alone: full-size ``dat_base`` EAT networks (87 M
  parameters), random weights, from the models folder under the authors' file names;
* all three in one pass (``--model aadb --model eat-ava --model eat-tad66k``): one read and one
  decode per photo, one prepare per distinct preprocessing.

Models are loaded once, before timing; each timed run scores every photo into a fresh database.
Medians of interleaved repeats (the machine may be shared). The ratio that matters is the last
column: the three-model run against the sum of the three single runs (below 1.0 = the shared
read/decode pays off). Scores of the three-model run are checked against the single runs.
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
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
SHARED = REPO.parent / "shared"
POS = SHARED / "conformance" / "dino_small_pos.pt"


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def setup(work: Path) -> None:
    """Offline hub cache with a full-size random aadb; models folder with dat_base EAT files."""
    import torch
    from bench import build_checkpoint

    from charmcli.model.eat.network import DatConfig, EatNet
    from charmcli.model.registry import HUB_REPO, MODELS

    repo = work / "hf" / "hub" / ("models--" + HUB_REPO.replace("/", "--"))
    rev = "0" * 40
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    build_checkpoint(snap / "aadb_charm.pth", dim=384, depth=12, heads=6, num_classes=1, dataset="aadb")
    if not (snap / "dino_small_pos.pt").exists():
        (snap / "dino_small_pos.pt").symlink_to(POS)
    models = work / "models"
    models.mkdir(exist_ok=True)
    for name, classes in (("eat-ava", 10), ("eat-tad66k", 1)):
        path = models / MODELS[name].filename
        if not path.exists():
            torch.manual_seed(0)
            torch.save(EatNet(DatConfig(num_classes=classes)).state_dict(), path)
    os.environ.update(HF_HOME=str(work / "hf"), HF_HUB_OFFLINE="1", CHARM_MODELS_DIR=str(models),
                      CHARM_CACHE_DIR=str(work / "converted"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--large", action="store_true",
                        help="24 MP JPEGs (distinct copies of one photo) instead of ~1 MP: decoding weighs more")  # fmt: skip
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="charm-bench-models-"))
    work.mkdir(parents=True, exist_ok=True)
    setup(work)

    import torch
    from bench import make_e2e_images

    from charmcli.pipeline import Pipeline
    from charmcli.store import Store
    from charmcli.work import ScoreOptions

    if args.large:
        from bench import BIG, distinct_copy

        (work / "large").mkdir(exist_ok=True)
        photos = [distinct_copy(BIG, work / "large" / f"big_{i:02d}.jpg", i) for i in range(args.photos)]
    else:
        photos = make_e2e_images(work / "photos", args.photos)
    configs = {"aadb": ["aadb"], "eat-ava": ["eat-ava"], "eat-tad66k": ["eat-tad66k"],
               "aadb + eat-ava + eat-tad66k": ["aadb", "eat-ava", "eat-tad66k"]}  # fmt: skip
    loaded = {}
    for label, models in configs.items():  # load every model once, outside the timing
        for stale in work.glob(f"warm-{len(loaded)}.db*"):
            stale.unlink()
        with Store(work / f"warm-{len(loaded)}.db") as store:
            pipe = Pipeline(store, ScoreOptions(models=models, model=models[0], model_given=True, device="cpu"))
            list(pipe.run(photos[:1]))
            loaded[label] = pipe.models
    times: dict[str, list[float]] = {label: [] for label in configs}
    network: dict[str, list[float]] = {label: [] for label in configs}
    decodes: dict[str, list[float]] = {label: [] for label in configs}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for r in range(args.repeats):
        for label, models in configs.items():
            db = work / f"run-{r}-{label.replace(' ', '').replace('+', '_')}.db"
            for stale in work.glob(db.name + "*"):  # a fresh database every run
                stale.unlink()
            with Store(db) as store:
                pipe = Pipeline(store, ScoreOptions(models=models, model=models[0], model_given=True, device="cpu"))
                for handle in loaded[label]:  # the loaded models, bound to this run's store
                    handle.store = store
                pipe.models, pipe.model = loaded[label], loaded[label][0]
                start = time.perf_counter()  # the walk (stat only) is timed too
                events = list(pipe.run(photos))
                times[label].append((time.perf_counter() - start) / len(photos))
                network[label].append(pipe.profile.seconds.get("network", 0.0) / len(photos))
                decodes[label].append(pipe.profile.seconds.get("decode", 0.0) / len(photos))
            assert all(e.status == "scored" for e in events), [e.error for e in events]
            scores[label] = {e.path: e.scores for e in events}
    med = {label: statistics.median(v) for label, v in times.items()}
    singles = sum(med[m] for m in ("aadb", "eat-ava", "eat-tad66k"))
    kind = "24 MP JPEG" if args.large else "~1 MP JPEG"
    print(f"{len(photos)} photos ({kind}), {args.repeats} interleaved repeats, {torch.get_num_threads()} threads, "
          f"CPU, batch of one\n")  # fmt: skip
    rows = []
    for label in configs:
        vs_sum = f"{med[label] / singles:.2f}" if "+" in label else ""
        rows.append([label, f"{med[label]:.3f}", f"{statistics.median(network[label]):.3f}",
                     f"{med[label] / med['aadb']:.2f}", vs_sum])  # fmt: skip
    table(["models", "s/photo", "network s/photo", "vs aadb alone", "vs sum of single runs"], rows)
    decode = {label: statistics.median(v) for label, v in decodes.items()}
    print("\ndecode s/photo (summed over threads): "
          + ", ".join(f"{label} {decode[label]:.3f}" for label in configs))  # fmt: skip
    multi = scores["aadb + eat-ava + eat-tad66k"]
    worst = max(abs(multi[p][m] - scores[m][p][m]) for m in ("aadb", "eat-ava", "eat-tad66k") for p in multi)
    print(f"\nmax |score(three-model run) - score(single run)| = {worst:.1e}")


if __name__ == "__main__":
    main()
