"""Accuracy of the dedupe stage on copies as the web makes them, through the real pipeline (run_dedupe).

    python benchmarks/dedupe_accuracy.py --photos ../shared/data/photos --domains ../shared/data/domains \\
        --work /tmp/dedupe_bench [--half report|tune|all] [--max-side 640] [--faces 1000] [--workers 2]

Photos: each photo is reduced to at most ``--max-side`` px and stored as JPEG q95 ("the original"); every
transform of benchmarks/dedupe_transforms.py (single ones at several strengths, and combinations) is applied
to it. The photos are split in two halves by a hash of their file name: ``tune`` (where thresholds were
chosen) and ``report`` (nobody looked at it while choosing). The pool of originals and copies of one half is
deduplicated by each configuration below, and from clusters.parquet:

- recall per transform: the share of originals whose copy is in the original's cluster;
- false pairs / precision: over every pair of files that share a cluster, the ones from different photos.

``--choose`` (run it on the tune half) instead picks ``verify_threshold`` by a stated rule, from the
verification scores of that half alone: the highest threshold that keeps 99 % of the copies of every goal
transform (GOAL_TRANSFORMS): the lowest of their 1st percentiles, rounded down to 0.01. Precision is the goal
without slack (no cluster may mix two people), so the threshold sits as far from the look-alikes as the
recall goals allow. It prints the margin to the highest negative (a candidate pair, at the search threshold,
of two different photos, or of faces of two different people, the faces split into halves by identity as
the photos are); a margin of 0 or less means that no threshold keeps both.

Domains: the faces (MANIFEST.tsv gives each face's identity; the people of the half, split as the photos
are; ``--faces`` of their faces, with a flip, an 8 % crop and a caption copy of each), aerial and textures:
false pairs among different source files and, on faces, the clusters that mix two people. Candidate recall
per hash kind (what each kind buys) is computed from the hash cache of the photo pool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedupe_transforms as T  # noqa: E402

from gencomp.data import dedupe  # noqa: E402
from gencomp.data.hashing import CANDIDATE_KINDS, as_uint64, hash_files, read_hash_cache  # noqa: E402
from gencomp.data.images import ImageRejected, open_image  # noqa: E402
from gencomp.data.verify import verify_pairs  # noqa: E402

CONFIGS = {
    "pHash t=8 (before)": dict(method="hash", threshold=8),
    "candidates t=8 unverified": dict(method="verified", threshold=8, verify_threshold=-1.0, guard_threshold=-1.0),
    "verified without guard": dict(method="verified", threshold=8, guard_threshold=-1.0),
    "verified (default)": dict(method="verified"),
}
FACE_TRANSFORMS = ("hflip", "crop_8", "caption_s")
# The transforms named by the goals (resize, recompression, greyscale, contrast, 8 % crop, 3 degree turn,
# caption, flip): their copies must verify; the threshold rule of --choose keeps their 1st percentile above it.
GOAL_TRANSFORMS = ("resize_25", "jpeg_q10", "grey", "contrast_130", "crop_8", "rot_3", "rot_m3", "caption_s",
                   "caption_l", "hflip")


def _seed(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def half_of(name: str) -> str:
    return "tune" if _seed("split/" + name) % 2 == 0 else "report"


def _make_one(job):
    src, source, out_root, transforms, max_side, reencode = job
    try:
        img = open_image(Path(src))
    except ImageRejected:
        return []
    if max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    rows = []
    orig_path = Path(out_root) / "original" / f"{source}.jpg"
    if reencode:
        orig_path.parent.mkdir(parents=True, exist_ok=True)
        if not orig_path.exists():
            orig_path.write_bytes(T.jpeg(img, 95))
        base = open_image(orig_path)
    else:
        orig_path, base = Path(src), img
    rows.append((str(orig_path), source, "original"))
    for name in transforms:
        p = Path(out_root) / name / f"{source}.jpg"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(T.apply(name, base, _seed(source)))
        rows.append((str(p), source, name))
    return rows


def build_pool(jobs, workers) -> pd.DataFrame:
    with ProcessPoolExecutor(workers) as pool:
        rows = [r for rs in pool.map(_make_one, jobs, chunksize=8) for r in rs]
    return pd.DataFrame(rows, columns=["path", "source", "transform"])


def run_config(pool: pd.DataFrame, root: Path, out: Path, cfg: dict, workers: int) -> tuple[pd.DataFrame, dict, float]:
    shared = out.parent / "hashes.parquet"  # one hash cache for every configuration of a pool
    out.mkdir(parents=True, exist_ok=True)
    if shared.is_file() and not (out / "hashes.parquet").is_file():
        shutil.copy(shared, out / "hashes.parquet")
    t0 = time.perf_counter()
    summary = dedupe.run_dedupe(root, out, workers=workers, contact_sheet_clusters=12, **cfg)
    if not shared.is_file():
        shutil.copy(out / "hashes.parquet", shared)
    dt = time.perf_counter() - t0
    clusters = pd.read_parquet(out / "clusters.parquet")
    rel = {str(Path(p).relative_to(root)): k for k, p in enumerate(pool["path"])}
    clusters = clusters[clusters["path"].isin(rel)]
    idx = clusters["path"].map(rel).to_numpy()
    labelled = pool.iloc[idx].assign(cluster=clusters["cluster_key"].to_numpy(),
                                     join_hashes=clusters["join_hashes"].to_numpy())
    return labelled, summary, dt


def metrics(labelled: pd.DataFrame, group: str = "source") -> dict:
    by_key = dict(zip(zip(labelled["source"], labelled["transform"]), labelled["cluster"]))
    recall = {}
    for t in sorted(set(labelled["transform"]) - {"original"}):
        sub = labelled[labelled["transform"] == t]
        recall[t] = float(np.mean([by_key[(s, "original")] == c for s, c in zip(sub["source"], sub["cluster"])]))
    true_pairs = false_pairs = 0
    for _, g in labelled.groupby("cluster"):
        if len(g) < 2:
            continue
        counts = g[group].value_counts()
        same = int((counts * (counts - 1) // 2).sum())
        true_pairs += same
        false_pairs += len(g) * (len(g) - 1) // 2 - same
    mixed = int((labelled.groupby("cluster")[group].nunique() > 1).sum())
    precision = true_pairs / (true_pairs + false_pairs) if true_pairs + false_pairs else 1.0
    return {"recall": recall, "false_pairs": false_pairs, "true_pairs": true_pairs, "precision": precision,
            "mixed_clusters": mixed}


def candidate_recall(pool: pd.DataFrame, root: Path, cache: Path, threshold: int,
                     verify_threshold: float = dedupe.DEFAULT_VERIFY_THRESHOLD) -> pd.DataFrame:
    """Per transform: the share of (original, copy) pairs within ``threshold`` for subsets of hash kinds."""
    hashes = read_hash_cache(cache).set_index("sha256")
    from gencomp.data.hashing import sha256_file

    shas = [sha256_file(p) for p in pool["path"]]
    feats = hashes.loc[shas]
    ent = {}
    for k in CANDIDATE_KINDS:
        ent[k] = np.stack([as_uint64(feats[k].to_numpy().astype(np.int64)),
                           as_uint64(feats[f"{k}_alt"].to_numpy().astype(np.int64))], axis=1)
    ph = as_uint64(feats["phash"].to_numpy().astype(np.int64))
    src = pool["source"].to_numpy()
    tr = pool["transform"].to_numpy()
    orig = {s: i for i, (s, t) in enumerate(zip(src, tr)) if t == "original"}
    subsets = {"pHash": None, "full": ["full"], "full+c60": ["full", "c60"], "full+c92": ["full", "c92"],
               "full+c92+c60": ["full", "c92", "c60"]}
    rows = []
    for t in sorted(set(tr) - {"original"}):
        ci = np.nonzero(tr == t)[0]
        oi = np.array([orig[s] for s in src[ci]])
        row = {"transform": t}
        for name, kinds in subsets.items():
            if kinds is None:
                d = np.bitwise_count(ph[oi] ^ ph[ci])
            else:
                d = np.min([np.bitwise_count(ent[ka][oi][:, x] ^ ent[kb][ci][:, y])
                            for ka in kinds for kb in kinds for x in (0, 1) for y in (0, 1)], axis=0)
            row[name] = float(np.mean(d <= threshold))
        # the strict pairwise figure: a candidate by the default kinds AND verified, the copy alone
        sc, _ = verify_pairs(_thumbs(feats, oi), _thumbs(feats, ci), None,
                             aspect_a=_aspect(feats, oi), aspect_b=_aspect(feats, ci))
        row["candidate and verified (pair alone)"] = float(np.mean((d <= threshold) & (sc >= verify_threshold)))
        rows.append(row)
    return pd.DataFrame(rows)


def _thumbs(feats, idx):
    return np.stack([np.frombuffer(v, dtype=np.uint8) for v in feats["thumb"].to_numpy()[idx]])


def _aspect(feats, idx):
    return (feats["width"].astype(float) / feats["height"].astype(float)).to_numpy()[idx]


def _person_of(folder: Path) -> dict:
    man = pd.read_csv(folder / "MANIFEST.tsv", sep="\t")
    return dict(zip(man["file"].str.replace(".jpg", "", regex=False), man["path_in_repo"].str.split("/").str[2]))


def _negative_scores(feats: pd.DataFrame, group: np.ndarray, threshold: int, workers: int) -> np.ndarray:
    """Verification scores of the candidate pairs (at ``threshold``) whose two files are of different groups."""
    a, b, _, mirror, _ = dedupe.candidate_edges(feats, threshold, workers=workers)
    neg = group[a] != group[b]
    a, b, mirror = a[neg], b[neg], mirror[neg]
    if not len(a):
        return np.zeros(0)
    idx = np.arange(len(feats))
    sc, _ = verify_pairs(_thumbs(feats, idx[a]), _thumbs(feats, idx[b]), mirror,
                         aspect_a=_aspect(feats, idx[a]), aspect_b=_aspect(feats, idx[b]))
    return sc


def choose_threshold(pool: pd.DataFrame, args, threshold: int = dedupe.DEFAULT_THRESHOLD) -> dict:
    """The --choose rule (module docstring) on this half's photos and faces; prints the distributions."""
    feats = hash_files(pool["path"], workers=args.workers)
    src, tr = pool["source"].to_numpy(), pool["transform"].to_numpy()
    orig = {s: i for i, (s, t) in enumerate(zip(src, tr)) if t == "original"}
    rows = []
    for t in sorted(set(tr) - {"original"}):
        ci = np.nonzero(tr == t)[0]
        oi = np.array([orig[s] for s in src[ci]])
        sc, _ = verify_pairs(_thumbs(feats, oi), _thumbs(feats, ci), None,
                             aspect_a=_aspect(feats, oi), aspect_b=_aspect(feats, ci))
        rows.append({"transform": t, "goal": t in GOAL_TRANSFORMS, "p1": float(np.quantile(sc, 0.01)),
                     "p5": float(np.quantile(sc, 0.05)), "min": float(sc.min())})
    pos = pd.DataFrame(rows)
    negatives = {"photos": _negative_scores(feats, src, threshold, args.workers)}
    faces = Path(args.domains or "") / "faces"
    if args.domains and (faces / "MANIFEST.tsv").is_file():
        person = _person_of(faces)
        files = [p for p in sorted(faces.glob("*.jpg")) if args.half == "all" or half_of(person[p.stem]) == args.half]
        ff = hash_files(files, workers=args.workers)
        negatives["faces"] = _negative_scores(ff, np.array([person[p.stem] for p in files]), threshold, args.workers)
    goal_p1 = float(pos.loc[pos["goal"], "p1"].min())
    neg_max = max(float(v.max()) for v in negatives.values() if len(v))
    chosen = math.floor(goal_p1 * 100 + 1e-9) / 100
    print(f"\n## verification scores on the {args.half} half (candidate search at {threshold} bits)\n")
    print(pos.to_markdown(index=False, floatfmt=".3f"))
    for k, v in negatives.items():
        q = np.quantile(v, [0.5, 0.99, 0.999]) if len(v) else [np.nan] * 3
        print(f"\nnegatives, {k}: {len(v)} candidate pairs; median {q[0]:.3f}, p99 {q[1]:.3f}, p99.9 {q[2]:.3f}, "
              f"max {v.max() if len(v) else float('nan'):.3f}")
    print(f"\nrule: the lowest goal-transform p1 {goal_p1:.3f}, rounded down: verify_threshold {chosen:.2f} "
          f"(the default is {dedupe.DEFAULT_VERIFY_THRESHOLD}); margin to the highest negative ({neg_max:.3f}): "
          f"{chosen - neg_max:+.3f}" + ("" if chosen > neg_max else ": NO threshold keeps both"))
    return {"positives": rows, "negatives": {k: {"n": len(v), "max": float(v.max()) if len(v) else None}
                                             for k, v in negatives.items()},
            "goal_p1": goal_p1, "negative_max": neg_max, "verify_threshold": chosen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", required=True, help="folder of photos (e.g. ../shared/data/photos)")
    ap.add_argument("--domains", default=None, help="folder with faces/, aerial/, textures/ (optional)")
    ap.add_argument("--work", required=True, help="scratch folder for the generated copies and outputs")
    ap.add_argument("--half", choices=("tune", "report", "all"), default="report")
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--faces", type=int, default=1000, help="faces used (with their copies); 0: none")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names of CONFIGS")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument("--skip-candidates", action="store_true", help="leave out the candidate-recall table")
    ap.add_argument("--choose", action="store_true",
                    help="pick verify_threshold by the rule of the docstring on this half (use --half tune) and stop")
    args = ap.parse_args()
    work = Path(args.work)
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    report: dict = {"half": args.half, "configs": {}}

    photos = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = [p for p in photos if args.half == "all" or half_of(p.relative_to(args.photos).as_posix()) == args.half]
    root = work / f"photos_{args.half}"
    jobs = [(str(p), f"{p.parent.name}_{p.stem}", str(root), T.TRANSFORMS, args.max_side, True) for p in photos]
    t0 = time.perf_counter()
    pool = build_pool(jobs, args.workers)
    print(f"{len(photos)} photos ({args.half} half) -> {len(pool)} files in {time.perf_counter() - t0:.0f} s\n")
    if args.choose:
        report["choose"] = choose_threshold(pool, args)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=float))
        return

    table = {}
    for name in configs:
        labelled, summary, dt = run_config(pool, root, work / f"out_photos_{args.half}" / name.replace(" ", "_"),
                                           CONFIGS[name], args.workers)
        m = metrics(labelled)
        m.update(seconds=dt, verified_pairs=summary.get("verified_pairs"))
        table[name] = m
        report["configs"][name] = {"photos": m}
        print(f"{name}: precision {m['precision']:.4f}, false pairs {m['false_pairs']}, {dt:.0f} s", flush=True)
    print("\n| transform | " + " | ".join(configs) + " |")
    print("|---|" + "---|" * len(configs))
    for t in T.TRANSFORMS:
        print(f"| {t} | " + " | ".join(f"{table[c]['recall'][t]:.3f}" for c in configs) + " |")
    print("| **precision** (false pairs) | " + " | ".join(
        f"{table[c]['precision']:.4f} ({table[c]['false_pairs']})" for c in configs) + " |")

    verified_out = work / f"out_photos_{args.half}" / "verified_(default)"
    if (verified_out / "hashes.parquet").is_file() and not args.skip_candidates:
        cand = candidate_recall(pool, root, verified_out / "hashes.parquet", 8)
        report["candidate_recall_t8"] = cand.to_dict(orient="records")
        print("\n## candidate recall at 8 bits by hash kinds (before verification)\n")
        print(cand.to_markdown(index=False, floatfmt=".3f"))

    if args.domains:
        dom = Path(args.domains)
        for name in ("faces", "aerial", "textures"):
            folder = dom / name
            if not folder.is_dir():
                continue
            files = sorted(folder.glob("*.jpg"))
            transforms = FACE_TRANSFORMS if name == "faces" else ()
            if name == "faces":  # the people of this half (a person is in one half only), up to --faces files
                person = _person_of(folder)
                files = [p for p in files if args.half == "all" or half_of(person[p.stem]) == args.half]
                files = files[: args.faces] if args.faces else []
            if not files:
                continue
            droot = work / f"domain_{name}"
            djobs = [(str(p), p.stem, str(droot), transforms, None, True) for p in files]
            dpool = build_pool(djobs, args.workers)
            group = "source"
            if name == "faces":
                dpool["person"] = dpool["source"].map(person)
                group = "person"
            print(f"\n## {name}: {len(files)} originals, {len(dpool)} files\n")
            print("| config | recall (" + ", ".join(transforms) + ") | clusters joining different "
                  + ("people" if name == "faces" else "files") + " | false pairs | seconds |")
            print("|---|---|---|---|---|")
            for cname in configs:
                labelled, summary, dt = run_config(dpool, droot, work / f"out_{name}" / cname.replace(" ", "_"),
                                                   CONFIGS[cname], args.workers)
                if name == "faces":
                    labelled = labelled.assign(person=labelled["source"].map(person))
                m = metrics(labelled, group=group)
                m["seconds"] = dt
                report["configs"].setdefault(cname, {})[name] = m
                rec = ", ".join(f"{m['recall'][t]:.3f}" for t in transforms) or "-"
                print(f"| {cname} | {rec} | {m['mixed_clusters']} | {m['false_pairs']} | {dt:.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
