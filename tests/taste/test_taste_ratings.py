"""Which ratings are the user's: the one rule, then real sidecars read from disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from charmcli.cull.xmp import update_sidecar
from charmcli.taste.ratings import CHARM_SOURCE, DESK_SOURCE, user_rating, user_ratings

RATE = {"source": CHARM_SOURCE}
DESK = {"source": DESK_SOURCE}


@pytest.mark.parametrize(
    ("sidecar", "decision", "expected"),
    [
        (4, None, (4, "sidecar")),  # Lightroom/darktable: charm never touched it
        (-1, None, (-1, "sidecar")),  # a reject is a judgement
        (0, None, None),  # 0 = "no rating"
        (None, None, None),
        (3, {**RATE, "rating": 3}, None),  # charm rate's guess, untouched
        (-1, {**RATE, "rating": -1}, None),  # charm rate's reject, untouched
        (5, {**RATE, "rating": 3}, (5, "sidecar")),  # the user changed charm's guess
        (-1, {**RATE, "rating": 2}, (-1, "sidecar")),
        (0, {**RATE, "rating": 2}, None),  # the user cleared it: no judgement either way
        (None, {**RATE, "rating": 4}, None),  # sidecar gone: charm's guess still is not the user's
        (2, {**DESK, "rating": 2}, (2, "sidecar")),  # chosen at the desk
        (1, {**DESK, "rating": 4}, (1, "sidecar")),  # changed elsewhere after the desk: the sidecar wins
        (None, {**DESK, "rating": 4}, (4, "review")),  # the desk's decision counts without a sidecar
        (None, {**DESK, "rating": 0}, None),
        (None, {**DESK, "rating": None, "label": "Red"}, None),  # a label alone is no rating
        (7, None, None),  # out of range: not a rating
        (6, None, None),  # the first value past five stars
        (5, None, (5, "sidecar")),  # the last one in range
        (None, {**DESK, "rating": 6}, None),
        (-2, None, None),
    ],
)
def test_the_rule(sidecar, decision, expected) -> None:
    got = user_rating(sidecar, decision)
    assert (None if got is None else (got.stars, got.source)) == expected
    assert got is None or got.path == ""  # the caller fills it


def _photo(folder: Path, name: str) -> str:
    path = folder / name
    path.write_bytes(b"not opened")  # ratings never read the photo itself
    return str(path)


def test_sidecars_on_disk(tmp_path: Path) -> None:
    """Both naming styles, both RDF spellings, charm's own writes, and a broken sidecar."""
    lightroom = _photo(tmp_path, "IMG_1.CR2")
    (tmp_path / "IMG_1.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/"><xmp:Rating>5</xmp:Rating>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    darktable = _photo(tmp_path, "b.jpg")
    update_sidecar(darktable, rating=2)
    guessed = _photo(tmp_path, "c.jpg")
    update_sidecar(guessed, rating=4)
    changed = _photo(tmp_path, "d.jpg")
    update_sidecar(changed, rating=-1)
    broken = _photo(tmp_path, "e.jpg")
    (tmp_path / "e.jpg.xmp").write_text("<x:xmpmeta><unclosed>")
    desk = _photo(tmp_path, "f.jpg")
    bare = _photo(tmp_path, "g.jpg")
    decisions = {
        guessed: {"source": CHARM_SOURCE, "rating": 4},
        changed: {"source": CHARM_SOURCE, "rating": 3},
        broken: {"source": DESK_SOURCE, "rating": 2},
        desk: {"source": DESK_SOURCE, "rating": 3},
    }
    got, problems = user_ratings([lightroom, darktable, guessed, changed, broken, desk, bare], decisions)
    assert {(Path(r.path).name, r.stars, r.source) for r in got} == {
        ("IMG_1.CR2", 5, "sidecar"), ("b.jpg", 2, "sidecar"), ("d.jpg", -1, "sidecar"),
        ("e.jpg", 2, "review"), ("f.jpg", 3, "review"),
    }  # fmt: skip
    assert list(problems) == [broken] and "e.jpg.xmp" in problems[broken]
