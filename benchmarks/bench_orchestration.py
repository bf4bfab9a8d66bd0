"""Wall time of the demo pipeline and Prefect's per-stage overhead, with and without a running server.

    python benchmarks/bench_orchestration.py [--tiny]

For each mode (ephemeral: every stage process starts its own temporary Prefect server; server: a
`prefect server start` runs and PREFECT_API_URL points at it) it copies the repository into a fresh git repo,
times a clean `dvc repro`, a no-op `dvc repro`, and three runs of the cheapest stage alone
(`python -m flows.report`, whose own work takes well under a second), whose time is mostly orchestration.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.repo_copy import commit, copy_repo  # noqa: E402

BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed


def fresh_repo(root: Path, name: str, tiny: bool) -> Path:
    repo = copy_repo(root / name)
    if not tiny:  # copy_repo shrinks params for tests; the benchmark runs the real demo params
        (repo / "params.yaml").write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
        commit(repo, "demo params")
    return repo


def measure(repo: Path, env: dict) -> dict:
    result = {"clean_repro_s": timed([str(BIN / "dvc"), "repro"], repo, env),
              "noop_repro_s": timed([str(BIN / "dvc"), "repro"], repo, env)}
    stage = [timed([sys.executable, "-m", "flows.report"], repo, env) for _ in range(3)]
    result["report_stage_s"] = statistics.median(stage)
    return result


def start_server(root: Path, env: dict) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env={**env, "PREFECT_HOME": str(root / "prefect-home")}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2):
                return proc, api
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("prefect server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the test suite's tiny params instead of the demo's")
    args = parser.parse_args()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = {"ephemeral": measure(fresh_repo(root, "ephemeral", args.tiny), env)}
        server, api = start_server(root, env)
        try:
            rows["server"] = measure(fresh_repo(root, "server", args.tiny), {**env, "PREFECT_API_URL": api})
        finally:
            os.killpg(server.pid, 15)
            server.wait()
    print(f"{'mode':10} {'clean dvc repro':>16} {'no-op dvc repro':>16} {'report stage alone':>19}")
    for mode, r in rows.items():
        print(f"{mode:10} {r['clean_repro_s']:15.1f}s {r['noop_repro_s']:15.1f}s {r['report_stage_s']:18.1f}s")
    e, s = rows["ephemeral"], rows["server"]
    print(f"per-stage overhead saved by a running server: {e['report_stage_s'] - s['report_stage_s']:.1f} s "
          f"(x{e['report_stage_s'] / max(s['report_stage_s'], 1e-9):.1f} faster stage)")


if __name__ == "__main__":
    main()
