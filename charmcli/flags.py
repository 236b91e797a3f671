"""Technical flags from stored measures: the one place where the thresholds live.

A flag is a name plus a reason in words ("eyes closed: 1 of 3 faces"). Flags are derived from
the measures every time they are shown, never stored, so changing a threshold (``--flag-limits``
or :func:`parse_limits`) takes effect at once without re-reading a single photo.

The defaults were chosen on degraded copies of real photos (``benchmarks/flags_accuracy.py``
prints the precision/recall table that ``docs/flags.md`` reports); widths are in pixels of the
≤ 1024 px working copy (see :mod:`charmcli.library.measures`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

#: Every flag, in display order.
FLAG_NAMES = ("soft", "motion-blur", "overexposed", "underexposed", "eyes-closed")
#: Flags that keep a frame from being the best of its burst while an unflagged frame exists.
BURST_BLOCKERS = frozenset({"soft", "eyes-closed", "motion-blur"})


@dataclass(frozen=True)
class Limits:
    """Thresholds turning measures into flags (names are what ``parse_limits`` accepts)."""

    #: soft: the sharpest region's edge width (Gaussian σ, px) is above this
    soft_width: float = 1.2
    #: motion-blur: widest / narrowest directional edge width is at least this ...
    motion_ratio: float = 1.5
    #: ... and the widest directional edge width (px) is at least this
    motion_width: float = 1.8
    #: overexposed: at least this fraction of the frame is clipped white ...
    over_highlights: float = 0.10
    #: ... or the mean brightness (0..1) is at least this
    over_brightness: float = 0.75
    #: underexposed: the brightest 1 % of the frame stays below this (0..1) ...
    under_white: float = 0.60
    #: ... and the mean brightness (0..1) is below this
    under_brightness: float = 0.35
    #: eyes-closed: at least this many faces have no open eye
    eyes_closed_faces: int = 1


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Flag:
    """One technical problem of one photo."""

    name: str
    reason: str


def parse_limits(spec: str, base: Limits = DEFAULT_LIMITS) -> Limits:
    """``"soft_width=1.5,motion_ratio=1.8"`` → :class:`Limits`; raises ``ValueError`` in words."""
    known = {f.name: f for f in fields(Limits)}
    changes: dict[str, float | int] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise ValueError(f"unknown flag limit {item!r}; known: {', '.join(known)}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"flag limit {name} needs a number, got {value.strip()!r}") from None
        changes[name] = int(number) if known[name].type in (int, "int") else number
    return replace(base, **changes)


def evaluate(measures: Mapping[str, object] | None, limits: Limits = DEFAULT_LIMITS) -> list[Flag]:
    """The flags that ``measures`` (a stored measures row, as a mapping) earn under ``limits``.

    Missing numbers mean "not measured" and raise no flag: a photo measured before faces were
    available is never called eyes-closed.
    """
    if not measures:
        return []
    m = measures
    out: list[Flag] = []

    width = _num(m, "focus_width")
    if width is not None and width > limits.soft_width:
        if _num(m, "textured_tiles") == 0:
            out.append(Flag("soft", "soft: no sharp detail anywhere in the frame"))
        else:
            out.append(
                Flag("soft", f"soft: sharpest region blurred {width:.1f} px (limit {limits.soft_width:g})")
            )

    ratio, smear = _num(m, "motion_ratio"), _num(m, "motion_width")
    if (
        ratio is not None
        and smear is not None
        and ratio >= limits.motion_ratio
        and smear >= limits.motion_width
    ):
        angle = _num(m, "motion_angle") or 0.0
        out.append(
            Flag("motion-blur", f"motion blur: smeared {smear:.1f} px at {angle:.0f}°, {ratio:.1f}x across")
        )

    highlights, brightness = _num(m, "highlights"), _num(m, "brightness")
    if highlights is not None and highlights >= limits.over_highlights:
        out.append(Flag("overexposed", f"overexposed: {highlights:.0%} of the frame clipped white"))
    elif brightness is not None and brightness >= limits.over_brightness:
        out.append(Flag("overexposed", f"overexposed: mean brightness {brightness:.0%}"))

    white = _num(m, "luma_p99")
    if (
        white is not None
        and brightness is not None
        and white < limits.under_white
        and brightness < limits.under_brightness
    ):
        out.append(
            Flag(
                "underexposed", f"underexposed: brightest parts reach only {white:.0%}, mean {brightness:.0%}"
            )
        )

    faces, closed = _num(m, "faces"), _num(m, "eyes_closed")
    if faces and closed is not None and closed >= limits.eyes_closed_faces:
        out.append(
            Flag("eyes-closed", f"eyes closed: {int(closed)} of {int(faces)} face{'s' if faces != 1 else ''}")
        )
    return out


def flag_names(measures: Mapping[str, object] | None, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """Just the names, in :data:`FLAG_NAMES` order."""
    return [f.name for f in evaluate(measures, limits)]


def eyes_note(measures: Mapping[str, object] | None) -> str | None:
    """Why eyes were not judged, in words, or ``None`` when they were."""
    if not measures:
        return "not measured"
    if measures.get("faces") is None:
        return "eyes not measured (pip install 'charmcli[faces]')"
    return None


def parse_names(spec: str) -> set[str]:
    """``"soft,eyes-closed"`` → names, checked against :data:`FLAG_NAMES` (``ValueError`` in words)."""
    names = {part.strip().lower() for part in spec.split(",") if part.strip()}
    unknown = names - set(FLAG_NAMES)
    if unknown:
        raise ValueError(f"unknown flag {', '.join(sorted(unknown))}; known: {', '.join(FLAG_NAMES)}")
    return names


def _num(m: Mapping[str, object], key: str) -> float | None:
    value = m.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


__all__ = [
    "BURST_BLOCKERS",
    "DEFAULT_LIMITS",
    "FLAG_NAMES",
    "Flag",
    "Limits",
    "evaluate",
    "eyes_note",
    "flag_names",
    "parse_limits",
    "parse_names",
]
