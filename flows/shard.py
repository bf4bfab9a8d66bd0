"""Stage `shard`: the kept images as Parquet shards with a deterministic, cluster-aware split."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import params, run_stage
from gencomp.data.shards import write_shards


@task(name="write-shards")
def shard(clusters: str, raw_dir: str, out_dir: str, target_mb: float, row_group_rows: int,
          split: dict, salt: str, resize: dict | None) -> dict:
    return write_shards(
        Path(clusters),
        Path(raw_dir),
        Path(out_dir),
        target_mb=target_mb,
        row_group_rows=row_group_rows,
        split_fractions=split,
        salt=salt,
        resize=resize,
    )


@flow(name="shard", log_prints=True)
def shard_flow() -> dict:
    p = params()
    manifest = shard(str(Path(p.dedupe.out) / "clusters.parquet"), p.scrape.out, p.shard.out,
                     p.shard.target_mb, p.shard.row_group_rows, dict(p.shard.split), p.shard.salt,
                     p.shard.resize.model_dump() if p.shard.resize else None)
    print(f"shards: {manifest.get('split_counts', manifest)}")
    return manifest


if __name__ == "__main__":
    run_stage(shard_flow)
