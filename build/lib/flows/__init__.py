"""Prefect flows, one per dvc.yaml stage: orchestration only (tasks, retries, parallelism, logging).

The work itself lives in the gencomp library. Importing this package sets offline-friendly Prefect defaults
before Prefect is imported; any of them can be overridden from the environment.
"""

import os

# No telemetry from an offline machine, and a first start of the ephemeral server in a fresh PREFECT_HOME can
# take far longer than Prefect's 20 s default on a loaded 2-core CI machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
