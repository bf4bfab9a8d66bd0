"""Against a real `prefect server start`: deployments served by `python -m flows.deployments`, a
`prefect deployment run train-vaegan/demo` that lands in DVC, a failing run that fails with the stage's error
in its logs, and the rescrape deployment's cron schedule."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.repo_copy import commit, copy_repo

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(1)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    pytest.fail(f"timed out waiting for {what}\n{tail}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _start(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    # a session of its own, so the teardown can stop the process and everything it started
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _prefect(env: dict, cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A repo with the upstream stages done, a Prefect server, and the deployment runner serving it."""
    root = tmp_path_factory.mktemp("prefect")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(root / "home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PREFECT_PROFILES_PATH", None)
    server = _start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                    root, env, root / "server.log")
    procs = [server]
    try:
        _wait(lambda: _healthy(api), 240, "the Prefect server", server, root / "server.log")
        repo = copy_repo(root / "repo")
        up = subprocess.run([str(BIN / "dvc"), "repro", "shard"], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        commit(repo, "data stages")
        runner = _start([sys.executable, "-m", "flows.deployments"], repo, env, root / "runner.log")
        procs.append(runner)
        _wait(lambda: _prefect(env, repo, "deployment", "inspect", "rescrape/scheduled", timeout=60).returncode == 0,
              240, "the deployments to register", runner, root / "runner.log")
        yield repo, env
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _run_deployment(repo: Path, env: dict, name: str, *params: str) -> tuple[subprocess.CompletedProcess, str]:
    args = ["deployment", "run", name, "--watch", "--watch-timeout", "840"]
    for param in params:
        args += ["--param", param]
    proc = _prefect(env, repo, *args)
    match = re.search(r"UUID: ([0-9a-f-]{36})", proc.stdout)
    assert match, proc.stdout + proc.stderr
    logs = _prefect(env, repo, "flow-run", "logs", match.group(1), timeout=120).stdout
    return proc, logs


def test_train_vaegan_deployment_lands_in_dvc(served):
    repo, env = served
    lock_before = (repo / "dvc.lock").read_text()
    proc, logs = _run_deployment(repo, env, "train-vaegan/demo", 'overrides={"steps": 8}')
    assert proc.returncode == 0 and "Completed" in proc.stdout, proc.stdout + proc.stderr + logs
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["train_vaegan"]["preset"] == "demo"
    assert params["train_vaegan"]["overrides"] == {"steps": 8}
    assert (repo / "models" / "vaegan" / "model.pt").is_file()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["train_vaegan"]["params"]["params.yaml"]["train_vaegan"]["overrides"] == {"steps": 8}
    assert (repo / "dvc.lock").read_text() != lock_before
    # the stage's own output (the training flow's summary, printed inside `dvc exp run`) is in the run's logs
    assert "train vaegan summary" in logs, logs[-3000:]


def test_failing_stage_fails_the_run_with_its_error(served):
    repo, env = served
    proc, logs = _run_deployment(repo, env, "train-vaegan/demo", 'overrides={"no_such_key": 1}')
    assert "Failed" in proc.stdout or proc.returncode != 0, proc.stdout
    assert "no_such_key" in logs, logs[-3000:]


def test_rescrape_deployment_carries_its_cron_schedule(served):
    repo, env = served
    out = _prefect(env, repo, "deployment", "inspect", "rescrape/scheduled", timeout=60).stdout
    p = yaml.safe_load((repo / "params.yaml").read_text())["deployments"]
    assert p["rescrape_cron"] in out and p["timezone"] in out, out
