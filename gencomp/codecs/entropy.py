"""Entropy coding of integer arrays with ``constriction`` (ANS), plus fixed-length bit packing.

Two model families:

- a quantized Gaussian with a mean and standard deviation per symbol (pass arrays that broadcast to the
  symbols' shape, e.g. ``(C, 1, 1)`` for per-channel parameters of a ``(C, H, W)`` latent, or scalars for
  GAN ``z`` under N(0, 1) after dividing by the quantization step);
- a categorical table over the symbol range (one table for all symbols, or one per symbol).

Both code symbols in a bounded range ``[low, high]`` and escape anything outside it, so no value is ever
clipped: the two edge symbols ``low`` and ``high`` mean "at or beyond this edge" and are followed by the
excess ``low - v`` or ``v - high`` (>= 0), coded in the same ANS stream as a 6-bit length and 16-bit chunks
under uniform models. Values inside the range cost exactly what the model says; escapes cost the edge
symbol plus 6 bits plus the excess's bit length rounded up to 16. Choose the range wide enough (several
standard deviations) that escapes are rare.

The bitstream is the ANS coder's 32-bit words in little-endian order. Decoding refuses, with
:class:`EntropyDecodeError`:

- with ``strict_end=True`` (below), before decoding, a stream too short to hold the symbols asked for:
  every symbol costs at least ``-log2`` of the largest probability its model gives any one value
  (:func:`gaussian_min_bits`), and the sum of those over the requested shape must fit in the stream's bits
  (plus 64 bits of slack). So a short file cannot make the decoder produce (and the caller allocate)
  millions of symbols;
- with ``strict_end=True``, while decoding, a stream that runs out before the last symbol (the ANS decoder
  would otherwise go on past the end as if it read zeros, producing the range's lowest symbol for free). A
  stream is never empty while a symbol is left to decode, except when every escape excess is 0 and the
  last symbols are ``low`` itself: the encoder's state only leaves zero with the first symbol pushed whose
  cumulative probability is not zero. Such a stream cannot be told from one cut short, so
  ``encode_gaussian(strict_end=True)`` refuses to write it (``ValueError``); codecs whose ``low`` lies far
  in the tails (8 standard deviations and more) use ``strict_end`` on both sides. The coder is checked
  before every chunk of ``_DECODE_CHUNK`` symbols and before the last one;
- after decoding, a stream with data left over (truncated, padded, or decoded with a model that spends
  fewer bits): the coder must be exactly empty.
"""

from __future__ import annotations

import numpy as np
import constriction

# constriction is a compiled extension whose submodules are attributes, not importable modules.
AnsCoder = constriction.stream.stack.AnsCoder
Categorical = constriction.stream.model.Categorical
QuantizedGaussian = constriction.stream.model.QuantizedGaussian
Uniform = constriction.stream.model.Uniform

MIN_STD = 1e-6  # a std of 0 is not a distribution; both sides clamp identically
_LENGTH_ALPHABET = 64  # escape excess bit lengths 0..63
_CHUNK_BITS = 16
_DECODE_CHUNK = 1 << 16
_MAX_SYMBOL = (1 << 31) - 1


class EntropyDecodeError(ValueError):
    """The bitstream does not decode under the given model (corrupt data or the wrong model)."""


# -- escapes --------------------------------------------------------------------------------------------


