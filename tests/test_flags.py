"""Flag rules: every limit decides exactly at its threshold, reasons are in words, specs parse."""

from __future__ import annotations

from dataclasses import fields

import pytest

from charmcli.flags import (
    DEFAULT_LIMITS,
    FLAG_NAMES,
    Limits,
    evaluate,
    eyes_note,
    flag_names,
    parse_limits,
    parse_names,
)

#: A measures row that earns no flag.
CLEAN = {
    "focus_width": 0.6,
    "textured_tiles": 300,
    "motion_ratio": 1.1,
    "motion_width": 1.0,
    "motion_angle": 30.0,
    "highlights": 0.01,
    "shadows": 0.01,
    "brightness": 0.45,
    "luma_p01": 0.03,
    "luma_p99": 0.95,
    "faces": 2,
    "eyes_closed": 0,
    "small_faces": 0,
}

#: For each limit: the flag it drives, and a row just past that limit (every other limit of the
#: same flag already past as well, so this one decides).
PAST = {
    "soft_width": ("soft", {"focus_width": DEFAULT_LIMITS.soft_width + 0.01}),
    "motion_ratio": ("motion-blur", {"motion_ratio": DEFAULT_LIMITS.motion_ratio, "motion_width": 9.0}),
    "motion_width": ("motion-blur", {"motion_ratio": 9.0, "motion_width": DEFAULT_LIMITS.motion_width}),
    "over_highlights": ("overexposed", {"highlights": DEFAULT_LIMITS.over_highlights}),
    "over_brightness": ("overexposed", {"brightness": DEFAULT_LIMITS.over_brightness, "luma_p99": 1.0}),
    "under_white": ("underexposed", {"luma_p99": DEFAULT_LIMITS.under_white - 0.01, "brightness": 0.05}),
    "under_brightness": (
        "underexposed",
        {"brightness": DEFAULT_LIMITS.under_brightness - 0.01, "luma_p99": 0.2},
    ),
    "eyes_closed_faces": ("eyes-closed", {"eyes_closed": DEFAULT_LIMITS.eyes_closed_faces}),
}

#: Each limit's row moved to just short of the limit.
SHORT = {
    "soft_width": {"focus_width": DEFAULT_LIMITS.soft_width},
    "motion_ratio": {"motion_ratio": DEFAULT_LIMITS.motion_ratio - 0.01},
    "motion_width": {"motion_width": DEFAULT_LIMITS.motion_width - 0.01},
    "over_highlights": {"highlights": DEFAULT_LIMITS.over_highlights - 0.001},
    "over_brightness": {"brightness": DEFAULT_LIMITS.over_brightness - 0.01},
    "under_white": {"luma_p99": DEFAULT_LIMITS.under_white},
    "under_brightness": {"brightness": DEFAULT_LIMITS.under_brightness},
    "eyes_closed_faces": {"eyes_closed": DEFAULT_LIMITS.eyes_closed_faces - 1},
}


def test_every_limit_is_covered_here():
    names = {f.name for f in fields(Limits)}
    assert set(PAST) == names == set(SHORT)
    assert {flag for flag, _ in PAST.values()} == set(FLAG_NAMES)


def test_a_clean_row_has_no_flag():
    assert evaluate(CLEAN) == []


@pytest.mark.parametrize("limit", sorted(PAST))
def test_each_limit_decides_at_its_threshold(limit):
    flag, past = PAST[limit]
    assert flag_names({**CLEAN, **past}) == [flag]
    assert flag not in flag_names({**CLEAN, **past, **SHORT[limit]})


@pytest.mark.parametrize("limit", sorted(PAST))
def test_each_limit_is_settable(limit):
    flag, past = PAST[limit]
    row = {**CLEAN, **past}
    value = getattr(DEFAULT_LIMITS, limit)
    # Move the limit far the other way: the same row is no longer flagged.
    moved = value * 4 + 4 if limit.startswith(("soft", "motion", "over", "eyes")) else value / 8
    assert flag not in flag_names(row, parse_limits(f"{limit}={moved}"))


