"""Entropy coding (constriction) round trips, escapes, rates, and fixed-length packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import norm

from gencomp.codecs.entropy import (
    EntropyDecodeError,
    decode_categorical,
    decode_gaussian,
    encode_categorical,
    encode_gaussian,
    pack_uint,
    unpack_uint,
)


def test_gaussian_per_symbol_round_trip():
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 3, size=(5, 7))
    std = rng.uniform(0.2, 4, size=(5, 7))
    symbols = np.round(rng.normal(mean, std)).astype(np.int64)
    data = encode_gaussian(symbols, mean=mean, std=std, low=-30, high=30)
    out = decode_gaussian(data, shape=symbols.shape, mean=mean, std=std, low=-30, high=30)
    assert out.shape == symbols.shape and np.array_equal(out, symbols)


def test_gaussian_per_channel_broadcast_round_trip():
    rng = np.random.default_rng(1)
    mean = np.array([0.0, 5.0, -3.0]).reshape(3, 1, 1)
    std = np.array([1.0, 0.5, 8.0]).reshape(3, 1, 1)
    symbols = np.round(rng.normal(mean, std, size=(3, 4, 6))).astype(np.int32)
    data = encode_gaussian(symbols, mean=mean, std=std, low=-40, high=40)
    assert np.array_equal(decode_gaussian(data, shape=(3, 4, 6), mean=mean, std=std, low=-40, high=40), symbols)


def test_gaussian_rate_is_close_to_information_content():
    rng = np.random.default_rng(2)
    step = 0.25
    z = rng.normal(size=20_000)
    symbols = np.round(z / step).astype(np.int64)
    data = encode_gaussian(symbols, mean=0.0, std=1 / step, low=-40, high=40)
    p = norm.cdf(symbols + 0.5, scale=1 / step) - norm.cdf(symbols - 0.5, scale=1 / step)
    ideal_bits = -np.log2(p).sum()
    assert len(data) * 8 == pytest.approx(ideal_bits, rel=0.01)
    # and far below the 8 bits a fixed-length code of this range (81 values -> 7 bits) would need
    assert len(data) * 8 / symbols.size < 4.2


def test_out_of_range_values_are_escaped_not_clipped():
    symbols = np.array([0, 1, -1, 10, -10, 11, -11, 10_000, -2_000_000_000, 2_000_000_000, 3], dtype=np.int64)
    data = encode_gaussian(symbols, mean=0.0, std=2.0, low=-10, high=10)
    assert np.array_equal(decode_gaussian(data, shape=symbols.shape, mean=0.0, std=2.0, low=-10, high=10), symbols)
    table = np.array([1.0, 2.0, 4.0, 2.0, 1.0])  # symbols -2..2
    data = encode_categorical(symbols, probabilities=table, low=-2)
    assert np.array_equal(decode_categorical(data, shape=symbols.shape, probabilities=table, low=-2), symbols)


def test_escapes_cost_little_when_rare():
    rng = np.random.default_rng(3)
    symbols = np.round(rng.normal(0, 2, size=5000)).astype(np.int64)
    plain = encode_gaussian(symbols, mean=0.0, std=2.0, low=-20, high=20)
    symbols_with_outlier = symbols.copy()
    symbols_with_outlier[100] = 500
    escaped = encode_gaussian(symbols_with_outlier, mean=0.0, std=2.0, low=-20, high=20)
    assert len(escaped) - len(plain) <= 12  # the edge symbol's cost + 6 + 16 bits, rounded to 32-bit words


def test_categorical_shared_and_per_symbol_tables():
    rng = np.random.default_rng(4)
    table = rng.random(9) + 0.01
    symbols = rng.integers(3, 12, size=(4, 25))
    data = encode_categorical(symbols, probabilities=table, low=3)
    assert np.array_equal(decode_categorical(data, shape=symbols.shape, probabilities=table, low=3), symbols)
    tables = rng.random((4, 25, 9))
    tables[..., 0] = 0.0  # zero entries stay codable
    symbols[0, 0] = 3
    data = encode_categorical(symbols, probabilities=tables, low=3)
    assert np.array_equal(decode_categorical(data, shape=symbols.shape, probabilities=tables, low=3), symbols)


def test_empty_arrays():
    data = encode_gaussian(np.zeros((0, 3), dtype=np.int64), mean=0.0, std=1.0, low=-4, high=4)
    assert decode_gaussian(data, shape=(0, 3), mean=0.0, std=1.0, low=-4, high=4).shape == (0, 3)


def test_wrong_model_or_corrupt_stream_raises():
    rng = np.random.default_rng(5)
    symbols = np.round(rng.normal(0, 3, size=1000)).astype(np.int64)
    data = encode_gaussian(symbols, mean=0.0, std=3.0, low=-30, high=30)
    # a narrower model spends fewer bits and leaves data over (a wider one cannot be detected: see module doc)
    with pytest.raises(EntropyDecodeError, match="left"):
        decode_gaussian(data, shape=symbols.shape, mean=0.0, std=1.5, low=-30, high=30)
    with pytest.raises(EntropyDecodeError, match="left"):
        decode_gaussian(data + b"\x01\x00\x00\x00", shape=symbols.shape, mean=0.0, std=3.0, low=-30, high=30)
    with pytest.raises(EntropyDecodeError):
        decode_gaussian(data[:-4], shape=symbols.shape, mean=0.0, std=3.0, low=-30, high=30)
    with pytest.raises(EntropyDecodeError, match="multiple of 4"):
        decode_gaussian(data[:-1], shape=symbols.shape, mean=0.0, std=3.0, low=-30, high=30)


def test_bad_arguments():
    with pytest.raises(TypeError, match="integers"):
        encode_gaussian(np.array([0.5]), mean=0.0, std=1.0, low=-1, high=1)
    with pytest.raises(ValueError, match="low < high"):
        encode_gaussian(np.array([0]), mean=0.0, std=1.0, low=1, high=1)
    with pytest.raises(ValueError, match="broadcast"):
        encode_gaussian(np.zeros((2, 3), dtype=int), mean=np.zeros(2), std=1.0, low=-1, high=1)
    with pytest.raises(ValueError, match="tables"):
        encode_categorical(np.zeros(3, dtype=int), probabilities=np.ones((2, 4)), low=0)


@settings(max_examples=60, deadline=None)
@given(
    symbols=hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-5000, 5000)),
    std=st.floats(0.05, 50.0),
    mean=st.floats(-20.0, 20.0),
    half_range=st.integers(1, 60),
)
def test_gaussian_round_trip_property(symbols, std, mean, half_range):
    data = encode_gaussian(symbols, mean=mean, std=std, low=-half_range, high=half_range)
    out = decode_gaussian(data, shape=symbols.shape, mean=mean, std=std, low=-half_range, high=half_range)
    assert np.array_equal(out, symbols)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 32), data=st.data())
def test_pack_uint_round_trip(bits, data):
    values = np.array(data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=200)), dtype=np.int64)
    packed = pack_uint(values, bits)
    assert len(packed) == -(-values.size * bits // 8)
    assert np.array_equal(unpack_uint(packed, count=values.size, bits=bits), values)


def test_pack_uint_refuses_out_of_range_values():
    with pytest.raises(ValueError, match="lie in"):
        pack_uint(np.array([16]), 4)
    with pytest.raises(EntropyDecodeError):
        unpack_uint(b"\x00", count=3, bits=4)


def test_a_stream_too_short_for_the_requested_symbols_is_refused():
    rng = np.random.default_rng(3)
    symbols = rng.integers(-3, 4, size=1000)
    data = encode_gaussian(symbols, mean=0.0, std=2.0, low=-20, high=20)
    # a few more symbols than were coded: within what the length could carry, so only the decoder can tell
    for extra in (1, 7, 100):
        with pytest.raises(EntropyDecodeError, match="runs out"):
            decode_gaussian(data, shape=(1000 + extra,), mean=0.0, std=2.0, low=-20, high=20, strict_end=True)
    # far more than the stream's bits can hold: refused before decoding anything
    with pytest.raises(EntropyDecodeError, match="cannot hold"):
        decode_gaussian(data, shape=(10_000_000,), mean=0.0, std=2.0, low=-20, high=20, strict_end=True)


def test_the_encoder_refuses_a_stream_indistinguishable_from_a_cut_one():
    with pytest.raises(ValueError, match="lower edge"):
        encode_gaussian(np.array([0, 1, -20]), mean=0.0, std=2.0, low=-20, high=20, strict_end=True)
    # the same edge value with a nonzero escape elsewhere, or not last, is fine
    for symbols in (np.array([0, -25, -20]), np.array([-20, 1, 0])):
        data = encode_gaussian(symbols, mean=0.0, std=2.0, low=-20, high=20, strict_end=True)
        assert (decode_gaussian(data, shape=(3,), mean=0.0, std=2.0, low=-20, high=20, strict_end=True)
                == symbols).all()


@settings(max_examples=60, deadline=None)
@given(symbols=hnp.arrays(np.int64, st.integers(1, 300), elements=st.integers(-80, 80)),
       std=st.floats(0.05, 50.0), mean=st.floats(-20.0, 20.0), half_range=st.integers(1, 60))
def test_strict_round_trip_property(symbols, std, mean, half_range):
    try:
        data = encode_gaussian(symbols, mean=mean, std=std, low=-half_range, high=half_range, strict_end=True)
    except ValueError:  # only the ambiguous stream is refused
        assert symbols[-1] <= -half_range
        return
    out = decode_gaussian(data, shape=symbols.shape, mean=mean, std=std, low=-half_range, high=half_range,
                          strict_end=True)
    assert np.array_equal(out, symbols)
