"""Stage `domain@<name>`: one enabled domain's images as a shard set in ``<domains.out>/<name>``.

`python -m flows.domains faces aerial` builds those domains; with no names, every domain in
``domains.enabled``. A domain that is not enabled is refused, so a disabled domain's folder is never read.
"""

from __future__ import annotations

import sys

from prefect import flow, task

from flows.common import params, run_stage
from gencomp.config import DomainsParams
from gencomp.data.domains import build_domain_shards


class DomainNotEnabled(ValueError):
    """A domain asked for that domains.enabled does not list."""


def chosen_domains(p: DomainsParams, names: list[str] | None) -> list[str]:
    """``names`` (default: every enabled domain), each checked to be enabled."""
    names = list(p.enabled) if not names else list(names)
    for name in names:
        if name not in p.enabled:
            raise DomainNotEnabled(f"domain {name!r} is not in domains.enabled ({p.enabled or 'none'}); "
                                   f"add it there (domains: {sorted(p.entries)})")
    return names


@task(name="build-domain")
def build_domain(name: str, p: DomainsParams) -> dict:
    return build_domain_shards(p.entries[name].spec(name), p.shards_dir(name))


@flow(name="domains", log_prints=True)
def domains_flow(names: list[str] | None = None) -> dict[str, dict]:
    p = params().domains
    done = {}
    for name in chosen_domains(p, names):
        manifest = build_domain(name, p)
        record = manifest["domain"]
        print(f"domain {name}: {record['images']} images, {len(record['refused'])} refused, "
              f"splits {manifest.get('split_counts')}, {'up to date' if manifest['up_to_date'] else 'written'} "
              f"in {p.shards_dir(name)}")
        done[name] = {"images": record["images"], "refused": len(record["refused"]),
                      "split_counts": manifest.get("split_counts"), "up_to_date": manifest["up_to_date"]}
    return done


if __name__ == "__main__":
    run_stage(lambda: domains_flow(sys.argv[1:] or None))