def test_reasons_say_why_in_words():
    row = {**CLEAN, "faces": 3, "eyes_closed": 1, "focus_width": 2.44, "highlights": 0.23}
    reasons = {f.name: f.reason for f in evaluate(row)}
    assert reasons["eyes-closed"] == "eyes closed: 1 of 3 faces"
    assert reasons["soft"] == "soft: sharpest region blurred 2.4 px (limit 1.2)"
    assert reasons["overexposed"] == "overexposed: 23% of the frame clipped white"
    flat = evaluate({**CLEAN, "focus_width": 20.0, "textured_tiles": 0})
    assert flat[0].reason == "soft: no sharp detail anywhere in the frame"


def test_flags_come_in_display_order():
    row = {**CLEAN, "eyes_closed": 2, "focus_width": 3.0, "highlights": 0.5}
    assert flag_names(row) == ["soft", "overexposed", "eyes-closed"]


def test_missing_numbers_raise_no_flag():
    assert evaluate(None) == [] and evaluate({}) == []
    row = {**CLEAN, "faces": None, "eyes_closed": None}
    assert "eyes-closed" not in flag_names(row)
    assert "not measured" in eyes_note(row) and eyes_note(CLEAN) is None


def test_parse_limits_errors_are_one_line_and_helpful():
    assert parse_limits("soft-width=1.5, motion_ratio=2").soft_width == 1.5
    assert parse_limits("") == DEFAULT_LIMITS
    with pytest.raises(ValueError, match="unknown flag limit 'blurry=2'; known: soft_width"):
        parse_limits("blurry=2")
    with pytest.raises(ValueError, match="needs a number"):
        parse_limits("soft_width=x")


def test_parse_names():
    assert parse_names("soft, Eyes-Closed") == {"soft", "eyes-closed"}
    with pytest.raises(ValueError, match="unknown flag blurry; known: soft, motion-blur"):
        parse_names("soft,blurry")


def test_every_reason_word_for_word():
    """Each flag's reason as a user reads it (the name, the numbers, singular and plural)."""
    reasons = {f.name: f.reason for f in evaluate({**CLEAN, "motion_ratio": 2.0, "motion_width": 2.5,
                                                    "motion_angle": 30.0, "brightness": 0.8, "faces": 1,
                                                    "eyes_closed": 1})}  # fmt: skip
    assert reasons == {
        "motion-blur": "motion blur: smeared 2.5 px at 30°, 2.0x across",
        "overexposed": "overexposed: mean brightness 80%",
        "eyes-closed": "eyes closed: 1 of 1 face",
    }
    dark = evaluate({**CLEAN, "luma_p99": 0.5, "brightness": 0.2, "faces": 2, "eyes_closed": 2})
    assert [(f.name, f.reason) for f in dark] == [
        ("underexposed", "underexposed: brightest parts reach only 50%, mean 20%"),
        ("eyes-closed", "eyes closed: 2 of 2 faces"),
    ]
    no_angle = evaluate({**CLEAN, "motion_ratio": 2.0, "motion_width": 2.5, "motion_angle": None})
    assert [f.reason for f in no_angle] == ["motion blur: smeared 2.5 px at 0°, 2.0x across"]
    flat = evaluate({**CLEAN, "focus_width": 20.0, "textured_tiles": 0})
    assert [(f.name, f.reason) for f in flat] == [("soft", "soft: no sharp detail anywhere in the frame")]


def test_eyes_notes_word_for_word():
    assert eyes_note(None) == eyes_note({}) == "not measured"
    assert eyes_note({**CLEAN, "faces": None}) == "eyes not measured (pip install 'charmcli[faces]')"


def test_parse_limits_reads_each_item_whole():
    got = parse_limits("soft_width=1.5,,eyes_closed_faces=2")  # an empty item is skipped, not the end
    assert got.soft_width == 1.5 and got.eyes_closed_faces == 2 and type(got.eyes_closed_faces) is int
    with pytest.raises(ValueError, match=r"^flag limit soft_width needs a number, got '1=2'$"):
        parse_limits("soft_width=1=2")
    with pytest.raises(ValueError) as err:
        parse_limits("blurry=2")
    assert str(err.value) == "unknown flag limit 'blurry=2'; known: " + ", ".join(f.name for f in fields(Limits))
    with pytest.raises(ValueError) as err:
        parse_names("soft,blurry,fuzzy")
    assert str(err.value) == "unknown flag blurry, fuzzy; known: " + ", ".join(FLAG_NAMES)
