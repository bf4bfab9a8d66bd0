"""Stage `shard`: the kept images as Parquet shards with a deterministic, cluster-aware split."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import params, run_stage
from gencomp.config import ShardParams
from gencomp.data.shards import write_shards


@task(name="write-shards")
def shard(clusters: Path, raw_dir: Path, p: ShardParams) -> dict:
    return write_shards(clusters, raw_dir, Path(p.out), target_mb=p.target_mb, row_group_rows=p.row_group_rows,
                        split_fractions=dict(p.split), salt=p.salt,
                        resize=p.resize.model_dump() if p.resize else None)


@flow(name="shard", log_prints=True)
def shard_flow() -> dict:
    p = params()
    manifest = shard(Path(p.dedupe.out) / "clusters.parquet", Path(p.scrape.out), p.shard)
    print(f"shards: {manifest.get('split_counts', manifest)}")
    return manifest


if __name__ == "__main__":
    run_stage(shard_flow)
