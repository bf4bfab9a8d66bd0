"""Approach 1, "gan-inversion": store, per image tile, the GAN latent ``z`` whose ``G(z)`` best matches it.

Encoding cuts the image into ``tile`` x ``tile`` tiles (reflection padding, see ``tiling.py``), starts each
``z`` at the inversion encoder's guess (or a seeded N(0, 1) draw), and runs Adam for ``steps`` steps with all
tiles of the image in one batch. Each further restart starts from a fresh seeded N(0, 1) draw; the best latents
seen in any restart are kept, judged *after* the storage quantization below, so the choice is made on exactly
what the decoder will see. The search minimises MSE, or with ``objective="ssim"`` 1 - SSIM plus MSE (SSIM as
``gencomp.metrics`` measures it, on each tile, or on the blend of overlapping tiles): the poster judges by SSIM,
and the decoder neither knows nor cares which the encoder chose. With ``precision="bfloat16"`` the search's
generator runs under bfloat16 autocast (much faster on CPUs with AVX512-BF16 or AMX, and on GPUs); which latent
is kept is still decided on float32 errors, and decoding is float32. The default, ``precision="auto"``, searches
in bfloat16 where the hardware computes it (AVX512-BF16 or AMX, a GPU) and in float32 elsewhere, as the VAE-GAN's
refinement does (``gencomp.hardware.search_precision``).

Tiles overlap their neighbours by ``overlap`` px (default: an eighth of the tile, 8 px for the shipped 64-px
GAN) and the decoder blends them with raised-cosine weights that sum to 1 (``tiling.blend_tiles``), so where
tiles meet one fades into the next instead of stepping: edge-to-edge tiles leave visible seams on the tile grid
(3 grey levels on Kodak, ``gencomp.grid_artifacts``). The search then minimises the squared error of the
*blend* against the image, all tiles together, so neighbours are pulled to agree where they overlap; restarts
keep the best whole set. With ``overlap=0`` each tile minimises its own MSE and keeps its own best latent, as
before overlap existed, and the file is byte for byte what it was (no ``o`` in the header). An image that fits
in one tile (a 128x128 face on a 128-px domain GAN) has nothing to blend with and is always coded edge to edge.
Overlap costs rate: a 768x512 image takes 9 x 14 = 126 tiles at 8 px instead of 8 x 12 = 96.

Colour parameters (``colour="affine"``, the default). A generator trained on one corpus cannot draw every
image's colours: on the demo's photos the search turned teal to green and orange to pink, tile by tile. So
each tile also carries a gain and an offset per channel: the decoder shows ``2**g * G(z) + b`` (g, b in
[-1, 1], see ``apply_colour``). The search starts them at the least-squares fit to the tile and optimises
them with z; they are stored as 6-bit mid-tread codes (gain 1 and offset 0 exact), 36 bits a tile, written
*before* the z section so that section may be entropy-coded; the header's ``k`` (their bits) says they are
there, and the file is of format version 2, which a gencomp from before it refuses by name instead of reading
the codes as z. ``colour="none"`` writes the poster's file, z alone, version 1, byte for byte what it was
before ``k`` existed, and files without ``k`` decode as they always did.

Storage of z (``bits`` and ``entropy``), all inside the ``.gcz`` payload:

- ``bits=32``: float32, 4 bytes per coordinate (the poster's lossless latent); ``bits=16``: float16;
- ``bits`` in 1..12, ``entropy="none"``: uniform quantization of ``[-clip, clip]`` into ``2**bits`` bins of
  width ``2 * clip / 2**bits``, fixed-length codes, reconstruction at bin centres. Values outside are
  clipped at encode time -- and projected into the range during the search, so the optimiser knows -- and
  decode returns exactly the clipped, quantized values. With z ~ N(0, 1), clip=3 keeps 99.7 % unclipped;
- ``bits`` in 1..12, ``entropy="gaussian"``: the same bin width, but symbols ``round(z / width)`` are
  entropy-coded with constriction under a Gaussian; nothing is clipped, rare outliers are escaped. The
  Gaussian is N(m, s) with m and s the mean and standard deviation of this image's z, written to the header
  as float32 (14 header bytes with their keys). The generator's N(0, 1) prior would be the obvious choice,
  but optimised latents drift outside it (measured on Kodak: coding under N(0, 1) came out 6 % larger than
  fixed 6-bit codes), and each value past the coded range costs an escape. Files without m and s (written
  before) decode under N(0, 1).

Decoding first checks that the payload's length fits the tile count the header's size and overlap imply
(the colour codes exactly; z exactly for fixed-length storage, for entropy-coded z at least the bits the
Gaussian makes any value cost),
then runs ``G(z)`` on a few tiles at a time (``_DECODE_CHUNK``) straight into the 8-bit output (blended tiles:
through a float strip one tile high, ``tiling.blend_rows``), and crops. The header records bits, entropy mode
and clip, and the overlap ``o`` when it is not 0 (files without it, all written before it existed, are edge to
edge); the model is identified by its fingerprint. Deterministic on CPU for a given seed. With ``device=cuda`` the
search runs on the GPU (random starts are still drawn on the CPU, so seeds mean the same); its latents can
differ from the CPU's in the last bits, and any file decodes on either device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import torch
from PIL import Image
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from gencomp.codecs.base import DEVICE_PARAM, ModelCodec, Param, register
from gencomp.codecs.container import BASE_VERSION, Container, CorruptPayload, Header, MalformedHeader, pack
from gencomp.codecs.entropy import (
    EntropyDecodeError,
    check_gaussian_capacity,
    decode_gaussian,
    encode_gaussian,
    pack_uint,
    unpack_uint,
)
from gencomp.codecs.search_memo import SearchMemo, SearchState
from gencomp.codecs.tiling import TileGrid, blend_rows, blend_weights, split_tiles
from gencomp.hardware import search_precision
from gencomp.metrics import WINDOW_SIGMA, ssim_window_size

FLOAT_BITS = (32, 16)
MAX_UNIFORM_BITS = 12
_ENTROPY_MODES = ("none", "gaussian")
_OBJECTIVES = ("mse", "ssim")
# Weight of MSE (on [-1, 1]) beside 1 - SSIM in the "ssim" objective. SSIM alone ignores a small uniform colour
# shift and is flat where both images are flat, so the latent drifts in hue and PSNR falls. Measured on 8 held-out
# 128-px faces, gan-faces, 100 steps (SSIM / PSNR): mse 0.542 / 21.15 dB; weight 0.1: 0.582 / 19.28; 0.5: 0.579 /
# 19.98; 1.0: 0.577 / 20.29; 2.0: 0.573 / 20.62. 1.0 keeps nearly all of the SSIM for 0.9 dB.
SSIM_OBJECTIVE_MSE_WEIGHT = 1.0
# Tiles per generator call when decoding. On a CPU, 16 tiles keep the activations in ~50 MB (shipped model) and
# decode faster than bigger batches; a GPU wants larger ones.
_DECODE_CHUNK = {"cpu": 16, "cuda": 256}
# The default overlap is tile // 8 (8 px for the shipped 64-px GAN). Measured on 384-px crops of kodim01-03, 30
# steps (benchmarks/bench_grid_artifacts.py): 8 px takes the 64-px seam pattern from 2.64 to 0.92 grey levels (the
# control on unrelated periods: 0.98) and PSNR from 18.35 to 18.79 dB, for a compression ratio of 22.5 instead of
# 30.7; 16 px buys another 0.2 dB and a weaker tile-anchored pattern (1.42 instead of 1.67 on the 48/56-px grid the
# tiles sit on) for a ratio of 17.3. At equal rate, 8 px with 6-bit latents (0.202 bpp) beats edge-to-edge 8-bit
# latents (0.198 bpp) by 0.4 dB (18.72 against 18.34) with the seam pattern at 0.92 instead of 2.65.
DEFAULT_OVERLAP_TILE_DIVISOR = 8
# Per-tile colour correction (``colour="affine"``): each tile's G(z) is mapped channel by channel to
# 2**g * G(z) + b, g (a log2 gain) and b (an offset, in the [-1, 1] pixel scale) each in [-1, 1], stored as
# COLOUR_BITS-bit mid-tread codes: 6 x 6 = 36 bits a tile, 0.011 bpp for the shipped GAN's 56-px tile stride.
COLOUR_BITS = 6
COLOUR_FORMAT_VERSION = 2  # a version-1 reader would take the colour codes for z (container.VERSION)
COLOUR_CLIP = 1.0
COLOUR_PARAMS = 6
_COLOURS = ("none", "affine")
# the searches this process ran, shared by its encodes (an evaluation grid's bit depths and step counts)
SEARCHES = SearchMemo()
_PRIOR_SIGMAS = 8.0  # coded symbol range of the Gaussian mode, in prior standard deviations; beyond: escapes


def _bin_width(bits: int, clip: float) -> float:
    return 2.0 * clip / (1 << bits)


def quantize_uniform(z: np.ndarray, *, bits: int, clip: float) -> np.ndarray:
    """Bin indices 0 .. 2**bits - 1 of ``z`` clipped to ``[-clip, clip]``."""
    width = _bin_width(bits, clip)
    return np.clip(np.floor((np.asarray(z, dtype=np.float64) + clip) / width), 0, (1 << bits) - 1).astype(np.int64)


def dequantize_uniform(indices: np.ndarray, *, bits: int, clip: float) -> np.ndarray:
    return (-clip + (np.asarray(indices, dtype=np.float64) + 0.5) * _bin_width(bits, clip)).astype(np.float32)


def _symbol_gaussian(storage: dict[str, Any], width: float) -> tuple[float, float, int, int]:
    """(mean, std, low, high) in symbol units of the Gaussian the latents are coded under; the coded range is
    mean +- 8 std, values beyond it are escaped."""
    mean, std = storage.get("m", 0.0) / width, storage.get("s", 1.0) / width
    return mean, std, int(np.floor(mean - _PRIOR_SIGMAS * std)), int(np.ceil(mean + _PRIOR_SIGMAS * std))


@register
class GANInversionCodec(ModelCodec):
    name = "gan-inversion"
    family = "gan"
    codec_id = 16
    bitstream = "gan-inversion"
    model_kind = "gan"
    params = (
        Param("model", "path", None, "GAN model file (default: $GENCOMP_GAN_MODEL or models/gan/model.pt)"),
        Param("steps", "int", 100, "Adam steps of the latent search per restart (0: the initial guess)"),
        Param("restarts", "int", 1, "independent searches; each tile keeps its best"),
        Param("lr", "float", 0.05, "Adam learning rate on z"),
        Param("objective", "str", "mse", "what the search minimises: mse, or ssim (1 - SSIM, with a little MSE "
              "so colour stays anchored); decoding does not depend on it", _OBJECTIVES, added_later=True),
        Param("precision", "str", "auto", "arithmetic of the search: bfloat16 (autocast: about 2.5x faster on CPUs "
              "with AVX512-BF16 or AMX), float32, or auto: bfloat16 where the CPU or GPU computes it in hardware, "
              "float32 elsewhere; the latents are chosen on float32 errors, the decoder is float32",
              ("auto", "float32", "bfloat16"), added_later=True),
        Param("init", "str", "encoder", "start of the first search: inversion encoder or N(0,1)", ("encoder", "random")),
        Param("bits", "int", 32, "32/16: float z; 1..12: quantized z with this many bits of bin width"),
        Param("entropy", "str", "none", "quantized z: fixed-length codes, or entropy-coded under N(0,1)",
              _ENTROPY_MODES),
        Param("clip", "float", 3.0, "quantization range [-clip, clip] of z (bits 1..12)"),
        Param("seed", "int", 0, "seed of the random starts"),
        Param("colour", "str", "affine", "per-tile colour correction stored beside z: affine (a gain and an offset "
              "per channel, 36 bits a tile, searched with z), or none (z alone, the poster's file)", _COLOURS),
        # not added_later: its default changes what earlier code wrote, so cached cells of before must not match
        Param("overlap", "int", None, "px each tile shares with its neighbours, blended (0: edge to edge, seams; "
              "default: an eighth of the model's tile, 8 px for the shipped GAN)"),
        DEVICE_PARAM,
    )

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        s = self.settings
        if s["steps"] < 0 or s["restarts"] < 1 or not s["lr"] > 0:
            raise ValueError(f"codec {self.name!r}: need steps >= 0, restarts >= 1, lr > 0; got {s}")
        if s["bits"] not in FLOAT_BITS and not 1 <= s["bits"] <= MAX_UNIFORM_BITS:
            raise ValueError(f"codec {self.name!r}: bits must be 32, 16 or 1..{MAX_UNIFORM_BITS}, got {s['bits']}")
        if s["bits"] in FLOAT_BITS and s["entropy"] != "none":
            raise ValueError(f"codec {self.name!r}: entropy coding needs quantized z (bits 1..{MAX_UNIFORM_BITS})")
        if not s["clip"] > 0:
            raise ValueError(f"codec {self.name!r}: clip must be positive, got {s['clip']}")
        if s["overlap"] is not None and s["overlap"] < 0:
            raise ValueError(f"codec {self.name!r}: overlap must be >= 0 px, got {s['overlap']}")

    # -- storage --------------------------------------------------------------------------------------

    def _storage_params(self) -> dict[str, Any]:
        bits = self.settings["bits"]
        # "k": the bits of each colour parameter; files without it (z alone) decode as they always did
        colour = {"k": COLOUR_BITS} if self.settings["colour"] == "affine" else {}
        if bits in FLOAT_BITS:
            return {"b": bits, **colour}
        # clip goes through float32 in the header; use that value on both sides
        clip = float(np.float32(self.settings["clip"]))
        return {"b": bits, "e": _ENTROPY_MODES.index(self.settings["entropy"]), "c": clip, **colour}

    @staticmethod
    def _reconstruct(z: np.ndarray, storage: dict[str, Any]) -> np.ndarray:
        """The z the decoder will see for storage parameters ``storage``."""
        bits = storage["b"]
        if bits == 32:
            return z.astype(np.float32)
        if bits == 16:
            return z.astype(np.float16).astype(np.float32)
        if storage["e"] == 0:
            return dequantize_uniform(quantize_uniform(z, bits=bits, clip=storage["c"]), bits=bits, clip=storage["c"])
        width = _bin_width(bits, storage["c"])
        return (np.round(z / width) * width).astype(np.float32)

    @staticmethod
    def _serialize(z: np.ndarray, storage: dict[str, Any]) -> bytes:
        bits = storage["b"]
        if bits == 32:
            return z.astype("<f4").tobytes()
        if bits == 16:
            return z.astype("<f2").tobytes()
        if storage["e"] == 0:
            return pack_uint(quantize_uniform(z, bits=bits, clip=storage["c"]), bits)
        width = _bin_width(bits, storage["c"])
        mean, std, low, high = _symbol_gaussian(storage, width)
        return encode_gaussian(np.round(z / width).astype(np.int64), mean=mean, std=std, low=low, high=high,
                               strict_end=True)

    @staticmethod
    def _deserialize(payload: bytes, storage: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        count = shape[0] * shape[1]
        bits = storage["b"]
        if bits in FLOAT_BITS:
            dtype = "<f4" if bits == 32 else "<f2"
            if len(payload) != count * (bits // 8):
                raise CorruptPayload(f"payload has {len(payload)} bytes, {count} float{bits} latents need {count * bits // 8}")
            z = np.frombuffer(payload, dtype=dtype).astype(np.float32)
            if not np.isfinite(z).all():
                raise CorruptPayload("latent contains NaN or infinity")
            return z.reshape(shape)
        try:
            if storage["e"] == 0:
                indices = unpack_uint(payload, count=count, bits=bits)
                return dequantize_uniform(indices, bits=bits, clip=storage["c"]).reshape(shape)
            width = _bin_width(bits, storage["c"])
            mean, std, low, high = _symbol_gaussian(storage, width)
            symbols = decode_gaussian(payload, shape=shape, mean=mean, std=std, low=low, high=high, strict_end=True)
        except EntropyDecodeError as exc:
            raise CorruptPayload(f"latent bitstream does not decode: {exc}") from exc
        return (symbols * width).astype(np.float32)

    @staticmethod
    def _storage_from_header(params: dict[str, Any]) -> dict[str, Any]:
        colour = {}
        if "k" in params:
            if params["k"] != COLOUR_BITS:
                raise MalformedHeader(f"invalid gan-inversion colour parameter bits {params['k']!r} "
                                      f"(this version writes and reads {COLOUR_BITS})")
            colour = {"k": COLOUR_BITS}
        bits = params.get("b")
        if bits in FLOAT_BITS:
            return {"b": bits, **colour}
        e, c = params.get("e"), params.get("c")
        if not (isinstance(bits, int) and 1 <= bits <= MAX_UNIFORM_BITS and e in (0, 1)
                and isinstance(c, float) and np.isfinite(c) and c > 0):
            raise MalformedHeader(f"invalid gan-inversion storage parameters {params}")
        storage = {"b": bits, "e": e, "c": c, **colour}
        if e == 1 and ("m" in params or "s" in params):
            m, sd = params.get("m"), params.get("s")
            if not (isinstance(m, float) and isinstance(sd, float) and np.isfinite(m) and np.isfinite(sd)
                    and abs(m) <= 1e3 and 0 < sd <= 1e3):
                raise MalformedHeader(f"invalid gan-inversion latent statistics {params}")
            storage.update(m=m, s=sd)
        return storage

    @staticmethod
    def _overlap_from_header(params: dict[str, Any], tile: int) -> int:
        overlap = params.get("o", 0)  # files written before overlapping tiles existed have no "o": edge to edge
        if not (isinstance(overlap, int) and 0 <= overlap <= tile // 2):
            raise MalformedHeader(f"invalid gan-inversion tile overlap {overlap!r} for {tile}-px tiles (0..{tile // 2})")
        return overlap

    # -- codec ----------------------------------------------------------------------------------------

    def _overlap_for(self, height: int, width: int) -> int:
        """The overlap to code a ``height`` x ``width`` image with: the setting, checked against the model's
        tile; 0 for an image that fits in one tile, which has no neighbour to blend with (its file is then
        exactly the edge-to-edge file)."""
        tile, overlap = self.loaded.generator.tile, self.settings["overlap"]
        if overlap is None:  # measured on Kodak crops with the shipped GAN: see DEFAULT_OVERLAP_TILE_DIVISOR
            overlap = tile // DEFAULT_OVERLAP_TILE_DIVISOR
        if overlap > tile // 2:
            raise ValueError(f"codec {self.name!r}: overlap {overlap} px is over half the model's {tile}-px tile "
                             f"(at most {tile // 2})")
        return overlap if TileGrid(height, width, tile).count > 1 else 0

    def _tiles(self, image: Image.Image, overlap: int = 0) -> tuple[torch.Tensor, TileGrid]:
        tile = self.loaded.generator.tile
        tiles, grid = split_tiles(_to_unit_range(image), tile, overlap)
        return torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous(), grid

    def invert(self, targets: torch.Tensor, storage: dict[str, Any], *, image: torch.Tensor | None = None,
               grid: TileGrid | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Search the latents of ``targets`` (N, 3, T, T) in [-1, 1]; returns the best (N, latent_dim) z
        (before storage quantization), judged after quantization, and, when ``storage`` has colour parameters
        ("k"), the tiles' (N, 6) colour parameters searched with it (already quantized), else None.

        Edge-to-edge tiles (no ``grid``, or ``grid.overlap == 0``) are independent: each minimises its own MSE
        and keeps its own best latent. Overlapping tiles (``grid.overlap > 0``, ``image`` the (3, H, W) image in
        [-1, 1]) minimise together the squared error of their blend against the image -- what the decoder shows,
        so neighbours are pulled to agree where they overlap -- and the set of latents is kept or dropped as one.

        Each restart's search goes through ``SEARCHES`` (``search_memo``): a search this process already ran,
        for as many steps or fewer, is reused or continued instead of repeated, with the same result.
        """
        gen, enc = self.loaded.generator, self.loaded.encoder
        s = self.settings
        rng = torch.Generator().manual_seed(s["seed"])
        project = s["bits"] not in FLOAT_BITS and s["entropy"] == "none"
        clip = storage.get("c", 0.0)
        targets = targets.to(self.device)
        n = targets.shape[0]

        fast = search_precision(s["precision"], self.device) == "bfloat16"
        with_colour = "k" in storage

        def generate(z: torch.Tensor, colour: torch.Tensor, exact: bool) -> torch.Tensor:
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=fast and not exact):
                tiles = gen(z).float()
            return apply_colour(tiles, colour) if with_colour else tiles

        if grid is not None and grid.overlap:
            if image is None:
                raise ValueError("overlapping tiles are searched against the image: pass image=")
            weights = torch.from_numpy(blend_weights(grid)).to(self.device)
            image = image.to(self.device)
            per_tile = 1.0 / (3 * grid.tile * grid.tile)  # the sum's gradient on a tile is of MSE's size, as below

            def errors(z: torch.Tensor, colour: torch.Tensor, exact: bool = False) -> torch.Tensor:
                # one unit: the whole image
                blended = _blend(generate(z, colour, exact), weights, grid)
                err = ((blended - image).pow(2).sum() * per_tile).reshape(1)
                if s["objective"] == "ssim":
                    err = SSIM_OBJECTIVE_MSE_WEIGHT * err + 1.0 - _ssim_per_item(blended[None], image[None])
                return err

            unit = torch.zeros(n, dtype=torch.long)
        else:

            def errors(z: torch.Tensor, colour: torch.Tensor, exact: bool = False) -> torch.Tensor:
                # one unit per tile
                generated = generate(z, colour, exact)
                err = (generated - targets).pow(2).mean(dim=(1, 2, 3))
                if s["objective"] == "ssim":
                    err = SSIM_OBJECTIVE_MSE_WEIGHT * err + 1.0 - _ssim_per_item(generated, targets)
                return err

            unit = torch.arange(n)
        units = int(unit.max()) + 1
        unit_np, unit = unit.numpy(), unit.to(self.device)

        def start(z0: torch.Tensor) -> SearchState:
            if project:
                z0 = z0.clamp(-clip, clip)
            colour = torch.zeros(n, COLOUR_PARAMS, device=self.device)  # identity: gain 2**0, offset 0
            if with_colour:
                with torch.no_grad():  # each tile's start: the least-squares gain and offset of G(z0) to its target
                    colour = fit_colour(gen(z0).float(), targets)
            z0 = z0.detach().clone()
            return SearchState(steps=0, tensors={
                "z": z0, "colour": colour, "best_z": z0.clone(), "best_colour": colour.clone(),
                "best_err": torch.full((units,), float("inf"), device=self.device)})

        def advance(state: SearchState, steps: int) -> None:
            t = state.tensors
            z = t["z"].requires_grad_(True)
            colour = t["colour"].requires_grad_(with_colour)
            groups = [{"params": [z]}]
            if with_colour:  # at z's learning rate: on the demo's photos 0.2x or 0.05x of it gave 0.03-0.4 dB less
                groups.append({"params": [colour]})
            opt = torch.optim.Adam(groups, lr=s["lr"])
            if state.optimizer:
                opt.load_state_dict(state.optimizer)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                err = errors(z, colour)
                with torch.no_grad():  # keep the best iterate per unit: Adam on z does not descend monotonically
                    better = err.detach() < t["best_err"]
                    t["best_err"] = torch.where(better, err.detach(), t["best_err"])
                    t["best_z"][better[unit]] = z.detach()[better[unit]]
                    t["best_colour"][better[unit]] = colour.detach()[better[unit]]
                err.sum().backward()  # a sum: each tile's gradient is its own unit's error's, whatever the batch
                opt.step()
                with torch.no_grad():
                    if project:
                        z.clamp_(-clip, clip)
                    if with_colour:
                        colour.clamp_(-COLOUR_CLIP, COLOUR_CLIP)
            t["z"], t["colour"] = z.detach(), colour.detach()
            state.optimizer = opt.state_dict()
            state.steps += steps

        best_z = np.zeros((n, gen.latent_dim), dtype=np.float32)
        best_colour = np.zeros((n, COLOUR_PARAMS), dtype=np.float32)
        best_err = np.full(units, np.inf)
        for restart in range(s["restarts"]):
            # drawn on the CPU every restart: seeds stay aligned across restarts and devices
            noise = torch.randn(n, gen.latent_dim, generator=rng).to(self.device)
            from_encoder = restart == 0 and s["init"] == "encoder"

            def first(noise: torch.Tensor = noise, from_encoder: bool = from_encoder) -> SearchState:
                if from_encoder:
                    with torch.no_grad():
                        return start(enc(targets))
                return start(noise)

            key = self._search_key(restart, targets, image, grid, project, clip, with_colour, fast)
            state = SEARCHES.run(key, s["steps"], first, advance)
            t = state.tensors
            with torch.no_grad():
                search_best, search_colour = t["best_z"].clone(), t["best_colour"].clone()
                better = errors(t["z"], t["colour"]) < t["best_err"]  # the last iterate, which no step judged
                search_best[better[unit]] = t["z"][better[unit]]
                search_colour[better[unit]] = t["colour"][better[unit]]
                candidate = search_best.cpu().numpy().astype(np.float32)
                candidate_colour = quantize_colour(search_colour.cpu().numpy())
                stored = torch.from_numpy(self._reconstruct(candidate, storage)).to(self.device)
                stored_colour = torch.from_numpy(candidate_colour).to(self.device)
                err = errors(stored, stored_colour, exact=True).cpu().numpy()  # what the decoder will show
            improved = err < best_err
            best_err[improved] = err[improved]
            best_z[improved[unit_np]] = candidate[improved[unit_np]]
            best_colour[improved[unit_np]] = candidate_colour[improved[unit_np]]
        return best_z, (best_colour if with_colour else None)

    def _search_key(self, restart: int, targets: torch.Tensor, image: torch.Tensor | None, grid: TileGrid | None,
                    project: bool, clip: float, with_colour: bool, fast: bool) -> str | None:
        """What determines one restart's search, hashed; None (not kept) for a model handed in as an object,
        whose weights a caller may change under the same fingerprint, and for a search of no steps."""
        s = self.settings
        if hasattr(s["model"], "kind") or s["steps"] == 0:
            return None
        digest = hashlib.sha256()
        described = {
            "model": self.loaded.fingerprint, "device": str(self.device), "restart": restart, "seed": s["seed"],
            "init": s["init"], "lr": s["lr"], "objective": s["objective"], "bfloat16": fast,
            "clip": clip if project else None, "colour": with_colour,
            "grid": None if grid is None or not grid.overlap else dataclasses.astuple(grid),
            "shape": list(targets.shape),
        }
        digest.update(json.dumps(described, sort_keys=True).encode())
        digest.update(targets.detach().cpu().contiguous().numpy().tobytes())
        if image is not None and grid is not None and grid.overlap:
            digest.update(image.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def encode(self, image: Image.Image) -> bytes:
        image = self.check_rgb(image)
        storage = self._storage_params()
        overlap = self._overlap_for(image.height, image.width)
        targets, grid = self._tiles(image, overlap)
        if overlap:
            pixels = torch.from_numpy(_to_unit_range(image)).permute(2, 0, 1).contiguous()
            z, colour = self.invert(targets, storage, image=pixels, grid=grid)
            storage = {**storage, "o": overlap}  # only then: an edge-to-edge file is byte for byte what it was
        else:
            z, colour = self.invert(targets, storage)
        if storage.get("e") == 1:  # the Gaussian to code under: this image's latent statistics (see the top)
            width = _bin_width(storage["b"], storage["c"])
            storage = {**storage, "m": float(np.float32(z.mean())), "s": float(np.float32(max(z.std(), width)))}
        payload = self._serialize(z, storage)
        if colour is not None:  # fixed length, so first: the z section after it may be entropy-coded
            payload = pack_uint(colour_indices(colour), COLOUR_BITS) + payload
        return pack(
            codec_id=self.codec_id, width=image.width, height=image.height, payload=payload,
            fingerprint=self.fingerprint, params=storage,
            version=BASE_VERSION if colour is None else COLOUR_FORMAT_VERSION,
        )

    def _grid(self, header: Header | Container) -> TileGrid:
        tile = self.loaded.generator.tile
        overlap = self._overlap_from_header(header.params, tile)
        return TileGrid(height=header.height, width=header.width, tile=tile, overlap=overlap)

    def check_header(self, header: Header) -> None:
        """Refuse a payload whose length cannot hold the latents of the tiles the header's size needs."""
        super().check_header(header)
        storage = self._storage_from_header(header.params)
        gen = self.loaded.generator
        tiles = self._grid(header).count
        count = tiles * gen.latent_dim
        bits, n = storage["b"], header.payload_size
        if "k" in storage:
            colour_bytes = _colour_bytes(tiles)
            if n < colour_bytes:
                raise CorruptPayload(f"payload has {n} bytes; the {header.width}x{header.height} image's {tiles} "
                                     f"tiles need {colour_bytes} for their colour parameters, before their latents")
            n -= colour_bytes
        if bits in FLOAT_BITS or storage["e"] == 0:
            expected = count * bits // 8 if bits in FLOAT_BITS else -(-count * bits // 8)
            if n != expected:
                raise CorruptPayload(f"payload has {n} bytes; the {header.width}x{header.height} image's {count} "
                                     f"latents of {bits} bits need {expected}")
            return
        width = _bin_width(bits, storage["c"])
        mean, std, low, high = _symbol_gaussian(storage, width)
        try:
            check_gaussian_capacity(n, shape=(count,), mean=mean, std=std, low=low, high=high)
        except EntropyDecodeError as exc:
            raise CorruptPayload(
                f"payload cannot hold the {header.width}x{header.height} image's latents: {exc}") from None

    def decode(self, data: bytes) -> Image.Image:
        return self.decode_container(self.open_container(data))

    def decode_container(self, container: Container) -> Image.Image:
        storage = self._storage_from_header(container.params)
        gen = self.loaded.generator
        grid = self._grid(container)
        payload, colour = container.payload, None
        if "k" in storage:
            split = _colour_bytes(grid.count)
            try:
                indices = unpack_uint(payload[:split], count=grid.count * COLOUR_PARAMS, bits=COLOUR_BITS)
            except EntropyDecodeError as exc:
                raise CorruptPayload(f"colour parameters do not decode: {exc}") from exc
            if indices.size and indices.max() > 2 * _COLOUR_HALF:
                raise CorruptPayload(f"colour parameter code {int(indices.max())} is past the last level "
                                     f"({2 * _COLOUR_HALF})")
            colour = torch.from_numpy(colour_values(indices.reshape(grid.count, COLOUR_PARAMS)))
            payload = payload[split:]
        z = self._deserialize(payload, storage, (grid.count, gen.latent_dim))
        t = grid.tile
        pixels = np.empty((grid.height, grid.width, 3), dtype=np.uint8)
        chunk = _DECODE_CHUNK.get(torch.device(self.device).type, _DECODE_CHUNK["cuda"])

        def generated():  # a few tiles at a time: a large image has thousands of tiles
            for i in range(0, grid.count, chunk):
                with torch.no_grad():
                    tiles = gen(torch.from_numpy(z[i : i + chunk]).to(self.device))
                    if colour is not None:
                        tiles = apply_colour(tiles, colour[i : i + chunk].to(self.device))
                    yield tiles.permute(0, 2, 3, 1).cpu().numpy()

        if grid.overlap:  # blended a strip of tile rows at a time, each finished row straight into the 8-bit image
            tiles = (tile for batch in generated() for tile in batch)
            for top, rows in blend_rows(tiles, grid):
                pixels[top : top + rows.shape[0]] = _to_uint8(rows)
            return Image.fromarray(pixels, "RGB")
        for i, batch in zip(range(0, grid.count, chunk), generated()):  # each chunk straight into the 8-bit image
            for k, tile in enumerate(_to_uint8(batch)):  # row-major, as split_tiles cut them; the padding falls away
                row, col = divmod(i + k, grid.cols)
                y, x = row * t, col * t
                pixels[y : y + t, x : x + t] = tile[: grid.height - y, : grid.width - x]
        return Image.fromarray(pixels, "RGB")


def apply_colour(tiles: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """(N, 3, T, T) tiles mapped channel by channel to 2**gain * tile + offset; ``colour`` (N, 6) holds the three
    log2 gains, then the three offsets."""
    return tiles * torch.exp2(colour[:, :3, None, None]) + colour[:, 3:, None, None]


def fit_colour(tiles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 6) least-squares log2 gains and offsets that map each tile's channels onto its target's, within the
    stored range."""
    t_mean, g_mean = targets.mean(dim=(2, 3)), tiles.mean(dim=(2, 3))
    g_centred = tiles - g_mean[..., None, None]
    cov = (g_centred * (targets - t_mean[..., None, None])).mean(dim=(2, 3))
    var = g_centred.pow(2).mean(dim=(2, 3))
    # a flat tile, or one anticorrelated with its target, has no useful gain: keep 1 and fit the offset alone
    gain = torch.where((var > 1e-6) & (cov > 0), cov / var.clamp_min(1e-6), torch.ones_like(cov))
    log_gain = torch.log2(gain).clamp(-COLOUR_CLIP, COLOUR_CLIP)
    offset = (t_mean - torch.exp2(log_gain) * g_mean).clamp(-COLOUR_CLIP, COLOUR_CLIP)
    return torch.cat([log_gain, offset], dim=1)


_COLOUR_HALF = (1 << (COLOUR_BITS - 1)) - 1  # mid-tread: 2 * 31 + 1 levels, so gain 1 and offset 0 are exact


def colour_indices(colour: np.ndarray) -> np.ndarray:
    scaled = np.round(np.asarray(colour, dtype=np.float64) * (_COLOUR_HALF / COLOUR_CLIP))
    return (np.clip(scaled, -_COLOUR_HALF, _COLOUR_HALF) + _COLOUR_HALF).astype(np.int64)


def colour_values(indices: np.ndarray) -> np.ndarray:
    return ((np.asarray(indices, dtype=np.float64) - _COLOUR_HALF) * (COLOUR_CLIP / _COLOUR_HALF)).astype(np.float32)


def quantize_colour(colour: np.ndarray) -> np.ndarray:
    """The colour parameters the decoder will see."""
    return colour_values(colour_indices(colour))


def _colour_bytes(tiles: int) -> int:
    return -(-tiles * COLOUR_PARAMS * COLOUR_BITS // 8)


def _ssim_per_item(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable SSIM of each (3, H, W) pair in [-1, 1], as ``gencomp.metrics.ssim`` measures it on 8-bit
    pixels: mapped to [0, 1] first (SSIM's luminance term is not invariant to an offset), same window."""
    win = _fspecial_gauss_1d(ssim_window_size(min(x.shape[-2:])), WINDOW_SIGMA).repeat([x.shape[1], 1, 1, 1]).to(x)
    per_channel, _ = _ssim((x + 1) / 2, (y + 1) / 2, data_range=1.0, win=win, size_average=False)
    return per_channel.mean(dim=1)


def _to_unit_range(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 127.5 - 1.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip((np.nan_to_num(x) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def _blend(tiles: torch.Tensor, weights: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """(N, C, T, T) tiles weighted by (N, T, T) ``weights`` and summed where they overlap: the (C, H, W) image
    that ``tiling.blend_tiles`` makes of them, differentiably."""
    n, c, t, _ = tiles.shape
    columns = (tiles * weights[:, None]).reshape(n, c * t * t).T[None]  # fold's layout: (1, C*T*T, tiles)
    canvas = torch.nn.functional.fold(columns, output_size=(grid.padded_height, grid.padded_width), kernel_size=t,
                                      stride=grid.stride)
    return canvas[0, :, : grid.height, : grid.width]
