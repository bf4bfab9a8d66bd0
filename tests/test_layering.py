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