def _split_escapes(symbols: np.ndarray, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """In-range symbols (edges mark escapes) and the non-negative excess of every edge symbol, in order."""
    values = np.asarray(symbols, dtype=np.int64).ravel()
    if values.size and np.abs(values).max() > _MAX_SYMBOL:
        raise ValueError(f"symbols must lie within +-{_MAX_SYMBOL}")
    coded = np.clip(values, low, high)
    edge = (values <= low) | (values >= high)
    excess = np.where(values <= low, low - values, values - high)[edge]
    return coded.astype(np.int32), excess.astype(np.uint64)


def _decode_guarded(coder: AnsCoder, count: int, run) -> np.ndarray:
    """``run(lo, hi)`` decodes symbols lo..hi-1; refuse the stream when it is empty with symbols still to go."""
    spans = [(lo, min(lo + _DECODE_CHUNK, count - 1)) for lo in range(0, count - 1, _DECODE_CHUNK)]
    spans.append((count - 1, count))
    parts = []
    for lo, hi in spans:
        if coder.is_empty():
            raise EntropyDecodeError(
                f"ANS bitstream runs out within the first {hi} of its {count} symbols: it is too short")
        parts.append(np.asarray(run(lo, hi)))
    return np.concatenate(parts)


def _encode_excess(coder: AnsCoder, excess: np.ndarray) -> None:
    if excess.size == 0:
        return
    lengths = np.array([int(e).bit_length() for e in excess], dtype=np.int32)
    chunks = []
    for value, length in zip(excess.tolist(), lengths.tolist()):
        for shift in range(0, length, _CHUNK_BITS):
            chunks.append((value >> shift) & ((1 << _CHUNK_BITS) - 1))
    # A stack: push what the decoder reads last first.
    if chunks:
        coder.encode_reverse(np.array(chunks, dtype=np.int32), Uniform(1 << _CHUNK_BITS))
    coder.encode_reverse(lengths, Uniform(_LENGTH_ALPHABET))


def _decode_excess(coder: AnsCoder, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = coder.decode(Uniform(_LENGTH_ALPHABET), count)
    n_chunks = [-(-int(length) // _CHUNK_BITS) for length in lengths]
    total = sum(n_chunks)
    chunks = coder.decode(Uniform(1 << _CHUNK_BITS), total).tolist() if total else []
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for i, (length, n) in enumerate(zip(lengths.tolist(), n_chunks)):
        value = 0
        for j in range(n):
            value |= int(chunks[pos + j]) << (_CHUNK_BITS * j)
        pos += n
        if value.bit_length() != length or value > _MAX_SYMBOL:
            raise EntropyDecodeError(f"escape value {value} does not match its coded bit length {length}")
        out[i] = value
    return out


def _join_escapes(coded: np.ndarray, excess: np.ndarray, low: int, high: int) -> np.ndarray:
    values = coded.astype(np.int64)
    edge = np.flatnonzero((values == low) | (values == high))
    at_low = values[edge] == low
    values[edge] = np.where(at_low, low - excess, high + excess)
    return values


def _refuse_ambiguous(coded: np.ndarray, excess: np.ndarray, low: int) -> None:
    """The encoder's side of the decoder's "empty before the last symbol" check (module docstring)."""
    if coded.size and coded[-1] == low and not np.any(excess):
        raise ValueError(f"the last symbol lies exactly on the coded range's lower edge {low} with no escape excess: "
                         "that stream would be indistinguishable from one cut short; widen the range")


def _check_range(low: int, high: int) -> None:
    if not (-_MAX_SYMBOL <= low < high <= _MAX_SYMBOL):
        raise ValueError(f"symbol range [{low}, {high}] must satisfy low < high within 31 bits")


def _words_to_bytes(coder: AnsCoder) -> bytes:
    return coder.get_compressed().astype("<u4").tobytes()


def _coder_from_bytes(data: bytes) -> AnsCoder:
    if len(data) % 4:
        raise EntropyDecodeError(f"ANS bitstream length {len(data)} is not a multiple of 4 bytes")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        return AnsCoder(words)
    except Exception as exc:  # constriction rejects e.g. a stream ending in a zero word
        raise EntropyDecodeError(f"invalid ANS bitstream: {exc}") from exc


def _finish(coder: AnsCoder) -> None:
    if not coder.is_empty():
        raise EntropyDecodeError("ANS bitstream has data left after decoding: corrupt or decoded with another model")


def _broadcast(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).ravel()
    except ValueError:
        raise ValueError(f"{name} of shape {np.shape(value)} does not broadcast to symbols of shape {shape}") from None


# -- quantized Gaussian ---------------------------------------------------------------------------------

_STATE_BITS = 64  # the ANS coder's state; information a stream can hold beyond its words
_PROBABILITY_SLACK = 1e-4  # constriction's fixed-point probabilities may exceed the exact ones by less


def gaussian_min_bits(mean, std, low: int, high: int) -> np.ndarray:
    """A lower bound on the bits any one symbol costs under ``QuantizedGaussian(low, high)`` with ``mean`` and
    ``std`` (elementwise, broadcast): an inner integer bin holds at most ``erf(0.5 / (std sqrt 2))`` of the
    Gaussian, the two edge bins hold their tails, and the leaky model leaves at least one 2**-24 unit to
    every other symbol of the range."""
    from scipy.special import erf, ndtr

    mean = np.asarray(mean, dtype=np.float64)
    std = np.maximum(np.asarray(std, dtype=np.float64), MIN_STD)
    inner = erf(0.5 / (std * np.sqrt(2.0)))
    upper = ndtr((mean - (high - 0.5)) / std)  # P(X > high - 0.5)
    lower = ndtr(((low + 0.5) - mean) / std)  # P(X < low + 0.5)
    peak = np.maximum(inner, np.maximum(upper, lower)) + _PROBABILITY_SLACK
    leak_peak = 1.0 - (high - low) * 2.0**-24
    return -np.log2(np.clip(np.minimum(peak, leak_peak), 2.0**-24, 1.0))


def check_gaussian_capacity(n_bytes: int, *, shape: tuple[int, ...], mean, std, low: int, high: int) -> None:
    """Raise EntropyDecodeError if ``n_bytes`` of stream cannot hold symbols of ``shape`` under ``mean`` and
    ``std`` (broadcast to ``shape``); allocates nothing of the symbols' size when they broadcast."""
    try:
        bits = gaussian_min_bits(*np.broadcast_arrays(np.asarray(mean, dtype=np.float64),
                                                     np.asarray(std, dtype=np.float64)), low, high)
        needed = float(np.broadcast_to(bits, shape).sum(dtype=np.float64))
    except ValueError:
        raise ValueError(f"mean/std of shapes {np.shape(mean)}/{np.shape(std)} do not broadcast to symbols of "
                         f"shape {shape}") from None
    available = n_bytes * 8 + _STATE_BITS
    if needed > available:
        count = int(np.prod(shape, dtype=np.int64))
        raise EntropyDecodeError(
            f"a {n_bytes}-byte stream cannot hold {count} symbols: they need at least {needed:.0f} bits under "
            f"their model, the stream has {available}"
        )


def encode_gaussian(symbols: np.ndarray, *, mean, std, low: int, high: int, strict_end: bool = False) -> bytes:
    """Code integer ``symbols`` under N(mean, std) quantized to integer bins, escaping values outside
    ``[low, high]``. ``mean`` and ``std`` (in symbol units) broadcast to ``symbols.shape``. ``strict_end``:
    refuse a stream that ``decode_gaussian(strict_end=True)`` could not tell from a cut one (module doc)."""
    _check_range(low, high)
    symbols = np.asarray(symbols)
    if not np.issubdtype(symbols.dtype, np.integer):
        raise TypeError(f"symbols must be integers, got {symbols.dtype}")
    means = _broadcast("mean", mean, symbols.shape)
    stds = np.maximum(_broadcast("std", std, symbols.shape), MIN_STD)
    if not (np.isfinite(means).all() and np.isfinite(stds).all()):
        raise ValueError("mean and std must be finite")
    coded, excess = _split_escapes(symbols, low, high)
    if strict_end:
        _refuse_ambiguous(coded, excess, low)
    coder = AnsCoder()
    _encode_excess(coder, excess)
    if coded.size:
        coder.encode_reverse(coded, QuantizedGaussian(low, high), means, stds)
    return _words_to_bytes(coder)


def decode_gaussian(data: bytes, *, shape: tuple[int, ...], mean, std, low: int, high: int,
                    strict_end: bool = False) -> np.ndarray:
    """Inverse of :func:`encode_gaussian`; returns int64 symbols of ``shape``. Refuses a stream too short for
    ``shape`` before decoding, one with data left after it, and with ``strict_end`` one that runs out before
    its last symbol."""
    _check_range(low, high)
    shape = tuple(int(s) for s in shape)
    if strict_end:  # without it, runs of `low` at the end are free (module doc) and no length bounds them
        check_gaussian_capacity(len(data), shape=shape, mean=mean, std=std, low=low, high=high)
    means = _broadcast("mean", mean, shape)
    stds = np.maximum(_broadcast("std", std, shape), MIN_STD)
    coder = _coder_from_bytes(data)
    if means.size:
        model = QuantizedGaussian(low, high)
        if strict_end:
            coded = _decode_guarded(coder, means.size, lambda lo, hi: coder.decode(model, means[lo:hi], stds[lo:hi]))
        else:
            coded = coder.decode(model, means, stds)
    else:
        coded = np.zeros(0, dtype=np.int32)
    return _decode_rest(coder, coded, low, high).reshape(shape)


# -- categorical ----------------------------------------------------------------------------------------


def _tables(probabilities, n_symbols: int, low: int, high: int) -> np.ndarray:
    table = np.asarray(probabilities, dtype=np.float64)
    width = high - low + 1
    if table.shape[-1] != width:
        raise ValueError(f"probability table has {table.shape[-1]} entries, the range [{low}, {high}] needs {width}")
    if not (np.isfinite(table).all() and (table >= 0).all()):
        raise ValueError("probabilities must be finite and non-negative")
    if table.ndim == 1:
        return table
    table = table.reshape(-1, width)
    if table.shape[0] != n_symbols:
        raise ValueError(f"{table.shape[0]} probability tables for {n_symbols} symbols")
    return table


def encode_categorical(symbols: np.ndarray, *, probabilities, low: int) -> bytes:
    """Code integer ``symbols`` under a table over ``[low, low + len(table) - 1]`` (zero entries are still
    codable), escaping values outside. ``probabilities`` is one table ``(n,)`` or one per symbol
    ``(*symbols.shape, n)``."""
    symbols = np.asarray(symbols)
    if not np.issubdtype(symbols.dtype, np.integer):
        raise TypeError(f"symbols must be integers, got {symbols.dtype}")
    high = low + np.shape(probabilities)[-1] - 1
    _check_range(low, high)
    table = _tables(probabilities, symbols.size, low, high)
    coded, excess = _split_escapes(symbols, low, high)
    coder = AnsCoder()
    _encode_excess(coder, excess)
    if coded.size:
        shifted = (coded - low).astype(np.int32)
        if table.ndim == 1:
            coder.encode_reverse(shifted, Categorical(table, perfect=False))
        else:
            coder.encode_reverse(shifted, Categorical(perfect=False), table)
    return _words_to_bytes(coder)


def decode_categorical(data: bytes, *, shape: tuple[int, ...], probabilities, low: int) -> np.ndarray:
    """Inverse of :func:`encode_categorical`; returns int64 symbols of ``shape``."""
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape, dtype=np.int64))
    high = low + np.shape(probabilities)[-1] - 1
    _check_range(low, high)
    table = _tables(probabilities, count, low, high)
    coder = _coder_from_bytes(data)
    if count == 0:
        coded = np.zeros(0, dtype=np.int32)
    elif table.ndim == 1:
        coded = coder.decode(Categorical(table, perfect=False), count)
    else:
        coded = coder.decode(Categorical(perfect=False), table)
    coded = coded.astype(np.int64) + low
    return _decode_rest(coder, coded, low, high).reshape(shape)


def _decode_rest(coder: AnsCoder, coded: np.ndarray, low: int, high: int) -> np.ndarray:
    coded = np.asarray(coded, dtype=np.int64)
    n_escapes = int(np.count_nonzero((coded == low) | (coded == high)))
    excess = _decode_excess(coder, n_escapes)
    _finish(coder)
    return _join_escapes(coded, excess, low, high)


# -- fixed-length packing -------------------------------------------------------------------------------


def pack_uint(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers below ``2**bits`` into ``ceil(len * bits / 8)`` bytes, MSB first."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be 1..32, got {bits}")
    values = np.asarray(values, dtype=np.int64).ravel()
    if values.size and (values.min() < 0 or values.max() >= 1 << bits):
        raise ValueError(f"values must lie in [0, {(1 << bits) - 1}] for {bits}-bit packing")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bit_matrix = ((values[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.ravel()).tobytes()


def unpack_uint(data: bytes, *, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`; ``data`` must be exactly the packed length."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be 1..32, got {bits}")
    expected = -(-count * bits // 8)
    if len(data) != expected:
        raise EntropyDecodeError(f"{count} values of {bits} bits need {expected} bytes, got {len(data)}")
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return bit_array.astype(np.int64) @ weights
