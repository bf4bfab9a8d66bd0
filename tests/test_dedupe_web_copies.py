"""Near-duplicates as the web makes them (flip, crop, caption, turn) are joined; look-alikes are not;
clusters say why; a rescrape hashes and verifies only what is new."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from skimage import data

from gencomp.data import dedupe, hashing, verify

# ../shared beside the clone (CI, the main checkout), or two levels up from a worktree
FACES = next((p / "shared" / "data" / "domains" / "faces" for p in Path(__file__).resolve().parents[2:4]
              if (p / "shared" / "data" / "domains" / "faces").is_dir()), Path("/nonexistent"))


def _save(img: Image.Image, path: Path, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").save(path, format="JPEG", quality=quality)
    return path


def _crop(img: Image.Image, share: float) -> Image.Image:
    dx, dy = img.width * share / 2, img.height * share / 2
    return img.crop((round(dx), round(dy), round(img.width - dx), round(img.height - dy)))


def _caption(img: Image.Image) -> Image.Image:
    img = img.copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    draw.rectangle([0, round(h * 0.88), round(w * 0.4), h], fill=(250, 250, 250))
    draw.text((4, round(h * 0.9)), "Breaking news via @someone", fill=(0, 0, 0))
    return img


def _same_layout(base: Image.Image, detail_from: Image.Image) -> Image.Image:
    """The layout of ``base`` (what a 32x32 pHash sees) with the detail of another photo: a look-alike, as two
    aligned faces of different people are, not a copy."""
    layout = base.filter(ImageFilter.GaussianBlur(16))
    other = detail_from.resize(base.size, Image.Resampling.LANCZOS)
    hp = np.asarray(other, np.float32) - np.asarray(other.filter(ImageFilter.GaussianBlur(16)), np.float32)
    return Image.fromarray(np.clip(np.asarray(layout, np.float32) + hp, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photos():
    return {name: Image.fromarray(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")}


@pytest.fixture()
def web_corpus(tmp_path, photos):
    root = tmp_path / "imgs"
    for name, img in photos.items():
        _save(img, root / f"{name}.jpg", quality=95)
    astro, coffee = photos["astronaut"], photos["coffee"]
    _save(ImageOps.mirror(astro), root / "copies" / "astro_flip.jpg")
    _save(_crop(coffee, 0.08), root / "copies" / "coffee_crop8.jpg")
    _save(_caption(photos["chelsea"]), root / "copies" / "chelsea_caption.jpg")
    _save(photos["rocket"].rotate(3, resample=Image.Resampling.BICUBIC), root / "copies" / "rocket_rot3.jpg")
    _save(_same_layout(astro, coffee), root / "lookalike" / "astro_layout_coffee_detail.jpg")
    _save(_same_layout(astro, photos["chelsea"]), root / "lookalike" / "astro_layout_chelsea_detail.jpg")
    return root


def _clusters(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "clusters.parquet").set_index("path")


def test_flip_crop_caption_and_turn_join_their_original(web_corpus, tmp_path):
    out = tmp_path / "out"
    summary = dedupe.run_dedupe(web_corpus, out, workers=1)
    df = _clusters(out)
    for copy, original in [("copies/astro_flip.jpg", "astronaut.jpg"), ("copies/coffee_crop8.jpg", "coffee.jpg"),
                           ("copies/chelsea_caption.jpg", "chelsea.jpg"), ("copies/rocket_rot3.jpg", "rocket.jpg")]:
        assert df.loc[copy, "cluster_key"] == df.loc[original, "cluster_key"], copy
    assert bool(df.loc["copies/astro_flip.jpg", "join_mirror"])
    originals = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert df.loc[originals, "cluster_key"].nunique() == 4
    assert summary["method"] == "verified" and summary["clusters"] == 6


def test_look_alikes_of_one_layout_are_not_joined(web_corpus, tmp_path):
    a = hashing.hash_file(web_corpus / "lookalike" / "astro_layout_coffee_detail.jpg")
    b = hashing.hash_file(web_corpus / "lookalike" / "astro_layout_chelsea_detail.jpg")
    close = int(np.bitwise_count(np.uint64(a["full"] & (2**64 - 1)) ^ np.uint64(b["full"] & (2**64 - 1))))
    assert close <= dedupe.DEFAULT_THRESHOLD  # the hashes alone would join them: the candidate search does
    out = tmp_path / "out"
    dedupe.run_dedupe(web_corpus, out, workers=1)
    df = _clusters(out)
    keys = df.loc[["lookalike/astro_layout_coffee_detail.jpg", "lookalike/astro_layout_chelsea_detail.jpg",
                   "astronaut.jpg"], "cluster_key"]
    assert keys.nunique() == 3
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert (~pairs["joined"]).any()  # the candidate was verified and refused, and the audit table says so
    # the old behaviour (hash clusters) joins them: this is what verification buys
    dedupe.run_dedupe(web_corpus, tmp_path / "hash", method="hash", threshold=max(close, 1), workers=1)
    old = _clusters(tmp_path / "hash")
    assert (old.loc["lookalike/astro_layout_coffee_detail.jpg", "cluster_key"]
            == old.loc["lookalike/astro_layout_chelsea_detail.jpg", "cluster_key"])


def test_clusters_say_why_and_the_sheet_shows_borderline_pairs(web_corpus, tmp_path):
    out = tmp_path / "out"
    dedupe.run_dedupe(web_corpus, out, workers=1)
    df = _clusters(out)
    for col in ("joined_to", "join_hashes", "join_distance", "join_score", "join_mirror", "rep_score"):
        assert col in df.columns
    crop = df.loc["copies/coffee_crop8.jpg"]
    assert crop["joined_to"] == df.loc["coffee.jpg", "sha256"]
    assert crop["join_hashes"].count("~") == 1 and set(crop["join_hashes"].split("~")) <= set(hashing.CANDIDATE_KINDS)
    assert 0 <= crop["join_distance"] <= dedupe.DEFAULT_THRESHOLD
    assert crop["join_score"] >= dedupe.DEFAULT_VERIFY_THRESHOLD
    single = df.loc["lookalike/astro_layout_chelsea_detail.jpg"]
    assert single["joined_to"] == "" and pd.isna(single["join_score"])
    sheet = dedupe.contact_sheet_png(df.reset_index(), web_corpus, pairs=pd.read_parquet(out / "pairs.parquet"))
    plain = dedupe.contact_sheet_png(df.reset_index(), web_corpus, pairs=None)
    assert Image.open(io.BytesIO(sheet)).height > Image.open(io.BytesIO(plain)).height


def test_rescrape_hashes_and_verifies_only_new_images(web_corpus, tmp_path, photos, monkeypatch):
    out = tmp_path / "out"
    first = dedupe.run_dedupe(web_corpus, out, workers=1)
    assert first["newly_verified_pairs"] > 0
    before = _clusters(out)["cluster_key"]
    again = dedupe.run_dedupe(web_corpus, out, workers=1)
    assert again["newly_hashed"] == 0 and again["newly_verified_pairs"] == 0

    calls = []
    real = verify.verify_pairs
    monkeypatch.setattr(dedupe, "verify_pairs", lambda a, b, *x, **k: calls.append(len(a)) or real(a, b, *x, **k))
    _save(_crop(ImageOps.mirror(photos["coffee"]), 0.08), web_corpus / "new" / "coffee_flip_crop.jpg")
    third = dedupe.run_dedupe(web_corpus, out, workers=1)
    assert third["newly_hashed"] == 1
    after = _clusters(out)
    assert after.loc["new/coffee_flip_crop.jpg", "cluster_key"] == after.loc["coffee.jpg", "cluster_key"]
    assert (after.loc[before.index, "cluster_key"] == before).all()  # old clusters untouched
    assert 0 < sum(calls) == third["newly_verified_pairs"] <= 4  # only pairs with the new image were scored


def test_a_run_by_an_older_hasher_is_redone_not_reused(web_corpus, tmp_path):
    out = tmp_path / "out"
    first = dedupe.run_dedupe(web_corpus, out, workers=1)
    keys = _clusters(out)["cluster_key"]
    # what a run by the previous hasher left: its hash rows, and scores computed from its thumbnails
    hashes = pd.read_parquet(out / "hashes.parquet")
    hashes["hasher"] = "imagehash-4.3.2/phash8+dhash8+canon-full-c92-c60/thumb64/draft128x128"
    hashes.to_parquet(out / "hashes.parquet")
    pairs = pd.read_parquet(out / "pairs.parquet")
    pairs["verifier"], pairs["score"] = "verify-2/thumb64/box13x13/turn3/small-blur", 0.0
    pairs.to_parquet(out / "pairs.parquet")
    again = dedupe.run_dedupe(web_corpus, out, workers=1)
    assert again["newly_hashed"] == first["newly_hashed"] > 0
    assert again["newly_verified_pairs"] == first["newly_verified_pairs"] > 0
    assert (_clusters(out)["cluster_key"] == keys).all()
    assert (pd.read_parquet(out / "pairs.parquet")["verifier"] == dedupe.VERIFIER_ID).all()


def test_an_older_hash_cache_is_recomputed_not_trusted(tmp_path, photos):
    img = _save(photos["rocket"], tmp_path / "imgs" / "rocket.jpg")
    cache = tmp_path / "out" / "hashes.parquet"
    cache.parent.mkdir()
    old = pd.DataFrame({"sha256": [hashing.sha256_file(img)], "phash": [1], "dhash": [2], "width": [1], "height": [1],
                        "format": ["JPEG"], "status": ["ok"], "reason": [""], "message": [""], "hasher": ["old"]})
    old.to_parquet(cache)
    summary = dedupe.run_dedupe(tmp_path / "imgs", tmp_path / "out", workers=1)
    assert summary["newly_hashed"] == 1
    fresh = hashing.read_hash_cache(cache)
    assert set(hashing.HASH_COLUMNS) <= set(fresh.columns) and fresh["thumb"].notna().all()
    pd.DataFrame({"x": [1]}).to_parquet(cache)
    with pytest.raises(ValueError, match="not a hash cache"):
        dedupe.run_dedupe(tmp_path / "imgs", tmp_path / "out", workers=1)


def test_canonical_hash_is_the_same_for_an_image_and_its_mirror(photos):
    for img in photos.values():
        grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        h, alt, mirrored = hashing.canonical_phash(grey)
        hm, altm, mirrored_m = hashing.canonical_phash(grey[:, ::-1])
        assert {h, alt} & {hm, altm}
        assert h == hm or alt != h  # equal, unless the orientation is ambiguous (then both are indexed)


@pytest.mark.skipif(not (FACES / "MANIFEST.tsv").is_file(), reason="needs ../shared/data/domains/faces")
def test_aligned_faces_of_different_people_are_not_joined(tmp_path):
    manifest = pd.read_csv(FACES / "MANIFEST.tsv", sep="\t")
    person = dict(zip(manifest["file"], manifest["path_in_repo"].str.split("/").str[2]))
    files = sorted(person)[:400]
    out = tmp_path / "out"
    link = tmp_path / "faces"
    link.mkdir()
    for f in files:
        (link / f).symlink_to(FACES / f)
    dedupe.run_dedupe(link, out, workers=1)
    df = pd.read_parquet(out / "clusters.parquet")
    df["person"] = df["path"].map(person)
    mixed = df.groupby("cluster_key")["person"].nunique()
    assert (mixed <= 1).all(), df[df["cluster_key"].isin(mixed[mixed > 1].index)][["path", "person", "join_score"]]
    # and the candidate search did see look-alikes there, which verification refused
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert (~pairs["joined"]).sum() > 0


def _thumb_and_aspect(img: Image.Image) -> tuple[np.ndarray, float]:
    row = hashing.hash_image_bytes(_jpeg_bytes(img))
    return np.frombuffer(row["thumb"], dtype=np.uint8).reshape(64, 64), img.width / img.height


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _offset_crop(img: Image.Image, share: float, left: float, top: float) -> Image.Image:
    dx, dy = img.width * share, img.height * share
    x, y = round(dx * left), round(dy * top)
    return img.crop((x, y, x + round(img.width - dx), y + round(img.height - dy)))


def test_refinement_verifies_copies_between_the_grid_hypotheses(photos):
    """A 5 degree turn, a turn on a grown canvas and crops whose offsets fall between the tried boxes: the
    grid alone leaves each of them half a pixel off at 32 px, under the threshold; the refined map does not."""
    cases = []
    for img in photos.values():
        cases += [(img, img.rotate(5, resample=Image.Resampling.BICUBIC)),
                  (img, img.rotate(-3, resample=Image.Resampling.BICUBIC, expand=True)),
                  (img, _offset_crop(img, 0.08, 0.2, 0.75)),
                  (img, _offset_crop(img, 0.12, 0.8, 0.3))]
    a, aspect_a = zip(*(_thumb_and_aspect(x) for x, _ in cases))
    b, aspect_b = zip(*(_thumb_and_aspect(y) for _, y in cases))
    score, align = verify.verify_pairs(np.stack(a), np.stack(b), np.zeros(len(cases), bool),
                                       aspect_a=aspect_a, aspect_b=aspect_b)
    assert (score >= dedupe.DEFAULT_VERIFY_THRESHOLD).all(), score
    assert align.refined.mean() >= 0.75, align.refined  # the refinement is what got them there
    assert align.warp.shape == (len(cases), 2, 3)


def test_refinement_does_not_make_look_alikes_copies(photos):
    """The refined map can move every pixel, yet detail from another photo does not line up."""
    base = photos["astronaut"]
    looks = [_same_layout(base, photos[k]) for k in ("coffee", "chelsea", "rocket")]
    a, aspect_a = zip(*(_thumb_and_aspect(base) for _ in looks))
    b, aspect_b = zip(*(_thumb_and_aspect(x) for x in looks))
    score, _ = verify.verify_pairs(np.stack(a), np.stack(b), None, aspect_a=aspect_a, aspect_b=aspect_b)
    assert (score < dedupe.DEFAULT_VERIFY_THRESHOLD - 0.1).all(), score


def _product_shot(img: Image.Image, share: float = 0.35) -> Image.Image:
    """An object photo pasted small in the middle of a white canvas, as shops show their products."""
    canvas = Image.new("RGB", (480, 480), (255, 255, 255))
    obj = img.resize((round(480 * share), round(480 * share)), Image.Resampling.LANCZOS)
    canvas.paste(obj, ((480 - obj.width) // 2, (480 - obj.height) // 2))
    return canvas


def test_different_products_on_one_white_background_are_not_copies(photos, tmp_path):
    """Cells without detail agree perfectly and prove nothing: with the differing middle cells left out, the
    white rim alone would make every pair of product shots a copy. Their copies still are."""
    shots = {name: _product_shot(img) for name, img in photos.items()}
    names = list(shots)
    pairs = [(shots[x], shots[y]) for x, y in zip(names, names[1:])]
    copies = [(shot, shot.resize((240, 240), Image.Resampling.LANCZOS)) for shot in shots.values()]
    a, aspect_a = zip(*(_thumb_and_aspect(x) for x, _ in pairs + copies))
    b, aspect_b = zip(*(_thumb_and_aspect(y) for _, y in pairs + copies))
    score, _ = verify.verify_pairs(np.stack(a), np.stack(b), None, aspect_a=aspect_a, aspect_b=aspect_b)
    assert (score[:len(pairs)] < 0.5).all(), score
    assert (score[len(pairs):] >= dedupe.DEFAULT_VERIFY_THRESHOLD).all(), score

    root = tmp_path / "shop"
    for name, shot in shots.items():
        _save(shot, root / f"{name}.jpg")
    dedupe.run_dedupe(root, tmp_path / "out", workers=1)
    assert pd.read_parquet(tmp_path / "out" / "clusters.parquet")["cluster"].nunique() == len(shots)
