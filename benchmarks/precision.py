"""The network's number formats: speed, fidelity against fp32, and end to end against the official pipeline.

Run with charm's environment (the official pipeline, if given, runs in its own environment as
in ``bench.py``)::

    python benchmarks/precision.py [--official-python /work/offenv/bin/python] [--workdir DIR]

One run prints, on the same photos and the same random full-depth (12-layer) DINOv2-small aadb
checkpoint (``tests/official_format.py``):

1. network time of one ~1 MP photo (1,228 tokens) for every variant: fp32 as on main (timm
   blocks, eager), the fp32 candidates for the exact path, and the reduced-precision variants
   (bf16 of the whole network, ``torch.autocast``, charm's bf16 with LayerNorm / residual / head
   in fp32, int8 dynamic quantisation of the Linears). Runs are interleaved (A B C A B C …) and
   each cell gives the minimum and the median; ratios are against fp32 in the same run;
2. fidelity of each reduced variant against fp32 on every photo in ``shared/photos`` and the
   conformance images plus generated crops: Spearman, max |Δ| relative to the spread of the
   fp32 scores, top-10 % overlap; for the 12-layer checkpoint and the two small conformance
   checkpoints (aadb: sigmoid head, para: softmax head);
3. end to end (``charm score``'s pipeline, model load excluded) against the official pipeline on
   ~1 MP JPEGs: default settings at fp32 / bf16 and ``--exact`` (official decode, fp32).

The CPU model, its relevant flags and the load average are printed with every table: the
machine may be shared, so only ratios measured in the same run mean anything.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (the fixtures and the official worker are shared with bench.py)
from bench import POS, REPO, SHARED, build_checkpoint, make_e2e_images, med, out, table  # noqa: E402

PHOTOS = SHARED / "photos"
CONFORMANCE = SHARED / "conformance"
KEY_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8")  # fmt: skip


# -- the machine ---------------------------------------------------------------------------------


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """``lscpu``'s model name and flags (``/proc/cpuinfo`` where there is no lscpu)."""
    model, flags = platform.processor() or "unknown", []
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "model name"):
            model = value.strip()
        elif key.strip() in ("Flags", "flags") and not flags:
            flags = value.split()
    cpu_model = ""
    for line in text.splitlines():
        if line.strip().startswith("Model:"):
            cpu_model = line.split(":", 1)[1].strip()
    return f"{model} (model {cpu_model})" if cpu_model else model, flags


def machine_line() -> str:
    model, flags = cpu_model_and_flags()
    have = [f for f in KEY_FLAGS if f in flags]
    missing = [f for f in KEY_FLAGS if f not in flags]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"CPU: {model}, {os.cpu_count()} CPUs; has {' '.join(have) or '-'}; lacks {' '.join(missing) or '-'}; "
            f"load average {load}")  # fmt: skip


# -- inputs --------------------------------------------------------------------------------------


