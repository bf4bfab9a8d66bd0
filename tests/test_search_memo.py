"""Searches shared between encodes (gencomp.codecs.search_memo): a reused or continued search writes, bit for bit,
the file a fresh search writes, and only what determines a search shares it."""

from __future__ import annotations

import pytest
import torch

from gencomp.codecs import get_codec
from gencomp.codecs.inversion import SEARCHES
from gencomp.codecs.search_memo import SearchMemo, SearchState
from gencomp.models import load_model
from tests.tiny_models import synthetic_photo


@pytest.fixture(autouse=True)
def _fresh_memo():
    SEARCHES.clear()
    yield
    SEARCHES.clear()


def _encode(gan_path, **settings) -> bytes:
    return get_codec("gan-inversion", model=gan_path, **settings).encode(synthetic_photo(21, 13))


def _fresh(gan_path, **settings) -> bytes:
    SEARCHES.clear()
    data = _encode(gan_path, **settings)
    SEARCHES.clear()
    return data


@pytest.mark.parametrize("settings", [
    {"overlap": 0, "colour": "none"},
    {"overlap": 2},  # blended tiles, searched as one unit, with colour parameters
    {"overlap": 2, "restarts": 2, "objective": "ssim"},
    {"overlap": 0, "init": "random", "precision": "bfloat16"},
])
def test_a_continued_search_writes_what_a_fresh_one_writes(gan_path, settings):
    longer = _fresh(gan_path, steps=13, **settings)
    _encode(gan_path, steps=5, **settings)
    assert len(SEARCHES) == settings.get("restarts", 1)  # one state per restart, at 5 steps
    assert _encode(gan_path, steps=13, **settings) == longer  # continued from step 5
    assert len(SEARCHES) == 2 * settings.get("restarts", 1)  # and kept at 13 too
    assert _encode(gan_path, steps=5, **settings) == _fresh(gan_path, steps=5, **settings)  # the kept state


def test_bit_depths_of_one_clip_range_share_a_search_and_write_what_fresh_searches_write(gan_path):
    fresh = {bits: _fresh(gan_path, steps=9, bits=bits) for bits in (8, 6, 4, 32)}
    shared = {bits: _encode(gan_path, steps=9, bits=bits) for bits in (8, 6, 4)}
    assert len(SEARCHES) == 1
    # float storage does not project z into the clip range, another clip range projects it elsewhere: own searches
    shared[32] = _encode(gan_path, steps=9, bits=32)
    _encode(gan_path, steps=9, bits=8, clip=2.0)
    assert len(SEARCHES) == 3
    assert shared == fresh


def test_what_determines_a_search_keeps_searches_apart(gan_path):
    base = dict(steps=6, overlap=0)
    for change in ({}, {"lr": 0.1}, {"seed": 1, "init": "random"}, {"objective": "ssim"}, {"colour": "none"},
                   {"precision": "bfloat16"}, {"precision": "float32"}):
        _encode(gan_path, **base, **change)
    assert len(SEARCHES) == 6  # the default precision, auto, is one of the two others
    get_codec("gan-inversion", model=gan_path, **base).encode(synthetic_photo(13, 21))  # another image
    assert len(SEARCHES) == 7


def test_a_model_handed_in_as_an_object_is_never_kept(gan_path):
    loaded = load_model(gan_path)
    get_codec("gan-inversion", model=loaded, steps=4).encode(synthetic_photo(21, 13))
    assert len(SEARCHES) == 0


def test_the_memo_continues_the_longest_state_that_fits_and_forgets_the_oldest():
    memo = SearchMemo(max_states=3)
    advanced = []

    def start() -> SearchState:
        return SearchState(steps=0, tensors={"x": torch.zeros(1)})

    def advance(state: SearchState, steps: int) -> None:
        advanced.append(steps)
        state.tensors["x"] += steps
        state.steps += steps

    assert memo.run("a", 10, start, advance).tensors["x"].item() == 10
    assert memo.run("a", 25, start, advance).tensors["x"].item() == 25
    assert memo.run("a", 15, start, advance).tensors["x"].item() == 15  # from step 10, not from 25
    assert advanced == [10, 15, 5]
    returned = memo.run("a", 25, start, advance)
    returned.tensors["x"] += 100  # a caller's changes do not reach the kept state
    assert memo.run("a", 25, start, advance).tensors["x"].item() == 25 and advanced == [10, 15, 5]
    memo.run("b", 1, start, advance)  # a fourth state: the least recently used one ("a" at 10) goes
    assert len(memo) == 3
    assert memo.run("a", 12, start, advance).tensors["x"].item() == 12 and advanced[-1] == 12
    assert memo.run(None, 3, start, advance).tensors["x"].item() == 3 and len(memo) == 3  # no key: not kept


def test_the_memo_keeps_within_its_byte_budget():
    def start() -> SearchState:
        return SearchState(steps=0, tensors={"x": torch.zeros(1000)})  # 4,000 bytes

    def advance(state: SearchState, steps: int) -> None:
        state.steps += steps

    memo = SearchMemo(max_states=100, max_bytes=10_000)
    for key in "abc":
        memo.run(key, 1, start, advance)
    assert len(memo) == 2  # the third state would pass 10,000 bytes: the oldest went
    memo.run("c", 1, start, advance)  # kept: nothing recomputed, nothing added
    assert len(memo) == 2
    tiny = SearchMemo(max_bytes=1_000)
    tiny.run("a", 1, start, advance)
    assert len(tiny) == 0  # a state larger than the whole budget is not kept

