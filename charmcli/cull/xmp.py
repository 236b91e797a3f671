"""Write star ratings and colour labels to XMP sidecars, merging with what is already there.

Why sidecars: every serious photo tool reads them (Lightroom/Bridge, darktable, digiKam,
RawTherapee, exiftool), they work for RAW files, and the photo itself is never touched — charm
only ever reads photos. Two naming styles exist and both are supported:

* ``"ext"`` — ``IMG_0001.jpg.xmp``: darktable and digiKam (one sidecar per file, so a RAW+JPEG
  pair gets two). The default, because it cannot collide.
* ``"adobe"`` — ``IMG_0001.xmp``: Lightroom/Bridge/Camera Raw. ``IMG_0001.CR2`` and
  ``IMG_0001.jpg`` share it; :func:`apply_ratings` refuses to write conflicting values into one.

Merging keeps every other field: the sidecar is parsed with ElementTree (namespace prefixes
re-registered so they survive, comments and processing instructions kept, the ``<?xpacket?>``
wrapper and anything else outside the root element copied verbatim) and only ``xmp:Rating`` /
``xmp:Label`` change. The one cosmetic difference: ElementTree writes all namespace declarations
on the root element and drops line breaks between attributes; the XML and its RDF mean the same. Both RDF spellings of a simple property are common and both are handled:
an attribute ``xmp:Rating="3"`` on ``rdf:Description`` (darktable, exiftool) and a child element
``<xmp:Rating>3</xmp:Rating>`` (Adobe, older tools); an existing property is updated where it is,
a new one is added as an attribute. Writes are atomic (temporary file + ``os.replace``), and a
sidecar whose values already match is not rewritten at all, so runs are idempotent and do not
bump mtimes (which darktable's "look for updated XMP files" would notice).

Note for darktable users: darktable's library database wins over sidecars for photos it has
already imported unless "look for updated XMP files on startup" is on.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from charmcli.cull.ratings import Rating
from charmcli.library.atomic import atomic_write_bytes

XMP_NS = "http://ns.adobe.com/xap/1.0/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X_NS = "adobe:ns:meta/"

SidecarStyle = Literal["ext", "adobe"]

_RDF_RDF = f"{{{RDF_NS}}}RDF"
_RDF_DESC = f"{{{RDF_NS}}}Description"
_RDF_ABOUT = f"{{{RDF_NS}}}about"

#: A fresh sidecar: the standard packet wrapper, one description with the ``xmp`` namespace.
_NEW_SIDECAR = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    f'<x:xmpmeta xmlns:x="{X_NS}" x:xmptk="charm">\n'
    f' <rdf:RDF xmlns:rdf="{RDF_NS}">\n'
    f'  <rdf:Description rdf:about="" xmlns:xmp="{XMP_NS}"/>\n'
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>\n'
)

# ElementTree keeps the prefix → URI map in module-level state; serialise one document at a time.
_ET_LOCK = threading.Lock()


class XmpError(Exception):
    """A sidecar that cannot be merged safely (not XML, not XMP, unsupported encoding)."""


@dataclass(frozen=True)
class SidecarChange:
    """What happened (or, in a dry run, would happen) to one photo's sidecar."""

    photo: Path
    sidecar: Path
    existed: bool
    old_rating: str | None
    new_rating: str | None
    old_label: str | None
    new_label: str | None
    written: bool = False  #: False in a dry run, when nothing changed, or on error
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Whether the sidecar's content differs (would differ) from before."""
        if self.error is not None:
            return False
        if not self.existed:  # a new sidecar is only worth creating when it holds something
            return self.new_rating is not None or self.new_label is not None
        return self.old_rating != self.new_rating or self.old_label != self.new_label


# -- naming -------------------------------------------------------------------------------------


