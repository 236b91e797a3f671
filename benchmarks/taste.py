"""How well ``charm learn`` picks up a photographer's taste: simulated photographers, real code path.

    python benchmarks/taste.py [--variants 30] [--draws 3] [--workdir DIR]

1. **Photos**: every photo in ../shared/photos that Pillow opens, each turned into ``--variants``
   edited copies (colour temperature, brightness, contrast, saturation, crop, mirror; random
   amounts), saved as 384-px JPEGs in a temp folder.
2. **Features**: ``charm score`` on that folder with the small random-weight conformance
   checkpoint (2 layers, ../shared/conformance): the scores and features are those of the real
   pipeline, but random weights, so the *generic* score means nothing here.
3. **Photographers** whose stars follow a rule measured on each photo's pixels (warm & bright,
   cool & dark, high contrast, muted colours, fond of some scenes), plus noise: a photographer
   is not perfectly consistent. The bottom 5 % are rejects.
4. For each photographer, draw and size (20, 50, 200 ratings): the rated photos get **real XMP
   sidecars** (the writer ``charm rate`` and the desk use), then ``charm learn`` and
   ``charm top --taste --json`` run in-process through the CLI; the taste's Spearman against the
   rule is measured on the photos that were **not** rated, next to the generic score's.
5. Learning time at 10,000 ratings (``fit_taste`` on random features of the stored width).

With the published weights and real photographers the numbers will differ: what a 12-layer
DINOv2 sees is not what 2 random layers see, and real taste is not a pixel rule. PARA's per-user
labels (438 raters) and FLICKR-AES (210 workers) are how the literature measures that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from charmcli.cli import app  # noqa: E402
from charmcli.cull.xmp import update_sidecar  # noqa: E402
from charmcli.taste.fit import fit_taste, spearman  # noqa: E402

SIZES = (20, 50, 200)
SIDE = 384
#: Star cut points on the photographer's inner score (percentiles): reject | 1 | 2 | 3 | 4 | 5.
CUTS = (5, 15, 40, 70, 90)
NOISE = 0.5  #: inconsistency, in units of the rule's standard deviation


def cpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = [f for f in info.get("Flags", "").split() if f.startswith(("amx", "avx512_bf16", "avx512_fp16", "avx_vnni"))]
    return f"{info.get('Model name', '?').strip()} (model {info.get('Model', '?').strip()}), " \
           f"{os.cpu_count()} CPUs, flags {' '.join(flags) or 'none of amx/avx512_bf16/avx_vnni'}"


def base_photos() -> list[Image.Image]:
    out = []
    for path in sorted((SHARED / "photos").iterdir()):
        if path.is_dir() or path.suffix.lower() in (".tsv", ".md"):
            continue
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((2 * SIDE, 2 * SIDE))
                out.append(im.copy())
        except Exception:  # a file Pillow cannot open is simply not a base photo
            continue
    return out


def variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One edited copy: crop, mirror, temperature, saturation, contrast, brightness."""
    w, h = image.size
    keep = rng.uniform(0.6, 1.0)
    cw, ch = int(w * keep), int(h * keep)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = image.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    a = np.asarray(im, dtype=np.float64) / 255.0
    t, s, c, b = rng.uniform(-1, 1, 4)
    a[..., 0] *= 1 + 0.2 * t
    a[..., 2] *= 1 - 0.2 * t
    grey = a.mean(axis=-1, keepdims=True)
    a = grey + (a - grey) * (1 + 0.6 * s)
    m = a.mean()
    a = m + (a - m) * (1 + 0.5 * c)
    a = a * (1 + 0.35 * b)
    out = Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    out.thumbnail((SIDE, SIDE))
    return out


