"""Small truths kept in one place: the process umask read when a file is written, not at import; the params
file named when it is read; a bounded model cache; evaluation and report sharing one sample layout."""

from __future__ import annotations

import os
import shutil
import stat

from tests.conftest import REPO


def test_outputs_follow_the_umask_of_the_moment(tmp_path):
    from gencomp.atomic import write_bytes_atomic

    before = os.umask(0o077)
    try:
        write_bytes_atomic(tmp_path / "private", b"x")
        os.umask(0o022)
        write_bytes_atomic(tmp_path / "shared", b"x")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private", "shared"]


def test_the_params_file_is_named_when_it_is_read(tmp_path, monkeypatch):
    from flows.common import params, params_file

    shutil.copyfile(REPO / "params.yaml", tmp_path / "mine.yaml")
    monkeypatch.setenv("GENCOMP_PARAMS", str(tmp_path / "mine.yaml"))
    assert params_file() == tmp_path / "mine.yaml"
    assert params().evaluate.grid  # read from there
    monkeypatch.delenv("GENCOMP_PARAMS")
    assert params_file().name == "params.yaml"


def test_the_model_cache_keeps_a_few_models(tmp_path):
    from gencomp.codecs import base

    shipped = base.shipped_model_path("vaegan")
    base._model_cache.clear()
    paths = []
    for k in range(base.MODEL_CACHE_SIZE + 2):
        paths.append(tmp_path / f"m{k}.pt")
        shutil.copyfile(shipped, paths[-1])
        base.load_model_cached(paths[-1])
    assert len(base._model_cache) == base.MODEL_CACHE_SIZE
    newest = base.load_model_cached(paths[-1])
    assert base.load_model_cached(paths[-1]) is newest  # a hit, not a reload
    assert str(paths[0].resolve()) not in {key[0] for key in base._model_cache}  # the oldest went first
    base._model_cache.clear()


def test_evaluation_and_report_share_one_sample_layout():
    import gencomp.evaluate as evaluate
    import gencomp.report as report
    import gencomp.samples as samples

    assert evaluate.sample_folder is report.sample_folder is samples.sample_folder
    assert evaluate.slugify is report.slugify is samples.slugify
    assert "gencomp.report" not in open(evaluate.__file__).read()  # evaluation does not reach into the report
