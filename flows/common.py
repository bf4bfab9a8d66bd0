"""What every stage flow shares: reading its params section and running a subprocess into the flow's logs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from prefect import get_run_logger

from gencomp.config import Params, ParamsError, load_params

def params_file() -> Path:
    """params.yaml of the working directory, or the file $GENCOMP_PARAMS names (read at each call)."""
    return Path(os.environ.get("GENCOMP_PARAMS", "params.yaml"))


def params() -> Params:
    """The whole params file, validated: every stage calls this before any work, so a typo in any section (a
    grid setting, a training override) stops the first stage that runs, naming the key."""
    return load_params(params_file())


def run_stage(stage_flow) -> None:
    """`python -m flows.<stage>` (what dvc.yaml runs): validate the whole params file before Prefect starts, so a
    typo anywhere fails the stage at once with exit code 2 and the key's path; then run the stage's flow."""
    try:
        params()
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    stage_flow()


class StageFailed(RuntimeError):
    """A stage's subprocess exited non-zero; the message carries the end of its output."""


def run_logged(cmd: list[str], *, cwd: str | Path | None = None, env: dict | None = None) -> str:
    """Run a command, streaming each output line into the Prefect run's logs.

    Returns the last line of output (commands print a JSON summary there). Raises StageFailed with the last
    lines of output when the command fails, so the flow run fails with the cause in its logs.
    """
    logger = get_run_logger()
    logger.info("running: %s", " ".join(cmd))
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        logger.info(line)
    code = proc.wait()
    if code != 0:
        raise StageFailed(f"{cmd[0]} {' '.join(cmd[1:3])}... exited with {code}:\n" + "\n".join(tail))
    return tail[-1] if tail else ""
