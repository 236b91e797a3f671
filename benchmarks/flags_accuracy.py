"""Precision and recall of each technical flag on real photos and degraded copies of them.

    python benchmarks/flags_accuracy.py [--limits soft_width=1.4,...] [--quick]

Inputs: every photo of ``../shared/photos`` that charm decodes (the originals are only read),
each decoded as ``charm score`` does by default (≤ 1024 px), then degraded in memory
(``tests/flag_degrade.py``): Gaussian defocus, motion blur of several lengths and angles,
±2 and ±3 EV. Nothing is written anywhere.

Truth: an original is clean (negative for every flag); a defocused copy is positive for
``soft``, a motion-blurred copy for ``motion-blur``, a +EV copy for ``overexposed``, a −EV copy for
``underexposed``. A motion-blurred copy is also blurred, so it is left out of ``soft``'s count
(how many were flagged soft is printed beside it). Eyes: the labelled faces in
``tests/data/faces`` (real photos, plus synthetic closed-eye copies), with every original as a
negative. Prints Markdown tables (docs/flags.md quotes them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from flag_degrade import defocus, exposure, labelled_faces, motion_blur  # noqa: E402

from charmcli.flags import FLAG_NAMES, flag_names, parse_limits  # noqa: E402
from charmcli.library.decode import DecodeError, load_image  # noqa: E402
from charmcli.library.measures import measure, measure_photo  # noqa: E402
from charmcli.library.scan import ScanEntry, iter_files  # noqa: E402

PHOTOS = REPO.parent / "shared" / "photos"
#: Photos with a deliberately shallow depth of field (sharp subject, blurred background).
SHALLOW = {
    "chelsea_alpha_vignette.png",
    "seeding_by_Clements_Engelhardt.jpg",
    "unsplash-rachel-hisko-rEM3cK8F1pk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Kodak PIXPRO S-1.jpg",
}
SIGMAS = (1.5, 2.0, 3.0, 4.0)
LENGTHS = (7, 11, 15, 21)
ANGLES = (0, 30, 45, 80, 100, 135, 160)
EVS = (-3.0, -2.0, 2.0, 3.0)


def originals(quick: bool) -> list[tuple[str, object]]:
    out = []
    for entry in iter_files([PHOTOS]):
        if not isinstance(entry, ScanEntry) or "bad" in entry.path.parts:
            continue
        path = entry.path
        name = Path(path).name
        if quick and name.startswith("landscape_") and name != "landscape_1.jpg":
            continue
        try:
            out.append((name, load_image(path).image))
        except DecodeError:
            continue
    return out


def face_variants() -> list[tuple[str, object, int, int]]:
    """Each labelled face (open, and painted shut) scaled and tilted: one person, many sizes.

    Copies are placed on a plain grey canvas of 1024 x 768 px, as a portrait in a frame would be.
    """
    from PIL import Image

    out = []
    for name, image, open_faces, closed_faces in labelled_faces():
        if open_faces + closed_faces != 1 or image.width < 200:
            continue
        for scale in (0.75, 1.5, 2.5):
            for angle in (-8, 0, 8):
                w, h = round(image.width * scale), round(image.height * scale)
                copy = image.resize((w, h), Image.Resampling.BICUBIC).rotate(angle, Image.Resampling.BICUBIC)
                canvas = Image.new("RGB", (1024, 768), (120, 120, 120))
                canvas.paste(copy, ((1024 - w) // 2, (768 - h) // 2))
                out.append((f"{name} x{scale:g} {angle:+d}°", canvas, open_faces, closed_faces))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limits", default="", help="override flag limits, e.g. soft_width=1.4")
    ap.add_argument("--quick", action="store_true", help="one EXIF-orientation copy instead of eight")
    args = ap.parse_args()
    limits = parse_limits(args.limits)

    t0 = time.perf_counter()
    photos = originals(args.quick)
    # (kind, level, photo, flags)
    results: list[tuple[str, str, str, set[str]]] = []
    for i, (name, image) in enumerate(photos):
        flags = set(flag_names(measure_photo(image), limits))  # originals: faces too
        results.append(("original", "", name, flags))
        for sigma in SIGMAS:
            soft = measure(defocus(image, sigma)).as_dict()
            results.append(("defocus", f"σ {sigma:g} px", name, set(flag_names(soft, limits))))
        for j, length in enumerate(LENGTHS):
            angle = ANGLES[(i + j) % len(ANGLES)]
            blurred = motion_blur(image, length, angle)
            results.append(
                ("motion", f"{length} px", name, set(flag_names(measure(blurred).as_dict(), limits)))
            )
        for ev in EVS:
            results.append(
                (
                    "exposure",
                    f"{ev:+g} EV",
                    name,
                    set(flag_names(measure(exposure(image, ev)).as_dict(), limits)),
                )
            )
    eyes = []
    for n, im, o, c in labelled_faces() + face_variants():
        values = measure_photo(im)
        found = f"{values['faces']} / {values['eyes_closed']} / {values['small_faces']}"
        eyes.append((n, set(flag_names(values, limits)), o, c, found))
    elapsed = time.perf_counter() - t0

    def truth(kind: str, level: str, flag: str) -> bool | None:
        if flag == "soft":
            return None if kind == "motion" else kind == "defocus"
        if flag == "motion-blur":
            return kind == "motion"
        if flag == "overexposed":
            return kind == "exposure" and level.startswith("+")
        if flag == "underexposed":
            return kind == "exposure" and level.startswith("-")
        return False  # eyes-closed: no degraded copy closes eyes

    print(f"# Flag accuracy ({len(photos)} photos from shared/photos, {len(results)} images, "
          f"{elapsed:.0f} s; limits: {limits})")  # fmt: skip
    print()
    print("| flag | positives | negatives | TP | FP | FN | precision | recall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for flag in FLAG_NAMES:
        tp = fp = fn = pos = neg = 0
        for kind, level, _name, flags in results:
            t = truth(kind, level, flag)
            if t is None:
                continue
            pos, neg = pos + t, neg + (not t)
            tp += t and flag in flags
            fp += (not t) and flag in flags
            fn += t and flag not in flags
        if flag == "eyes-closed":
            for _n, flags, _open, closed, _found in eyes:
                t = closed > 0
                pos, neg = pos + t, neg + (not t)
                tp += t and flag in flags
                fp += (not t) and flag in flags
                fn += t and flag not in flags
        precision = f"{tp / (tp + fp):.2f}" if tp + fp else "n/a"
        recall = f"{tp / (tp + fn):.2f}" if tp + fn else "n/a"
        print(f"| `{flag}` | {pos} | {neg} | {tp} | {fp} | {fn} | {precision} | {recall} |")
    print()
    print("Recall by degradation (share of copies given the flag):")
    print()
    print("| degradation | level | n | soft | motion-blur | overexposed | underexposed |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    groups: dict[tuple[str, str], list[set[str]]] = defaultdict(list)
    for kind, level, _name, flags in results:
        groups[(kind, level)].append(flags)
    for (kind, level), sets in groups.items():
        shares = " | ".join(f"{sum(f in s for s in sets) / len(sets):.2f}" for f in FLAG_NAMES[:4])
        print(f"| {kind} | {level} | {len(sets)} | {shares} |")
    print()
    shallow = [(n, f) for k, _lvl, n, f in results if k == "original" and n in SHALLOW]
    print(f"Shallow depth of field originals flagged soft: {sum('soft' in f for _n, f in shallow)} "
          f"of {len(shallow)} ({', '.join(n for n, _f in shallow)})")  # fmt: skip
    flagged = [(n, sorted(f)) for k, _lvl, n, f in results if k == "original" and f]
    print(f"Originals with any flag: {flagged or 'none'}")
    print()
    print("Eye set (tests/data/faces, then scaled and tilted copies of its one usable face):")
    print()
    print("| image | label: faces open / closed | found: judged / eyes closed / too small | flags |")
    print("| --- | --- | --- | --- |")
    for n, flags, o, c, found in eyes:
        print(f"| {n} | {o} / {c} | {found} | {', '.join(sorted(flags)) or '-'} |")
    print()
    print(f"CPU: {_cpu()}; load average {os.getloadavg()[0]:.1f}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" x{os.cpu_count()}"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
