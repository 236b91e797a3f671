"""EAT: how much the official batch-mean reference points move scores, and how often the
sign-threshold offset scaling flips between thread counts (issue 13).

    python benchmarks/eat_batch_ties.py [--threads 1 2 4] [--no-base]

1. **Batch dependence.** The official code averages EAT's learned reference map over the batch,
   so an image's output depends on its batch neighbours. On the fixture inputs (the official
   preprocessing of six shared photos) and on every decodable photo of ``shared/photos`` in one
   batch of 16 (the official evaluation batch size), it prints |score(batched) - score(alone)|
   with the official batch mean, and with charm's per-image reference maps.
2. **Sign-threshold ties across thread counts.** Each image alone, with 1, 2, 4 threads: the
   number of keep/damp decisions (one per deformable block, group and map position), how many
   differ from the 2-thread run (the fixtures' setting), the smallest |offset| and |reference|
   that decided one, and the largest score change between thread counts. For the fixture
   checkpoints and, unless ``--no-base``, a dat_base network with random weights (seed 0).

Scores are on charm's scale (TAD66K x 10). Only reads the repository and ../shared.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
EAT = SHARED / "eat_conformance"
PHOTOS = SHARED / "photos"

from charmcli.library.decode import DecodeError, load_image  # noqa: E402
from charmcli.model.eat.checkpoint import load_arch_config, load_eat  # noqa: E402
from charmcli.model.eat.network import DatConfig, EatNet  # noqa: E402
from charmcli.model.eat.preprocess import EatPreprocess  # noqa: E402
from charmcli.model.registry import get_spec  # noqa: E402


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def scores(net: EatNet, model: str, x: torch.Tensor, *, batch_mean: bool) -> np.ndarray:
    with torch.inference_mode():
        logits, _ = net(x, batch_mean_reference=batch_mean)
    return get_spec(model).to_score(logits).numpy().astype(np.float64)


def alone(net: EatNet, model: str, x: torch.Tensor) -> np.ndarray:
    return np.concatenate([scores(net, model, x[i : i + 1], batch_mean=False) for i in range(x.shape[0])])


def library_photos(limit: int = 16) -> list[Path]:
    found = []
    for path in sorted(PHOTOS.rglob("*")):
        if path.is_file() and "bad" not in path.parts and path.suffix.lower() not in {".md", ".tsv"}:
            found.append(path)
    return found[: limit * 2]


def decisions(net: EatNet, x: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per deformable block: keep/damp decision, |offset| and |reference| (each image alone)."""
    trace: dict = {}
    with torch.inference_mode():
        net(x, trace=trace)
    keep, off_abs, ref_abs = {}, {}, {}
    for key in trace:
        if key.endswith(".offset"):
            block = key[: -len(".offset")]
            off, ref = trace[key], trace[block + ".ref"]
            keep[block] = ((off * ref) > 0).all(dim=-1).numpy()
            off_abs[block], ref_abs[block] = off.abs().numpy(), ref.abs().numpy()
    return keep, off_abs, ref_abs


def tie_stats(net: EatNet, model: str, xs: torch.Tensor, threads: list[int]) -> list[str]:
    base_threads = 2 if 2 in threads else threads[0]
    runs = {}
    for t in threads:
        torch.set_num_threads(t)
        runs[t] = [(decisions(net, xs[i : i + 1]), alone(net, model, xs[i : i + 1])[0]) for i in range(xs.shape[0])]
    n_dec = sum(v.size for v in runs[base_threads][0][0][0].values()) * xs.shape[0]
    flips = {t: 0 for t in threads}
    min_off, min_ref = np.inf, np.inf
    dscore = 0.0
    for i in range(xs.shape[0]):
        (keep0, off0, ref0), s0 = runs[base_threads][i]
        for block in keep0:
            # the decision hinges on the smaller of the four magnitudes at each point
            min_off = min(min_off, float(off0[block].min()))
            min_ref = min(min_ref, float(ref0[block].min()))
        for t in threads:
            (keep, _, _), s = runs[t][i]
            flips[t] += sum(int((keep[b] != keep0[b]).sum()) for b in keep0)
            dscore = max(dscore, abs(s - s0))
    torch.set_num_threads(base_threads)
    flip_text = ", ".join(f"{t} thr: {flips[t]}" for t in threads if t != base_threads)
    return [str(n_dec), flip_text, f"{min_off:.1e}", f"{min_ref:.1e}", f"{dscore:.1e}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-base", action="store_true", help="skip the dat_base random-weight network")
    args = parser.parse_args()
    torch.set_num_threads(2)
    summary = json.loads((EAT / "summary.json").read_text())
    nets = []
    for v in summary["variants"]:
        cfg = load_arch_config(EAT / v["config"], v["outputs_per_image"])
        net, _ = load_eat(EAT / v["checkpoint"], cfg, v["model"])
        nets.append((v["name"], v["model"], net, torch.from_numpy(np.load(EAT / v["arrays"])["inputs"])))

    print("## Batch dependence (|score in batch - score alone|, charm's scale)\n")
    rows = []
    lib = library_photos()
    for name, model, net, x6 in nets:
        pre = EatPreprocess(get_spec(model).resample)
        xl = []
        for path in lib:
            try:
                xl.append(pre(load_image(path, exact=True).image))
            except DecodeError:
                continue
            if len(xl) == 16:
                break
        xlib = torch.stack(xl)
        for label, x in ((f"fixtures, batch of {x6.shape[0]}", x6), (f"shared/photos, batch of {xlib.shape[0]}", xlib)):
            solo = alone(net, model, x)
            official = np.abs(scores(net, model, x, batch_mean=True) - solo)
            ours = np.abs(scores(net, model, x, batch_mean=False) - solo)
            spread = float(solo.max() - solo.min())
            rows.append([name, label, f"{official.max():.3g}", f"{np.median(official):.3g}", f"{spread:.3g}",
                         f"{ours.max():.1e}"])  # fmt: skip
    table(["checkpoint", "images", "official max", "official median", "score range alone", "charm max"], rows)

    print(f"\n## Sign-threshold decisions across thread counts (each image alone; vs {2 if 2 in args.threads else args.threads[0]} threads)\n")
    rows = []
    for name, model, net, x6 in nets:
        rows.append([name, *tie_stats(net, model, x6, args.threads)])
    if not args.no_base:
        torch.manual_seed(0)
        base = EatNet(DatConfig(num_classes=10)).eval()
        with torch.no_grad():  # the zero-initialised bias tables get random values too
            for p in base.parameters():
                if p.abs().sum() == 0:
                    p.normal_(0, 0.02)
        rows.append(["dat_base (random, seed 0)", *tie_stats(base, "eat-ava", nets[0][3], args.threads)])
    table(["network", "decisions", "flips", "min |offset|", "min |reference|", "max |Δscore| across threads"], rows)


if __name__ == "__main__":
    main()