def sidecar_path(photo: str | Path, style: SidecarStyle = "ext") -> Path:
    """The sidecar for ``photo``: ``IMG.jpg.xmp`` (``"ext"``) or ``IMG.xmp`` (``"adobe"``).

    If the exact name does not exist but a case variant does (``IMG.XMP`` written on a camera
    card or by Windows tools), that existing file is used instead of creating a second sidecar.
    """
    photo = Path(photo)
    if style == "ext":
        wanted = photo.with_name(photo.name + ".xmp")
    elif style == "adobe":
        wanted = photo.with_name(photo.stem + ".xmp") if photo.suffix else photo.with_name(photo.name + ".xmp")
    else:
        raise ValueError(f"sidecar style must be 'ext' or 'adobe', not {style!r}")
    if wanted.exists():
        return wanted
    try:
        folded = wanted.name.casefold()
        for other in sorted(wanted.parent.iterdir()):
            if other.name.casefold() == folded and other.is_file():
                return other
    except OSError:
        pass
    return wanted


# -- parsing and merging ------------------------------------------------------------------------


def _skip_misc(text: str, pos: int) -> int:
    """Index after whitespace, the XML declaration, PIs, comments and DOCTYPE starting at ``pos``."""
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        for opener, closer in (("<?", "?>"), ("<!--", "-->"), ("<!", ">")):
            if text.startswith(opener, pos):
                end = text.find(closer, pos + len(opener))
                if end < 0:
                    raise XmpError(f"unterminated {opener!r} before the root element")
                pos = end + len(closer)
                break
        else:
            return pos


class _Document:
    """A parsed sidecar: the root element plus the verbatim text around it."""

    def __init__(self, text: str) -> None:
        start = _skip_misc(text, 0)
        m = re.compile(r"<([^\s/>]+)").match(text, start)
        if not m:
            raise XmpError("no root element")
        close = text.rfind(f"</{m.group(1)}")
        end = text.find(">", close) + 1 if close >= 0 else len(text)
        if close < 0:  # a self-closing root: everything after it is trailing misc
            end = text.find("/>", start) + 2
        self.head, body, self.tail = text[:start], text[start:end], text[end:]
        try:
            self.namespaces = [ns for _ev, ns in ET.iterparse(io.StringIO(body), events=("start-ns",))]
            parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
            self.root = ET.fromstring(body, parser=parser)
        except ET.ParseError as exc:
            raise XmpError(f"not well-formed XML: {exc}") from None
        if self.root.tag == _RDF_RDF:
            self.rdf = self.root
        else:
            found = self.root.find(f".//{_RDF_RDF}")
            if found is None:
                raise XmpError("no rdf:RDF element: not an XMP packet")
            self.rdf = found

    def descriptions(self) -> list[ET.Element]:
        return self.rdf.findall(_RDF_DESC)

    def get(self, name: str) -> str | None:
        """The first value of simple property ``xmp:<name>``, attribute or child element."""
        key = f"{{{XMP_NS}}}{name}"
        for desc in self.descriptions():
            if key in desc.attrib:
                return desc.attrib[key].strip()
            child = desc.find(key)
            if child is not None:
                return (child.text or "").strip()
        return None

    def set(self, name: str, value: str) -> None:
        """Set ``xmp:<name>`` everywhere it already is (keeping its form), else add an attribute."""
        key = f"{{{XMP_NS}}}{name}"
        found = False
        for desc in self.descriptions():
            if key in desc.attrib:
                desc.set(key, value)
                found = True
            for child in desc.findall(key):
                for grandchild in list(child):
                    child.remove(grandchild)
                child.text = value
                found = True
        if not found:
            self._home_description().set(key, value)

    def remove(self, name: str) -> None:
        key = f"{{{XMP_NS}}}{name}"
        for desc in self.descriptions():
            desc.attrib.pop(key, None)
            for child in desc.findall(key):
                desc.remove(child)

    def _home_description(self) -> ET.Element:
        """Where a new ``xmp:`` property goes: a description already using that namespace, else
        the first one, else a new ``rdf:Description rdf:about=""``."""
        descs = self.descriptions()
        for desc in descs:
            if any(k.startswith(f"{{{XMP_NS}}}") for k in desc.attrib) or any(
                isinstance(c.tag, str) and c.tag.startswith(f"{{{XMP_NS}}}") for c in desc
            ):
                return desc
        if descs:
            return descs[0]
        desc = ET.SubElement(self.rdf, _RDF_DESC, {_RDF_ABOUT: ""})
        desc.tail = "\n"
        return desc

    def serialise(self) -> str:
        with _ET_LOCK:
            for prefix, uri in self.namespaces:
                if prefix and not re.fullmatch(r"ns\d+", prefix):
                    # a reserved prefix raises: ElementTree then invents one; the URI is what counts
                    with contextlib.suppress(ValueError):
                        ET.register_namespace(prefix, uri)
            for prefix, uri in (("x", X_NS), ("rdf", RDF_NS), ("xmp", XMP_NS)):
                ET.register_namespace(prefix, uri)
            body = ET.tostring(self.root, encoding="unicode")
        return self.head + body + self.tail