def measures(path: Path) -> dict[str, float]:
    """What the rules look at, measured on the file as saved."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    luma = a @ np.array([0.299, 0.587, 0.114])
    return {"warmth": float((a[..., 0] - a[..., 2]).mean()), "brightness": float(luma.mean()),
            "contrast": float(luma.std()), "saturation": float((a.max(-1) - a.min(-1)).mean())}  # fmt: skip


def z(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() or 1.0)


def photographers(m: dict[str, np.ndarray], bases: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    liked = rng.permutation(bases.max() + 1)[: (bases.max() + 1) // 2]
    return {
        "warm & bright": z(z(m["warmth"]) + z(m["brightness"])),
        "cool & dark": z(-z(m["warmth"]) - z(m["brightness"])),
        "high contrast": z(m["contrast"]),
        "muted colours": z(-m["saturation"]),
        "fond of scenes": z(z(np.isin(bases, liked).astype(float)) + 0.5 * z(m["brightness"])),
    }


def stars_for(rule: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    inner = rule + rng.normal(0, NOISE, rule.size)
    cuts = np.percentile(inner, CUTS)
    stars = np.searchsorted(cuts, inner, side="right")  # 0 = reject, 1..5
    return np.where(stars == 0, -1, stars)


def invoke(*args: object, db: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"CHARM_DB": str(db)}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=30, help="edited copies per base photo")
    parser.add_argument("--draws", type=int, default=3, help="random draws of the rated photos per size")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="charm-taste-"))
    folder, db = work / "photos", work / "charm.db"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2025)
    started = time.perf_counter()
    bases = base_photos()
    paths, base_of = [], []
    for bi, image in enumerate(bases):
        for vi in range(args.variants):
            path = folder / f"b{bi:02d}_v{vi:03d}.jpg"
            if not path.exists():
                variant(image, rng).save(path, "JPEG", quality=90)
            paths.append(path)
            base_of.append(bi)
    made = time.perf_counter() - started
    ckpt, pos = SHARED / "conformance" / "checkpoints" / "aadb_charm.pth", SHARED / "conformance" / "dino_small_pos.pt"
    t0 = time.perf_counter()
    code, _out, err = invoke("score", folder, "--checkpoint", ckpt, "--pos-embed", pos, "--device", "cpu", "--quiet", db=db)
    if code != 0:
        sys.exit(f"charm score failed ({code}): {err.strip()[-500:]}")
    scored = time.perf_counter() - t0
    m = {k: np.array([v[k] for v in map(measures, paths)]) for k in ("warmth", "brightness", "contrast", "saturation")}
    rules = photographers(m, np.array(base_of), rng)
    n_all = len(paths)
    code, out, err = invoke("top", n_all, folder, "--json", db=db)
    generic = {r["path"]: r["score"] for r in json.loads(out)}
    print(f"# charm learn on simulated photographers · {cpu()}")
    print(f"{len(bases)} base photos x {args.variants} variants = {n_all} photos (made in {made:.0f} s, "
          f"scored in {scored:.0f} s) · {args.draws} draws · noise {NOISE} · stars cut at {CUTS} percentiles")  # fmt: skip
    results: dict[tuple[str, int], list[tuple[float, float, float, str]]] = {}
    learn_seconds: list[float] = []
    for who, rule in rules.items():
        for draw in range(args.draws):
            drng = np.random.default_rng(1000 + draw)
            stars = stars_for(rule, drng)
            order = drng.permutation(n_all)
            pool, test = order[: max(SIZES)], order[max(SIZES) :]
            if len(test) < 100:
                sys.exit(f"{n_all} photos leave {len(test)} unrated ones to measure on; raise --variants")
            for n in SIZES:
                for side in folder.glob("*.xmp"):
                    side.unlink()
                for i in pool[:n]:
                    update_sidecar(paths[i], rating=int(stars[i]))
                t = time.perf_counter()
                code, out, err = invoke("learn", folder, "--name", "bench", "--json", db=db)
                learn_seconds.append(time.perf_counter() - t)
                if code != 0:
                    print(f"  {who} n={n} draw {draw}: learn exit {code}: {err.strip()}")
                    continue
                report = json.loads(out)
                code, out, err = invoke("top", n_all, folder, "--taste", "--name", "bench", "--json", db=db)
                taste = {r["path"]: r["taste"] for r in json.loads(out)}
                tp = [str(paths[i]) for i in test]
                rho_taste = spearman(np.array([taste[p] for p in tp], float), rule[test])
                rho_generic = spearman(np.array([generic[p] for p in tp], float), rule[test])
                results.setdefault((who, n), []).append((rho_taste, rho_generic, report["taste"]["spearman"],
                                                         report["method"]))  # fmt: skip
    print()
    print("Spearman with the photographer's rule on the photos that were not rated "
          f"(mean ± sd over {args.draws} draws)")
    print(f"{'photographer':<16}{'ratings':>8}{'taste':>14}{'generic':>14}{'learn CV':>10}  method")
    for (who, n), rows in results.items():
        t, g, cv, meth = zip(*rows, strict=True)
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        methods = "/".join(sorted(set(meth)))
        print(f"{who:<16}{n:>8}{statistics.mean(t):>9.2f} ± {sd(t):.2f}{statistics.mean(g):>9.2f} ± {sd(g):.2f}"
              f"{statistics.mean(cv):>10.2f}  {methods}")  # fmt: skip
    print(f"\n`charm learn` wall time through the CLI (≤ 200 ratings, {n_all} photos selected): "
          f"median {statistics.median(learn_seconds):.2f} s, max {max(learn_seconds):.2f} s")
    print("\nLearning time, fit_taste on random features (ridge alone past 500 ratings):")
    frng = np.random.default_rng(7)
    for n, width in ((10_000, 770), (10_000, 1538)):
        X = frng.normal(size=(n, width)).astype(np.float32)
        y = np.clip(np.round(3 + X[:, :5].sum(1) / 2), 1, 5).astype(int)
        t = time.perf_counter()
        fit = fit_taste(X, y, layout=[("f", width)], free=[width - 1])
        print(f"  {n} ratings x {width} features: {time.perf_counter() - t:.1f} s "
              f"(kept {fit.model.method}, model {len(fit.model.to_bytes()) / 1024:.1f} KiB)")
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
