"""The XMP merge at its edges: what surrounds the packet, where a new property goes, element forms,
shared Adobe-style sidecars. Each case is one a hand-made or mutated merge got wrong (docs/mutation.md)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from charmcli.cull.xmp import (
    RDF_NS,
    XMP_NS,
    XmpError,
    apply_ratings,
    rating_number,
    read_sidecar,
    sidecar_path,
    sidecar_ratings,
    update_sidecar,
)

RATING, LABEL = f"{{{XMP_NS}}}Rating", f"{{{XMP_NS}}}Label"
DESC = f"{{{RDF_NS}}}Description"
HEAD = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<!-- written by a tool -->\n<!DOCTYPE x:xmpmeta>\n'
TAIL = '\n<!-- trailing a/> comment -->\n<?xpacket end="w"?>'


def _photo(folder: Path, name: str = "a.jpg") -> Path:
    (folder / name).write_bytes(b"never opened")
    return folder / name


def _write(photo: Path, text: str) -> Path:
    path = photo.with_name(photo.name + ".xmp")
    path.write_text(text, encoding="utf-8")
    return path


def test_sidecar_names_default_suffixless_and_bad_style(tmp_path):
    photo = tmp_path / "IMG_1.jpg"
    assert sidecar_path(photo) == tmp_path / "IMG_1.jpg.xmp"  # "ext" is the default
    assert sidecar_path(tmp_path / "IMG_2", "adobe") == tmp_path / "IMG_2.xmp"  # no suffix to replace
    assert sidecar_path(tmp_path / "IMG_2", "ext") == tmp_path / "IMG_2.xmp"
    with pytest.raises(ValueError, match=r"^sidecar style must be 'ext' or 'adobe', not 'lightroom'$"):
        sidecar_path(photo, "lightroom")  # type: ignore[arg-type]


def test_what_surrounds_the_packet_is_kept_byte_for_byte(tmp_path):
    photo = _photo(tmp_path)
    body = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><?app keep me?><rdf:RDF xmlns:rdf="{RDF_NS}">'
            f'<rdf:Description rdf:about="" xmlns:xmp="{XMP_NS}" xmp:Rating="1"/></rdf:RDF></x:xmpmeta>')  # fmt: skip
    path = _write(photo, HEAD + body + TAIL)
    assert update_sidecar(photo, rating=4).written
    text = path.read_text(encoding="utf-8")
    assert text.startswith(HEAD) and text.endswith(TAIL)
    assert "<?app keep me?>" in text  # a processing instruction inside the packet stays
    assert read_sidecar(path)["rating"] == "4"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- never closed <x:xmpmeta/>", "unterminated '<!--' before the root element"),
        ('<?xpacket begin="" <x:xmpmeta/>', "unterminated '<?' before the root element"),
        ("<!DOCTYPE x", "unterminated '<!' before the root element"),
        ("<!-- only a comment -->", "no root element"),
        ('<x:xmpmeta xmlns:x="adobe:ns:meta/"/>' + TAIL, "no rdf:RDF element: not an XMP packet"),
        ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><a></x:xmpmeta>', "not well-formed XML: mismatched tag: line 1, column 41"),
    ],
)
def test_unmergeable_sidecars_say_why_and_are_left_alone(tmp_path, text, message):
    photo = _photo(tmp_path)
    path = _write(photo, text)
    with pytest.raises(XmpError) as err:
        update_sidecar(photo, rating=3)
    assert str(err.value) == message
    assert path.read_text(encoding="utf-8") == text


def test_a_bare_self_closing_rdf_root_gets_a_description(tmp_path):
    photo = _photo(tmp_path)
    path = _write(photo, f'<rdf:RDF xmlns:rdf="{RDF_NS}"/>' + TAIL)
    assert update_sidecar(photo, rating=2, label="Green").written
    text = path.read_text(encoding="utf-8")
    assert text.endswith(TAIL) and text.startswith("<rdf:RDF")
    root = ET.fromstring(text[: -len(TAIL)])
    (desc,) = root.findall(DESC)
    assert desc.attrib == {f"{{{RDF_NS}}}about": "", RATING: "2", LABEL: "Green"}
    assert desc.tail == "\n"
    assert read_sidecar(path) == {"rating": "2", "label": "Green"}


def test_a_new_property_joins_the_description_that_already_speaks_xmp(tmp_path):
    """The first description holds dc:subject only; the second uses xmp: as an attribute."""
    for xmp_form in ('xmp:CreatorTool="darktable"', ""):
        photo = _photo(tmp_path, f"p{len(xmp_form)}.jpg")
        child = "" if xmp_form else "<xmp:CreatorTool>darktable</xmp:CreatorTool>"
        path = _write(photo, (
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF_NS}">'
            f'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><!-- c --><dc:subject/></rdf:Description>'
            f'<rdf:Description rdf:about="" xmlns:xmp="{XMP_NS}" {xmp_form}>{child}</rdf:Description>'
            "</rdf:RDF></x:xmpmeta>"
        ))  # fmt: skip
        update_sidecar(photo, rating=5)
        first, second = ET.fromstring(path.read_text(encoding="utf-8")).iter(DESC)
        assert RATING not in first.attrib and second.attrib[RATING] == "5", xmp_form


def test_element_forms_are_updated_in_place_and_removed_whole(tmp_path):
    photo = _photo(tmp_path)
    path = _write(photo, (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF_NS}">'
        '<rdf:Description rdf:about=""/>'
        f'<rdf:Description rdf:about="" xmlns:xmp="{XMP_NS}">'
        "<xmp:Rating><rdf:Alt><rdf:li>1</rdf:li></rdf:Alt></xmp:Rating><xmp:Label></xmp:Label>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ))  # fmt: skip
    assert read_sidecar(path) == {"rating": "", "label": ""}  # an empty element reads as empty
    update_sidecar(photo, rating=3, clear_label="")
    descs = list(ET.fromstring(path.read_text(encoding="utf-8")).iter(DESC))
    assert all(RATING not in d.attrib for d in descs)  # no second copy as an attribute
    (rating,) = descs[1].findall(RATING)
    assert rating.text == "3" and list(rating) == []
    assert descs[1].findall(LABEL) == [] and read_sidecar(path) == {"rating": "3", "label": None}


def test_clearing_a_label_held_by_a_later_description(tmp_path):
    photo = _photo(tmp_path)
    path = _write(photo, (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:xmp="{XMP_NS}">'
        '<rdf:Description rdf:about="" xmp:Rating="2"/><rdf:Description rdf:about="" xmp:Label="Green"/>'
        "</rdf:RDF></x:xmpmeta>"
    ))  # fmt: skip
    change = update_sidecar(photo, rating=None, clear_label="Green")
    assert change.written and (change.old_label, change.new_label) == ("Green", None)
    assert read_sidecar(path) == {"rating": "2", "label": None}


@pytest.mark.parametrize("stars", [-2, 6])
def test_ratings_outside_the_xmp_range_are_refused(tmp_path, stars):
    with pytest.raises(ValueError, match=rf"^XMP rating must be -1 \(rejected\) or 0\.\.5, not {stars}$"):
        update_sidecar(_photo(tmp_path), rating=stars)


@pytest.mark.parametrize("stars", [0, 5, -1])
def test_the_ends_of_the_xmp_range_are_written(tmp_path, stars):
    photo = _photo(tmp_path)
    assert update_sidecar(photo, rating=stars).written
    assert read_sidecar(sidecar_path(photo))["rating"] == str(stars)


def test_a_rating_that_is_not_a_number_is_replaced(tmp_path):
    photo = _photo(tmp_path)
    path = _write(photo, f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:xmp="{XMP_NS}"><rdf:Description xmp:Rating="high"/></rdf:RDF>')
    assert update_sidecar(photo, rating=3).written and read_sidecar(path)["rating"] == "3"
    assert [rating_number(v) for v in (None, "high", "3.0", "nan", "inf", "2.6")] == [None, None, 3, None, None, 3]


def test_a_new_sidecar_reports_its_photo_and_path(tmp_path):
    photo = _photo(tmp_path)
    change = update_sidecar(photo, rating=1)
    assert (change.photo, change.sidecar, change.existed, change.written) == (photo, sidecar_path(photo), False, True)
    dry = update_sidecar(_photo(tmp_path, "b.jpg"), rating=1, dry_run=True)
    assert dry.photo == tmp_path / "b.jpg" and not dry.written and not dry.sidecar.exists()


def test_shared_adobe_sidecar_reports_each_photo(tmp_path):
    raw, jpg = _photo(tmp_path, "IMG_7.CR2"), _photo(tmp_path, "IMG_7.jpg")
    conflict = apply_ratings([(raw, 5, "Green", None), (jpg, None, None, None), (tmp_path / "x.jpg", 2, None, None)],
                             style="adobe")  # fmt: skip
    assert [(c.photo, c.sidecar, c.existed, c.new_rating, c.new_label) for c in conflict[:2]] == [
        (raw, tmp_path / "IMG_7.xmp", False, "5", "Green"), (jpg, tmp_path / "IMG_7.xmp", False, None, None)]
    assert conflict[0].error == "IMG_7.CR2, IMG_7.jpg share IMG_7.xmp but have different ratings; use the 'ext' sidecar style"
    assert conflict[2].written and conflict[2].error is None  # the next sidecar is still written
    agree = apply_ratings([(raw, 4, "Red", "Green"), (jpg, 4, "Red", "Green")], style="adobe")
    assert [(c.photo, c.written, c.new_label) for c in agree] == [(raw, True, "Red"), (jpg, False, "Red")]
    assert read_sidecar(tmp_path / "IMG_7.xmp") == {"rating": "4", "label": "Red"}
    cleared = apply_ratings([(raw, None, None, "Red"), (jpg, None, None, "Red")], style="adobe")
    assert cleared[0].written and read_sidecar(tmp_path / "IMG_7.xmp") == {"rating": "4", "label": None}


def test_a_broken_sidecar_is_reported_with_its_photo(tmp_path):
    photo = _photo(tmp_path)
    _write(photo, "not xml at all")
    (change,) = apply_ratings([(photo, 3, None, None)])
    assert (change.photo, change.sidecar, change.existed) == (photo, sidecar_path(photo), True)
    assert change.error == "no root element" and not change.written


def test_a_closing_tag_in_a_comment_and_a_head_comment_with_slash_gt_do_not_cut_the_packet(tmp_path):
    photo = _photo(tmp_path)
    head = "<!-- a/> in the head -->\n"
    path = _write(photo, head + (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- not the end: </x:xmpmeta> --><rdf:RDF xmlns:rdf="{RDF_NS}">'
        f'<rdf:Description rdf:about="" xmlns:xmp="{XMP_NS}" xmp:Rating="1"/></rdf:RDF></x:xmpmeta>'
    ) + TAIL)  # fmt: skip
    assert update_sidecar(photo, rating=2).written and read_sidecar(path)["rating"] == "2"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(head) and text.endswith(TAIL) and "<!-- not the end: </x:xmpmeta> -->" in text
    bare = _photo(tmp_path, "bare.jpg")
    bare_path = _write(bare, head + f'<rdf:RDF xmlns:rdf="{RDF_NS}"/>' + TAIL)
    assert update_sidecar(bare, rating=3).written and read_sidecar(bare_path)["rating"] == "3"
    assert bare_path.read_text(encoding="utf-8").startswith(head + "<rdf:RDF")


def test_an_attribute_set_in_a_later_description_is_not_copied_into_the_first(tmp_path):
    photo = _photo(tmp_path)
    path = _write(photo, (
        f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:xmp="{XMP_NS}">'
        '<rdf:Description rdf:about=""><xmp:CreatorTool>x</xmp:CreatorTool></rdf:Description>'
        '<rdf:Description rdf:about="" xmp:Rating="1"/></rdf:RDF>'
    ))  # fmt: skip
    update_sidecar(photo, rating=4)
    first, second = ET.fromstring(path.read_text(encoding="utf-8")).iter(DESC)
    assert RATING not in first.attrib and first.find(RATING) is None and second.attrib[RATING] == "4"


def test_prefixes_are_written_as_the_file_and_xmp_name_them(tmp_path):
    """Other tools match prefixes too: a new sidecar says ``xmp:``, a file's own prefix stays its own,
    and an element in a default namespace comes back well-formed in that namespace."""
    photo = _photo(tmp_path)
    update_sidecar(photo, rating=1)
    assert 'xmp:Rating="1"' in sidecar_path(photo).read_text(encoding="utf-8")
    other = _photo(tmp_path, "other.jpg")
    tag = uuid.uuid4().hex[:8]  # ElementTree's prefix registry is process-wide: a prefix never seen before
    unique = f"http://example.com/charm-test/{tag}/"
    path = _write(other, (
        f'<rdf:RDF xmlns:rdf="{RDF_NS}" xmlns:xmp="{XMP_NS}" xmlns:zq{tag}="{unique}">'
        f'<rdf:Description rdf:about="" zq{tag}:kept="yes"><plain xmlns="{unique}d">v</plain></rdf:Description></rdf:RDF>'
    ))  # fmt: skip
    update_sidecar(other, rating=2)
    text = path.read_text(encoding="utf-8")
    assert f'zq{tag}:kept="yes"' in text and 'xmp:Rating="2"' in text
    assert ET.fromstring(text).find(f".//{{{unique}d}}plain").text == "v"


@pytest.mark.parametrize(
    "raw",
    ["\ufeff<?xml?><x/>".encode("utf-16-le"), "\ufeff<?xml?><x/>".encode("utf-16-be"),
     "<?xml?><x/>".encode("utf-16-le"), "<?xml?><x/>".encode("utf-16-be")],
    ids=["le-bom", "be-bom", "le", "be"],
)
def test_utf16_sidecars_are_refused_with_or_without_a_bom(tmp_path, raw):
    photo = _photo(tmp_path)
    sidecar_path(photo).write_bytes(raw)
    with pytest.raises(XmpError) as err:
        update_sidecar(photo, rating=1)
    assert str(err.value) == "UTF-16/32 sidecars are not supported; convert it to UTF-8 first"
    assert sidecar_path(photo).read_bytes() == raw


def test_a_sidecar_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    photo = _photo(tmp_path)
    sidecar_path(photo).write_bytes(b"<x:xmpmeta>caf\xe9</x:xmpmeta>")
    with pytest.raises(XmpError) as err:
        update_sidecar(photo, rating=1)
    assert str(err.value) == ("not UTF-8: 'utf-8' codec can't decode byte 0xe9 in position 14: "
                              "invalid continuation byte")  # fmt: skip


def test_ratings_of_photos_in_a_folder_that_is_gone(tmp_path):
    photo = _photo(tmp_path)
    update_sidecar(photo, rating=4)
    assert sidecar_ratings([str(tmp_path / "gone" / "a.jpg"), str(photo)]) == ({str(photo): 4}, {})
