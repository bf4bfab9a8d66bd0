"""gencomp is the library: importing every module of it pulls in no Prefect, DVC or Scrapy."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r"""
import importlib, pkgutil, sys
import gencomp
for mod in pkgutil.walk_packages(gencomp.__path__, "gencomp."):
    importlib.import_module(mod.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {"prefect", "dvc", "scrapy", "twisted"})
print(",".join(bad))
"""


def test_gencomp_imports_no_orchestration_packages():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"gencomp imported: {out.stdout.strip()}"


def test_atomic_writes_leave_no_temp_file_and_normal_permissions(tmp_path):
    import os
    import stat

    import pytest

    from gencomp.atomic import write_bytes_atomic, write_with

    target = write_bytes_atomic(tmp_path / "sub" / "out.bin", b"abc")
    assert target.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask

    def crash(tmp):
        open(tmp, "wb").write(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_with(target, crash)
    assert target.read_bytes() == b"abc"  # the old file survives whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]
