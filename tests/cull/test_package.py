"""The culling package is library code: usable without torch (and without loading a model)."""

from __future__ import annotations

import subprocess
import sys


def test_cull_modules_never_import_torch():
    modules = ["groups", "ratings", "xmp", "report", "explain"]
    code = (
        "import sys\n"
        + "".join(f"import charmcli.cull.{m}\n" for m in modules)
        + "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
