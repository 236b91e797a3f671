"""Guarantee 7 at the CLI: an interrupted export or sidecar write leaves no half file under a
real name, no temporary litter, the old sidecar intact, and the next run completes.

(tests/library/test_lib_export.py proves it for ``export_files`` itself.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil

import pytest
from rel_helpers import error_lines, make_photo

import charmcli.library.export as export_mod
from charmcli.library.atomic import PARTIAL_SUFFIX

FOREIGN_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="0">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def scored(cli, tmp_path, model_args):
    lib = tmp_path / "lib"
    for i in range(5):
        make_photo(lib / f"p{i}.jpg", seed=i, size=(96, 64))
    assert cli("score", lib, *model_args).exit_code == 0
    return lib


def _exported(out):
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.endswith(PARTIAL_SUFFIX)], names  # no temporary litter
    return [n for n in names if n != "manifest.csv" and not n.startswith("manifest")]


def _half_then(exc, at: int):
    calls = {"n": 0}
    real = shutil.copyfile

    def copy(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] != at:
            return real(src, dst, *args, **kwargs)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fout.write(fin.read()[:300])  # half a photo on disk...
        raise exc  # ...then the disk fills up / the user presses Ctrl-C

    return copy


def test_export_dying_mid_copy_leaves_no_partial_file_and_the_next_export_completes(
    cli, scored, tmp_path, monkeypatch
):
    sources = {_sha(p): p for p in scored.iterdir()}
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(
            export_mod.shutil, "copyfile", _half_then(OSError(errno.ENOSPC, "No space left on device"), at=3)
        )
        full = cli("top", "5", "--export", out)
    assert full.exit_code == 1 and "Traceback" not in full.stderr
    assert len(error_lines(full.stderr)) == 1 and "No space left on device" in full.stderr
    assert "Exported 4 of 5" in full.stderr
    names = _exported(out)
    assert len(names) == 4 and not any(n.startswith("0003_") for n in names)
    assert all(_sha(out / n) in sources for n in names)  # every file under a final name is whole

    out2 = tmp_path / "out2"
    with monkeypatch.context() as m:
        m.setattr(export_mod.shutil, "copyfile", _half_then(KeyboardInterrupt(), at=2))
        ctrl_c = cli("top", "5", "--export", out2)
    assert ctrl_c.exit_code == 130 and "Traceback" not in ctrl_c.stderr
    names = _exported(out2)
    assert [n[:5] for n in names] == ["0001_"] and _sha(out2 / names[0]) in sources

    again = cli("top", "5", "--export", out2)  # completes; keeps the whole copy already there
    assert again.exit_code == 0, again.stderr
    assert "1 already there" in again.stderr
    names = _exported(out2)
    assert len(names) == 5 and all(_sha(out2 / n) in sources for n in names)
    assert {_sha(out2 / n) for n in names} == set(sources)


def test_sidecar_write_dying_keeps_the_old_sidecar_whole(cli, scored, monkeypatch):
    import typer.main

    from charmcli.cli import app

    if "rate" not in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        pytest.skip("this build has no `charm rate` (XMP sidecars) yet")
    sidecar = scored / "p0.jpg.xmp"
    sidecar.write_text(FOREIGN_SIDECAR, encoding="utf-8")
    before = sidecar.read_bytes()
    real_replace = os.replace

    def dying_replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".xmp"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", dying_replace)
        result = cli("rate", scored)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 5  # one line per photo whose sidecar could not be written
    assert sidecar.read_bytes() == before  # the old sidecar, whole
    assert sorted(p.name for p in scored.iterdir() if p.suffix == ".xmp") == ["p0.jpg.xmp"]
    assert not [p for p in scored.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]

    done = cli("rate", scored)
    assert done.exit_code == 0, done.stderr
    text = sidecar.read_text(encoding="utf-8")
    assert "holiday" in text and 'xmp:Rating="0"' not in text  # merged: foreign fields kept, rating new
    assert len([p for p in scored.iterdir() if p.suffix == ".xmp"]) == 5


def test_link_export_across_filesystems_names_the_real_options(cli, scored, tmp_path, monkeypatch):
    real_link = os.link

    def exdev(src, dst, *args, **kwargs):  # photos live on another filesystem than the export
        if str(src).endswith(PARTIAL_SUFFIX):  # the manifest's own temp file is in the same folder
            return real_link(src, dst, *args, **kwargs)
        raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))

    monkeypatch.setattr(os, "link", exdev)
    result = cli("top", "3", "--export", tmp_path / "out", "--link")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 3 and all("use --copy or --symlink" in line for line in lines)
    assert "Exported 0 of 3" in result.stderr
    monkeypatch.undo()
    assert cli("top", "3", "--export", tmp_path / "out", "--symlink").exit_code == 0  # the advice works