def _decode(raw: bytes) -> tuple[str, bool]:
    """UTF-8 text of a sidecar and whether it started with a byte-order mark."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or raw[:4] in (b"\x00<\x00?", b"<\x00?\x00"):
        raise XmpError("UTF-16/32 sidecars are not supported; convert it to UTF-8 first")
    bom = raw.startswith(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8-sig"), bom
    except UnicodeDecodeError as exc:
        raise XmpError(f"not UTF-8: {exc}") from None


def _format_rating(stars: int) -> str:
    if not (stars == -1 or 0 <= stars <= 5):
        raise ValueError(f"XMP rating must be -1 (rejected) or 0..5, not {stars}")
    return str(int(stars))


def _same_rating(old: str | None, new: str) -> bool:
    try:
        return old is not None and math.isclose(float(old), float(new))
    except ValueError:
        return False


def _replace(path: Path, data: bytes) -> None:
    """Atomically replace a sidecar, keeping a symlink a symlink and the file's permission bits.

    The library's atomic writer replaces whatever is at ``path``: a symlinked sidecar (a shared
    metadata folder) would become a regular file, so the link target is written instead.
    """
    target = path.resolve() if path.is_symlink() else path
    try:
        mode: int | None = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    atomic_write_bytes(target, data)
    if mode is not None and target.stat().st_mode & 0o7777 != mode:
        os.chmod(target, mode)


def read_sidecar(path: str | Path) -> dict[str, str | None]:
    """``{"rating": ..., "label": ...}`` as stored (strings, or None when absent)."""
    text, _bom = _decode(Path(path).read_bytes())
    doc = _Document(text)
    return {"rating": doc.get("Rating"), "label": doc.get("Label")}


def update_sidecar(
    photo: str | Path,
    *,
    rating: int | None,
    label: str | None = None,
    clear_label: str | None = None,
    style: SidecarStyle = "ext",
    sidecar: Path | None = None,
    dry_run: bool = False,
) -> SidecarChange:
    """Merge ``xmp:Rating`` (and optionally ``xmp:Label``) into ``photo``'s sidecar.

    ``rating`` None leaves the rating alone; ``label`` None leaves the label alone unless it
    equals ``clear_label``, in which case it is removed. The photo is never opened. With
    ``dry_run`` nothing is written and the result says what would change. Raises
    :class:`XmpError` for a sidecar that cannot be merged without losing data.
    """
    photo = Path(photo)
    path = sidecar or sidecar_path(photo, style)
    existed = path.exists()
    if existed:
        raw = path.read_bytes()
        text, bom = _decode(raw)
    else:
        raw, text, bom = b"", _NEW_SIDECAR, False
    doc = _Document(text)
    old_rating, old_label = doc.get("Rating"), doc.get("Label")

    new_rating = old_rating
    if rating is not None:
        wanted = _format_rating(rating)
        if not _same_rating(old_rating, wanted):
            doc.set("Rating", wanted)
            new_rating = wanted
    new_label = old_label
    if label is not None and label != old_label:
        doc.set("Label", label)
        new_label = label
    elif label is None and clear_label is not None and old_label == clear_label:
        doc.remove("Label")
        new_label = None

    change = SidecarChange(photo, path, existed, old_rating, new_rating, old_label, new_label)
    if dry_run or not change.changed:
        return change
    data = doc.serialise().encode("utf-8")
    _replace(path, (b"\xef\xbb\xbf" if bom else b"") + data)
    return SidecarChange(photo, path, existed, old_rating, new_rating, old_label, new_label, written=True)


def apply_ratings(
    items: Iterable[tuple[str | Path, int | None, str | None, str | None]],
    *,
    style: SidecarStyle = "ext",
    dry_run: bool = False,
) -> list[SidecarChange]:
    """Update many sidecars; ``items`` are ``(photo, stars, label, clear_label)``.

    Never stops on one bad sidecar: failures come back as changes with ``error`` set. Photos that
    share one sidecar (``"adobe"`` style, ``IMG.CR2`` + ``IMG.jpg``) are written once when their
    values agree and skipped with an error when they do not, rather than letting the last one win.
    """
    by_sidecar: dict[Path, list[tuple[Path, int | None, str | None, str | None]]] = {}
    for photo, stars, label, clear in items:
        photo = Path(photo)
        by_sidecar.setdefault(sidecar_path(photo, style), []).append((photo, stars, label, clear))
    results: list[SidecarChange] = []
    for path, entries in by_sidecar.items():
        photo, stars, label, clear = entries[0]
        if len({(s, lab, c) for _p, s, lab, c in entries}) > 1:
            names = ", ".join(p.name for p, *_ in entries)
            for p, s, lab, _c in entries:
                results.append(SidecarChange(p, path, path.exists(), None, None if s is None else str(s), None, lab,
                                             error=f"{names} share {path.name} but have different ratings; "
                                                   "use the 'ext' sidecar style"))
            continue
        for p, *_rest in entries:
            try:
                results.append(update_sidecar(p, rating=stars, label=label, clear_label=clear, sidecar=path,
                                              dry_run=dry_run or p is not photo))
            except (XmpError, OSError, ValueError) as exc:
                results.append(SidecarChange(p, path, path.exists(), None, None, None, None, error=str(exc)))
    return results


def ratings_items(
    paths: Mapping[Hashable, str | Path], plans: Mapping[Hashable, Rating]
) -> list[tuple[Path, int | None, str | None, str | None]]:
    """Join photo paths (id → path) with :func:`~charmcli.cull.ratings.plan_ratings` output
    into :func:`apply_ratings` items; plans without a known path are skipped."""
    return [
        (Path(paths[key]), plan.stars, plan.label, plan.clear_label) for key, plan in plans.items() if key in paths
    ]


def sidecar_ratings(paths: Iterable[str]) -> tuple[dict[str, int], dict[str, str]]:
    """The ``xmp:Rating`` already in each photo's sidecar, read only (photo path → integer, 0 = none).

    The sidecar is the first that exists of ``IMG.ext.xmp`` and ``IMG.xmp``, in any letter case,
    as :func:`sidecar_path` would pick it; each folder is listed once, so a large shoot costs one
    directory read, not one per photo. Photos without a sidecar or whose sidecar holds no rating
    are absent; a sidecar that cannot be read is reported in the second dict (path → reason).
    """
    listings: dict[str, dict[str, str]] = {}
    found: dict[str, int] = {}
    problems: dict[str, str] = {}
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in listings:
            try:
                listings[folder] = {n.casefold(): n for n in os.listdir(folder)}
            except OSError:
                listings[folder] = {}
        names = listings[folder]
        stem = os.path.splitext(name)[0] if os.path.splitext(name)[1] else name
        for candidate in (name + ".xmp", stem + ".xmp"):
            real = names.get(candidate.casefold())
            if real is None:
                continue
            try:
                stars = rating_number(read_sidecar(os.path.join(folder, real))["rating"])
            except (XmpError, OSError) as exc:
                problems[path] = f"{real}: {exc}"
                break
            if stars is not None:
                found[path] = stars
            break
    return found, problems


def rating_number(value: str | None) -> int | None:
    """An ``xmp:Rating`` as read (``"3"``, or ``"3.0"`` from some tools) as an integer; None if absent or unreadable."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return round(number) if math.isfinite(number) else None