def photo_set(n_generated: int, seed: int = 0) -> list[tuple[str, object]]:
    """Every photo charm can decode in shared/photos (default policy) and the conformance images,
    plus ``n_generated`` random crops of them resized to 256–1024 px (seeded)."""
    import numpy as np
    from PIL import Image

    from charmcli.library.decode import DecodeError, load_image

    files = sorted(p for p in PHOTOS.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".tsv"))
    files += sorted((CONFORMANCE / "images").iterdir())
    images: list[tuple[str, object]] = []
    for path in files:
        with contextlib.suppress(DecodeError):  # the broken files of photos/bad
            images.append((str(path.relative_to(SHARED)), load_image(path).image))
    rng = np.random.default_rng(seed)
    real = [im for _, im in images]
    for i in range(n_generated):
        im = real[i % len(real)]
        w, h = im.size
        s = rng.uniform(0.35, 0.9)
        cw, ch = max(28, int(w * s)), max(28, int(h * s))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        tw = int(rng.integers(256, 1025))
        th = min(1024, max(64, tw * ch // cw))
        crop = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((tw, th), Image.Resampling.BICUBIC)
        images.append((f"generated {i}", crop))
    return images


# -- the variants --------------------------------------------------------------------------------


CACHE: list[Path] = []  # main() puts the work dir's cache here: never beside a shared checkpoint


def work_cache(checkpoint: Path) -> Path:
    return CACHE[0] / checkpoint.stem


def build_variants(checkpoint: Path, names: list[str]) -> tuple[object, dict[str, Callable]]:
    """name -> function(tokenized) -> score, all from one checkpoint; plus the fp32 scorer."""
    import torch

    from charmcli.model import Scorer

    fp32 = Scorer.from_files(checkpoint, POS, device="cpu", precision="fp32", cache_dir=work_cache(checkpoint))
    net = fp32.network

    def args(t, dtype=None):
        tok, pos = t.tokens[None], t.pos_embed[None]
        if dtype is not None:
            tok, pos = tok.to(dtype), pos.to(dtype)
        return tok, pos, t.scale_ids[None]

    def score_of(scorer_like, logits) -> float:
        return float(fp32.to_score(net.activate(logits.float()))[0])

    from charmcli.model.charm.checkpoint import load_checkpoint
    from charmcli.model.charm.network import CharmViT

    state, cfg, _digest = load_checkpoint(checkpoint, work_cache(checkpoint))
    before = CharmViT(cfg)
    before.load_state_dict(state, strict=True)
    before.eval().requires_grad_(False)  # as loaded, no set_precision(): timm's blocks, eager

    variants: dict[str, Callable] = {}
    for name in names:
        if name == "fp32":
            variants[name] = lambda t: score_of(fp32, net(*args(t))[0])
        elif name == "fp32 before (timm blocks)":
            variants[name] = lambda t, b=before: score_of(fp32, b(*args(t))[0])
        elif name == "fp32 before, SDPA math kernel":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def run(t, b=before):
                with sdpa_kernel([SDPBackend.MATH]):
                    return score_of(fp32, b(*args(t))[0])

            variants[name] = run
        elif name == "fp32 before, torch.compile":
            compiled = torch.compile(before, dynamic=True)
            variants[name] = lambda t, c=compiled: score_of(fp32, c(*args(t))[0])
        elif name == "bf16 whole network":
            whole = copy.deepcopy(before).to(torch.bfloat16)
            variants[name] = lambda t, w=whole: score_of(fp32, w(*args(t, torch.bfloat16))[0])
        elif name == "bf16 autocast":

            def run(t, b=before):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return score_of(fp32, b(*args(t))[0])

            variants[name] = run
        elif name == "bf16 charm (LN, residual, head fp32)":
            bf = Scorer.from_files(checkpoint, POS, device="cpu", precision="bf16", cache_dir=work_cache(checkpoint))
            variants[name] = lambda t, n=bf.network: score_of(fp32, n(*args(t))[0])
        elif name == "int8 dynamic (Linear)":
            from torch.ao.quantization import quantize_dynamic

            q = quantize_dynamic(copy.deepcopy(before), {torch.nn.Linear}, dtype=torch.qint8)
            variants[name] = lambda t, q=q: score_of(fp32, q(*args(t))[0])
        else:
            raise ValueError(name)
    return fp32, variants


TIMED = ["fp32 before (timm blocks)", "fp32", "fp32 before, SDPA math kernel", "fp32 before, torch.compile",
         "bf16 whole network", "bf16 autocast", "bf16 charm (LN, residual, head fp32)",
         "int8 dynamic (Linear)"]  # fmt: skip
REDUCED = ["bf16 whole network", "bf16 autocast", "bf16 charm (LN, residual, head fp32)", "int8 dynamic (Linear)"]


def section_network(work: Path, checkpoint: Path, names: list[str], repeats: int) -> dict:
    import torch

    photo = make_e2e_images(work / "e2e", 1)[0]
    from charmcli.library.decode import load_image

    out(f"## 1. Network time, one photo ({photo.name}), batch of one, {torch.get_num_threads()} threads")
    out()
    out(f"- {machine_line()}")
    fp32, variants = build_variants(checkpoint, names)
    t = fp32.prepare(load_image(photo).image)
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for name in names:  # first call: compile / warm-up, timed apart
            t0 = time.perf_counter()
            variants[name](t)
            first[name] = time.perf_counter() - t0
        for _ in range(repeats):
            for name in names:
                c0, t0 = time.process_time(), time.perf_counter()
                variants[name](t)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    base = "fp32 before (timm blocks)" if "fp32 before (timm blocks)" in times else "fp32"
    base_min, base_med, base_cpu = min(times[base]), med(times[base]), min(cpu[base])
    rows = []
    for name in names:
        v, c = times[name], cpu[name]
        rows.append([name, f"{min(v):.3f}", f"{med(v):.3f}", f"{base_min / min(v):.2f}x", f"{base_med / med(v):.2f}x",
                     f"{min(c):.3f}", f"{base_cpu / min(c):.2f}x", f"{first[name]:.2f}"])  # fmt: skip
    table(["variant", "wall min s", "wall median s", "speed-up (min)", "(median)", "CPU s (min)",
           "speed-up (CPU)", "first call s"], rows)  # fmt: skip
    out()
    out(f"- {t.num_tokens} tokens; {repeats} interleaved runs per variant; ratios against {base}; "
        f"CPU s = process CPU time of the run (both threads), steadier than wall time on a shared "
        f"machine; load average now {os.getloadavg()[0]:.1f}")  # fmt: skip
    out()
    return {"tokens": t.num_tokens, "times": times, "cpu": cpu, "first_call": first}


def rank(values):
    import numpy as np

    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def fidelity(ref: list[float], other: list[float]) -> dict:
    """Spearman, max |Δ| / spread of the reference, top-10 % overlap (at least one photo)."""
    import numpy as np

    a, b = np.asarray(ref, dtype=np.float64), np.asarray(other, dtype=np.float64)
    spread = float(a.max() - a.min())
    k = max(1, round(0.1 * len(a)))
    top_a, top_b = set(np.argsort(-a, kind="stable")[:k]), set(np.argsort(-b, kind="stable")[:k])
    d = np.abs(a - b)
    return {
        "spearman": float(np.corrcoef(rank(a), rank(b))[0, 1]),
        "max_abs": float(d.max()),
        "max_rel_spread": float(d.max() / spread) if spread > 0 else float("inf"),
        "top10": len(top_a & top_b) / k,
        "k": k,
        "spread": spread,
    }


def section_fidelity(checkpoints: list[tuple[str, Path]], names: list[str], n_generated: int) -> dict:
    import torch

    images = photo_set(n_generated)
    out(f"## 2. Fidelity against fp32: {len(images) - n_generated} photos + {n_generated} generated crops")
    out()
    out(f"- {machine_line()}")
    rows, result = [], {}
    for label, ck in checkpoints:
        fp32, variants = build_variants(ck, ["fp32", *names])
        prepared = [fp32.prepare(im) for _, im in images]
        scores: dict[str, list[float]] = {n: [] for n in ["fp32", *names]}
        with torch.inference_mode():
            for t in prepared:
                for n in scores:
                    scores[n].append(variants[n](t))
        for n in names:
            f = fidelity(scores["fp32"], scores[n])
            result[(label, n)] = f
            rows.append([label, n, f"{f['spearman']:.4f}", f"{f['max_abs']:.2e}", f"{100 * f['max_rel_spread']:.2f}%",
                         f"{100 * f['top10']:.0f}% of {f['k']}", f"{f['spread']:.3g}"])  # fmt: skip
    table(["checkpoint", "variant", "Spearman", "max |Δ|", "max |Δ| / spread", "top-10 % overlap",
           "fp32 spread"], rows)  # fmt: skip
    out()
    out("- targets: Spearman >= 0.995, top-10 % overlap >= 95 %")
    out()
    return {f"{k[0]} / {k[1]}": v for k, v in result.items()}


def section_e2e(work: Path, checkpoint: Path, official_python: str | None, n_images: int, repeats: int) -> dict:
    """Official pipeline vs charm's pipeline at default settings (fp32, bf16) and with --exact."""
    paths = make_e2e_images(work / "e2e", n_images)
    out(f"## 3. End to end, {n_images} photos of ~1 MP (long side 1024, JPEG q95, no EXIF)")
    out()
    out(f"- {machine_line()}")
    official = bench.Official(official_python, checkpoint) if official_python else None
    from charmcli.model.precision import DEFAULT_PRECISION, resolve_for_run

    auto = resolve_for_run(DEFAULT_PRECISION, "cpu").precision
    runs = {f"charm default ({DEFAULT_PRECISION} -> {auto})": dict(precision=DEFAULT_PRECISION),
            "charm default settings, --precision fp32": dict(precision="fp32"),
            "charm --exact (fp32, official decode)": dict(exact=True)}  # fmt: skip
    rates: dict[str, list[float]] = {k: [] for k in (["official"] if official else []) + list(runs)}
    scores: dict[str, dict[str, float]] = {}
    stages: dict[str, dict[str, float]] = {}
    try:
        for _ in range(repeats):
            if official is not None:
                rate, scores["official"], stage = bench.official_pass(official, paths)
                rates["official"].append(rate)
                for k, seconds in stage.items():
                    stages.setdefault("official", {}).setdefault(k, 0.0)
                    stages["official"][k] += sum(seconds) / (len(paths) * repeats)
            for label, opts in runs.items():
                events, rate, prof = bench.scored_pipeline(paths, work / "e2e.db", checkpoint, **opts)
                stages[label] = {k: v for k, v, _n in prof.rows() if k not in ("scan", "load model")}
                rates[label].append(rate)
                scores[label] = {Path(e.path).name: e.score for e in events}
    finally:
        if official is not None:
            official.close()
    rows = []
    for label, v in rates.items():
        ratio = f"{med(v) / med(rates['official']):.2f}x" if official else "-"
        if official and label != "official":
            diff = max(abs(scores[label][k] - scores["official"][k]) for k in scores["official"])
            agree = f"{diff:.2e}"
        else:
            agree = "-"
        rows.append([label, f"{med(v):.3f}", f"{max(v):.3f}", ratio, agree])
    table(["pipeline", "photos/s (median)", "photos/s (best)", "vs official (median)", "max |score - official|"],
          rows)  # fmt: skip
    out()
    out(f"- {repeats} interleaved runs; official = decode + tokenize + network (no_grad), one photo at a time; "
        f"load average now {os.getloadavg()[0]:.1f}")  # fmt: skip
    for label, st in stages.items():
        per = len(paths) if label != "official" else 1
        out(f"- {label}, seconds per photo{' (summed over threads, last run)' if per > 1 else ''}: "
            + ", ".join(f"{k} {v / per:.3f}" for k, v in st.items()))  # fmt: skip
    out()
    return {k: statistics.median(v) for k, v in rates.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-python", default=bench.DEFAULT_OFFICIAL_PYTHON,
                    help="interpreter of the official-pipeline environment; if missing, no official rows")  # fmt: skip
    ap.add_argument("--workdir", type=Path, help="fixtures and DBs (default: a new temp dir)")
    ap.add_argument("--sections", default="1,2,3", help="comma-separated subset of 1..3")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved runs per timing (default 5)")
    ap.add_argument("--generated", type=int, default=40, help="generated crops added to the photos (default 40)")
    ap.add_argument("--e2e-images", type=int, default=10, help="photos in the end-to-end run (default 10)")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out of section 1")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.ao's notice, printed per call
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="charm-precision-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for forbidden in (REPO, SHARED):
        if work == forbidden.resolve() or forbidden.resolve() in work.parents:
            ap.error(f"--workdir must be outside {forbidden}")
    import torch

    CACHE.append(work / "cache")
    checkpoint = build_checkpoint(work / "aadb_full12_random.pth", dim=384, depth=12, heads=6, num_classes=1,
                                  dataset="aadb")  # fmt: skip
    model, flags = cpu_model_and_flags()
    out("# charm network precision: speed and fidelity")
    out()
    out(f"- lscpu model: {model}")
    out(f"- lscpu flags: {' '.join(flags)}")
    out(f"- torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; load average {os.getloadavg()[0]:.1f} at start")  # fmt: skip
    out("- model: random full-depth DINOv2-small aadb Charm (12 layers, dim 384), official checkpoint format")
    out()
    results: dict = {}
    if 1 in sections:
        names = [n for n in TIMED if not (args.no_compile and "compile" in n)]
        results["network"] = section_network(work, checkpoint, names, args.repeats)
    if 2 in sections:
        cks = [("12-layer aadb", checkpoint), ("2-layer aadb (conformance)", CONFORMANCE / "checkpoints" / "aadb_charm.pth"),
               ("2-layer para (conformance)", CONFORMANCE / "checkpoints" / "para_charm.pth")]  # fmt: skip
        results["fidelity"] = section_fidelity(cks, REDUCED, args.generated)
    if 3 in sections:
        official = args.official_python if Path(args.official_python).exists() else None
        if official is None:
            out(f"- official pipeline NOT RUN ({args.official_python} not found)")
        results["e2e"] = section_e2e(work, checkpoint, official, args.e2e_images, args.repeats)
    out(f"(load average {os.getloadavg()[0]:.1f} at the end; work dir {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
