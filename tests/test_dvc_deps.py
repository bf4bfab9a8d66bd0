"""dvc.yaml's deps match the code: each stage depends on every project module its flow can import.

The import closure is computed from the source, not by importing: every ``import`` / ``from ... import`` in a
module (at the top, inside functions, under ``if TYPE_CHECKING``) and every string literal that names a project
module (Scrapy loads its spiders, middlewares and pipelines from settings strings; the crawl runs as
``python -m scraper.crawl``) is followed, transitively, within the project's packages. A stage whose deps miss a
module it uses would be called up to date by ``dvc status`` after that module changed; this test fails instead.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PACKAGES = ("gencomp", "flows", "scraper")
_DOTTED = ("gencomp.", "flows.", "scraper.")
# Imports that check settings and never shape a stage's outputs: every stage validates the whole params.yaml
# (gencomp/config.py), and for that config looks up the codec registry, the evaluation grid's rules, the
# training presets and the domain spec's checks. A change there can make a stage refuse its params, not compute something else, so it is no
# dependency of the stages that do not otherwise use those modules.
VALIDATION_ONLY = {"gencomp/config.py": {"gencomp.codecs", "gencomp.codecs.base", "gencomp.evaluate",
                                         "gencomp.train.presets", "gencomp.data.domains"}}


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (or of its longest importable prefix: 'a.b.Class' -> a/b.py)."""
    parts = name.split(".")
    while parts and parts[0] in PACKAGES:
        base = REPO.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        parts = parts[:-1]
    return None


def _imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules imported by name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(_DOTTED):
            names.add(node.value.split()[0])
    return names


def import_closure(start: Path) -> set[Path]:
    """Every project file reachable from ``start`` through imports, with the packages' __init__ files."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        skip = VALIDATION_ONLY.get(path.relative_to(REPO).as_posix(), set())
        for name in _imported_names(path):
            if any(name == s or name.startswith(s + ".") for s in skip):
                continue
            parts = name.split(".")
            for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
                found = module_file(".".join(parts[:k]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def _stages() -> dict[str, dict]:
    """Every stage of dvc.yaml; a `foreach` or `matrix` stage (one per domain...) as its template, so that it is
    checked even when params.yaml generates none of it (no domain enabled)."""
    stages = {}
    for name, spec in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in spec:
            spec = spec["do"]
        stages[name] = {k: v for k, v in spec.items() if k != "matrix"}
    return stages


def _templated(path: str) -> bool:
    """A path made of settings (``${domains.out}/${item}``): data, not code, and absent unless generated."""
    return "${" in path


def _flow_module(cmd: str) -> str:
    words = cmd.split()
    assert words[:2] == ["python", "-m"], f"stage command {cmd!r} is not `python -m <flow module>`"
    return words[2]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_every_module_a_stage_imports_is_one_of_its_deps(stage):
    spec = _stages()[stage]
    entry = module_file(_flow_module(spec["cmd"]))
    assert entry is not None, spec["cmd"]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]
    missing = sorted(p.relative_to(REPO).as_posix() for p in import_closure(entry) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} uses these modules but does not depend on them: {missing}"


def test_templated_stages_are_checked_as_templates():
    """The domain stages exist only for enabled domains (none by default): their templates are still checked,
    and their flows are the modules the command names."""
    stages = _stages()
    assert _flow_module(stages["domain"]["cmd"]) == "flows.domains"
    assert _flow_module(stages["train_domain"]["cmd"]) == "flows.train_domain"
    assert "gencomp/data/domains.py" in stages["domain"]["deps"]


def test_the_closure_follows_lazy_imports_and_module_strings():
    """The scanner itself: imports inside functions, and modules Scrapy or a subprocess load by name."""
    train = {p.relative_to(REPO).as_posix() for p in import_closure(REPO / "flows" / "train_vaegan.py")}
    assert {"flows/train.py", "gencomp/train/loop.py", "gencomp/data/loader.py", "gencomp/data/images.py",
            "gencomp/codecs/vaegan.py", "gencomp/__init__.py"} <= train
    scrape = {p.relative_to(REPO).as_posix() for p in import_closure(REPO / "flows" / "scrape.py")}
    assert {"scraper/crawl.py", "scraper/pipelines.py", "scraper/middlewares.py"} <= scrape


def test_changing_a_library_module_a_stage_uses_makes_dvc_report_it_changed(tmp_path):
    """On a copy of the repository whose pipeline is up to date (recorded with `dvc commit`, nothing run),
    editing gencomp/data/images.py -- the one decode path, used by every data stage -- makes `dvc status` list
    every stage that decodes images, and not the report stage, which does not."""
    from tests.repo_copy import commit, copy_repo

    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    work = copy_repo(tmp_path / "repo")
    for stage, spec in _stages().items():  # stand-ins for every output and input, so `dvc commit` records them
        for entry in spec.get("outs", []) + spec.get("metrics", []) + spec.get("plots", []) + spec["deps"]:
            target = work / (entry if isinstance(entry, str) else next(iter(entry)))
            if _templated(str(target)) or target.exists():
                continue
            if not target.suffix:
                target.mkdir(parents=True, exist_ok=True)
                (target / "stand-in").write_text(stage)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(stage)
    run = lambda *args: subprocess.run([dvc, *args], cwd=work, capture_output=True, text=True, timeout=600)  # noqa: E731
    done = run("commit", "--force")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "changed" not in run("status").stdout
    commit(work, "pipeline recorded")

    images = work / "gencomp" / "data" / "images.py"
    images.write_text(images.read_text() + "\n# an edit\n")
    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    changed = set(yaml.safe_load(status.stdout))
    for stage in ("scrape", "dedupe", "shard", "train_gan", "train_vaegan", "evaluate"):
        assert stage in changed, (stage, sorted(changed))
    assert "report" not in changed, sorted(changed)
