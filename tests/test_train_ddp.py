"""Two CPU processes with gloo DDP: ranks see different data yet end with identical weights; rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2
GAN = dict(steps=3, encoder_steps=2, batch_size=2, tile=32, g_width=4, d_width=4, e_width=4,
           checkpoint_every=2, val_every=100, log_every=1)
VAEGAN = dict(steps=3, batch_size=2, crop=32, width=4, d_width=4, adv_start=1, prior_fit_batches=1,
              checkpoint_every=2, val_every=100, log_every=1, rate_lambda=0.01, channel_set=[28, 4])
VAEGAN_HP = dict(VAEGAN, entropy_model="hyperprior", hyper_channels=8)  # its hyperprior's gradients too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, tmp: str) -> None:
    # what torchrun sets up for each process
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from test_train import AstronautCrops

    from gencomp.train.loop import train

    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)  # shared by both runs below
    try:
        results = {}
        for name, kind, overrides in (("gan", "gan", GAN), ("vaegan", "vaegan", VAEGAN),
                                      ("vaegan-hp", "vaegan", VAEGAN_HP)):
            # a different crop stream per rank, as the shard loader gives each rank its own shard
            summary = train(kind, data_dir=None, out_dir=Path(tmp) / name, overrides=overrides,
                            dataset=AstronautCrops(32, count=8, seed=rank), progress=False)
            results[name] = {k: summary.get(k) for k in ("weights_sha256", "world_size", "samples_consumed",
                                                          "fingerprint")}
        # a wall-clock limit that only rank 0 has reached: both ranks must stop at the same step, or the next
        # collective would hang (the test's timeout would catch that)
        late = dict(VAEGAN, steps=50, max_time_s=1e-9 if rank == 0 else 1e9)
        summary = train("vaegan", data_dir=None, out_dir=Path(tmp) / "late", overrides=late,
                        dataset=AstronautCrops(32, count=8, seed=rank), progress=False)
        results["late"] = {"step": summary["step"], "stopped_early": summary["stopped_early"]}
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_agree_on_weights(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD_SIZE)]
    for kind, steps in (("gan", 5), ("vaegan", 3), ("vaegan-hp", 3)):
        r0, r1 = ranks[0][kind], ranks[1][kind]
        assert r0["world_size"] == r1["world_size"] == WORLD_SIZE
        assert r0["samples_consumed"] == steps * 2 * WORLD_SIZE
        # different data on each rank: equal weights only if gradients were averaged across ranks
        assert r0["weights_sha256"] == r1["weights_sha256"]
        assert r0["fingerprint"] and r1["fingerprint"] is None  # only rank 0 writes files
        assert (tmp_path / kind / "model.pt").is_file() and (tmp_path / kind / "checkpoint.pt").is_file()
        assert len((tmp_path / kind / "metrics.jsonl").read_text().splitlines()) == steps
    assert ranks[0]["late"] == ranks[1]["late"] == {"step": 1, "stopped_early": True}
