"""Shared fixtures. Prefect starts one test server for the whole session, and only when a test asks for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

# Under pytest-xdist (`make test` runs one worker per core) each worker's torch would use every core too, and
# OpenMP threads spin while they wait for each other: one share of the cores each.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENCOMP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect test server for the session; yields its API URL (pass it to subprocesses as PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def gan_path(tmp_path_factory):
    """A tiny random GAN model file (tests/tiny_models.py)."""
    from tests.tiny_models import write_tiny_gan

    return write_tiny_gan(tmp_path_factory.mktemp("gan") / "model.pt")


@pytest.fixture(scope="session")
def vaegan_path(tmp_path_factory):
    """A tiny random VAE-GAN model file with a fitted channel prior (tests/tiny_models.py)."""
    from tests.tiny_models import write_tiny_vaegan

    return write_tiny_vaegan(tmp_path_factory.mktemp("vaegan") / "model.pt")
