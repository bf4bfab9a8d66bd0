"""Approach 2, "vaegan": store the VAE-GAN's latent (its first ``channels`` channels) for the whole image.

Encoding reflect-pads the image to a multiple of the model's ``downsample``, takes the posterior mean ``mu``
(N, max_channels, H/d, W/d), keeps the first C channels (the switchable model orders channels by
importance) and stores them as:

- ``storage="entropy"``: symbols ``round(mu / quant_step)`` entropy-coded with constriction under the
  model's per-channel discretised Gaussian prior (``prior.channel_params()``, in symbol units); symbols
  beyond 8 prior standard deviations are escaped, never clipped;
- ``storage="raw"``: the poster's storage, ``raw_bits`` = 32 (float32) or 16 (float16) per latent value,
  unquantized (the rows of the poster's Table 2).

Decoding first checks that the payload can hold the latent the header's size implies (exactly, for raw
floats; for entropy-coded symbols, at least the bits the prior makes any value cost), rebuilds the latent
(symbols x quant_step, or the floats), runs the decoder with ``channels=C`` in tiles of at most
``_DECODE_CORE`` latent rows and columns, each with ``_DECODE_MARGIN`` latents of context on every side (more
than the decoder's receptive field, so the tiles join without seams), and crops the padding away. The
header records C and the storage; quant_step and downsample come from the model, which the header's
fingerprint pins. "vaegan-c28" ... "vaegan-c2" are the same codec with C fixed.

Rate control without retraining: ``quant_scale`` s multiplies the model's latent step (symbols
``round(mu / (quant_step * s))``, the prior's mean and scale divided by s to stay in symbol units). s < 1
spends more bits for a more faithful latent, s > 1 fewer; one model then traces a rate-distortion curve at
each C, as in variable-rate learned codecs that scale the quantizer (e.g. Choi et al. 2019 use a learned
version of this). A model is best at the s it was trained for (1); the header stores s (key "q") when it is
not 1, and a file without it decodes with s = 1.

Models with ``entropy_model="hyperprior"`` (:mod:`gencomp.models.hyperprior`) code the latent in two sections,
and their files say so in the header (storage code ``s`` = 1, so a file of the channel prior, ``s`` = 0, is
never read as one, and old files decode as before):

- z = h_a(the coded channels' mu, the others zeroed), rounded to integer symbols and coded under z's per-channel
  discretised Gaussian (like the channel prior's latent, escapes beyond 8 standard deviations); the header's
  key ``z`` is this section's length in bytes, the y section follows it;
- y given z: h_s(z_hat), in float64 on the CPU, gives each element a mean and a scale index into the fixed scale
  table; the residual symbols ``round((mu / quant_step - mean) / s)`` are coded under zero-mean discretised
  Gaussians of the table's scales divided by s, escaped beyond 8 of them. The decoder's latent is
  ``(mean + symbols * s) * quant_step``.

Decoding checks the z section's length against the least z can cost before anything (header check), decodes z,
computes the y parameters (a network at 1/4 of the latent's resolution), and checks the y section's length
against the least those parameters let y cost before decoding y or running the image decoder. Refinement with a
hyperprior model keeps z (the encoder's) fixed and refines y's residual symbols under the scales it gives: the
rate term is then y's exact cost, and z's bits, fixed, do not enter the search.

A hyperprior with a checkerboard context (``context="checkerboard"``) splits the y section in two (storage code
``s`` = 2, format version 3): the anchors' residual symbols under h_s's parameters, then the others' under the
parameters the context derives from the decoded anchors; the header's key ``a`` is the anchor section's length.
Each section is checked against the least its parameters let it cost before it is decoded. Refinement searches
the residuals of both halves at once: a non-anchor's residual is measured from the mean the context computes
from the (relaxed) anchors, so the search sees how moving an anchor changes its neighbours' means and scales.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from gencomp.codecs.base import DEVICE_PARAM, ModelCodec, Param, register
from gencomp.codecs.container import BASE_VERSION, Container, CorruptPayload, Header, MalformedHeader, pack
from gencomp.codecs.entropy import EntropyDecodeError, check_gaussian_capacity, decode_gaussian, encode_gaussian
from gencomp.codecs.refine import PRECISIONS, refine_latent
from gencomp.codecs.tiling import pad_to_multiple
from gencomp.hardware import search_precision
from gencomp.models.hyperprior import LOG_SCALE_CLAMP, anchor_mask, pad_channels, scale_table
from gencomp.models.prior import SCALE_MIN, discretised_gaussian_likelihood

# header field "s"; "hyperprior" is storage "entropy" with a model whose entropy_model is "hyperprior",
# "checkerboard" the same with a hyperprior that has a checkerboard context
_STORAGE_CODES = {"entropy": 0, "hyperprior": 1, "checkerboard": 2, "raw16": 16, "raw32": 32}
_HYPERPRIOR_CODES = (1, 2)
CONTEXT_FORMAT_VERSION = 3  # a gencomp without the checkerboard context must refuse these files (container.VERSION)
_PRIOR_SIGMAS = 8.0  # coded symbol range around the prior means, in prior standard deviations
_MAX_ALPHABET = 1 << 20
QUANT_SCALE_RANGE = (0.05, 20.0)
# Chosen from the refinement benchmark (BENCHMARKS.md): most of the gain comes in the first steps.
DEFAULT_REFINE_STEPS = 20
DEFAULT_REFINE_LAMBDA = 0.006
MAX_REFINE_STEPS = 10_000
# Decoder tiles, in latent units: the decoder's receptive field is under 6 latents (a 3x3 conv and two residual
# blocks at latent resolution, then one 3x3 conv per 2x stage), so 8 latents of context make every tile's core
# what a whole-image decode computes. 48 + 2 * 8 = 64 latents is 1024 px at downsample 16.
_DECODE_CORE = 48
_DECODE_MARGIN = 8


class VAEGANCodec(ModelCodec):
    name = "vaegan"
    family = "vaegan"
    codec_id = 32
    bitstream = "vaegan"
    model_kind = "vaegan"
    fixed_channels: ClassVar[int | None] = None
    params = (
        Param("model", "path", None, "VAE-GAN model file (default: $GENCOMP_VAEGAN_MODEL or models/vaegan/model.pt)"),
        Param("channels", "int", None, "latent channels kept, one of the model's channel_set (default: the largest)"),
        Param("storage", "str", "entropy", "entropy: quantized + entropy-coded; raw: the poster's float latent",
              ("entropy", "raw")),
        Param("raw_bits", "int", 32, "bits per latent value with storage=raw", (16, 32)),
        Param("quant_scale", "float", 1.0, "multiplies the latent step: < 1 more bits and quality, > 1 fewer"),
        Param("refine_steps", "int", DEFAULT_REFINE_STEPS,
              "Adam steps refining the encoder's latent for this image (0: the encoder's latent as is)"),
        Param("refine_lambda", "float", DEFAULT_REFINE_LAMBDA,
              "rate weight of the refinement: MSE + lambda * quant_scale^2 * bpp (storage=entropy)"),
        Param("precision", "str", "auto", "arithmetic of the refinement search: bfloat16 (autocast), float32, or "
              "auto: bfloat16 where the CPU (AVX512-BF16, AMX) or GPU computes it in hardware, float32 elsewhere; "
              "decoding is always float32", ("auto", *PRECISIONS), added_later=True),
        DEVICE_PARAM,
    )

    def __init__(self, **settings):
        super().__init__(**settings)
        self._search_copy: torch.nn.Module | None = None
        low, high = QUANT_SCALE_RANGE
        scale = float(np.float32(self.settings["quant_scale"]))  # the header stores float32: use that value
        if not low <= scale <= high:
            raise ValueError(f"codec {self.name!r}: quant_scale must be in [{low}, {high}], got {scale}")
        if scale != 1.0 and self.settings["storage"] == "raw":
            raise ValueError(f"codec {self.name!r}: quant_scale applies to storage=entropy, not raw")
        self.settings["quant_scale"] = scale
        if not 0 <= self.settings["refine_steps"] <= MAX_REFINE_STEPS:
            raise ValueError(f"codec {self.name!r}: refine_steps must be in [0, {MAX_REFINE_STEPS}], "
                             f"got {self.settings['refine_steps']}")
        if not self.settings["refine_lambda"] > 0:
            raise ValueError(f"codec {self.name!r}: refine_lambda must be > 0, got {self.settings['refine_lambda']}")

    @property
    def channels(self) -> int:
        """The channel count to encode with, checked against the model."""
        cfg = self.loaded.config["model"]
        channel_set = sorted(int(c) for c in cfg["channel_set"])
        channels = self.fixed_channels or self.settings.get("channels") or channel_set[-1]
        if channels not in channel_set:
            raise ValueError(
                f"codec {self.name!r}: the model at {self.loaded.path} was trained for channels {channel_set}, not {channels}"
            )
        return channels

    def _prior(self, channels: int, quant_step: float, quant_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, int, int]:
        mean, scale = self.loaded.prior.channel_params()
        return _coded_range(mean[:channels] / quant_scale, scale[:channels] / quant_scale, f"quant_step {quant_step}")

    @property
    def _hyperprior(self) -> bool:
        return self.loaded.entropy_model == "hyperprior"

    @property
    def _checkerboard(self) -> bool:
        return self._hyperprior and self.loaded.hyperprior.context == "checkerboard"

    def _z_prior(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """z's per-channel (mean, scale) in symbol units, shaped (channels, 1, 1), and its coded range."""
        mean, scale = self.loaded.hyperprior.z_prior.channel_params()
        return _coded_range(mean, scale, "the hyperprior's z")

    def _z_shape(self, latent_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        hyper = self.loaded.hyperprior
        return (hyper.channels, *hyper.z_size(latent_shape[1], latent_shape[2]))

    def _y_params(self, z_symbols: np.ndarray, shape: tuple[int, int, int], quant_scale: float
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(mean in model symbol units, coding std in residual symbol units, low, high) of y's residuals given z."""
        channels, height, width = shape
        mean, index = self.loaded.hyperprior.coding_params(z_symbols, height, width, channels)
        return (mean, *_coding_std(index, quant_scale))

    def _latent_shape(self, width: int, height: int, channels: int) -> tuple[int, int, int]:
        d = int(self.loaded.config["model"]["downsample"])
        return channels, -(-height // d), -(-width // d)

    def encode(self, image: Image.Image) -> bytes:
        image = self.check_rgb(image)
        channels = self.channels
        quant_step = self.loaded.quant_step
        d = int(self.loaded.config["model"]["downsample"])
        padded = pad_to_multiple(np.asarray(image, dtype=np.float32) / 255.0, d)
        x = torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1).unsqueeze(0).to(self.device)
        with torch.no_grad():
            mu = self.loaded.model.encode(x)[:, :channels]
        params = {"c": channels}
        version = BASE_VERSION
        if self.settings["storage"] == "entropy" and self._hyperprior:
            payload, hyper_params = self._encode_hyperprior(mu / quant_step, x, image)
            params.update(hyper_params)
            storage = _STORAGE_CODES["checkerboard" if self._checkerboard else "hyperprior"]
            version = CONTEXT_FORMAT_VERSION if self._checkerboard else BASE_VERSION
        elif self.settings["storage"] == "entropy":
            quant_scale = self.settings["quant_scale"]
            step = quant_step * quant_scale
            symbols = self._refine(mu / step, x, image, step=step, quant_scale=quant_scale)
            symbols = symbols[0].cpu().numpy().astype(np.int64)
            mean, scale, low, high = self._prior(channels, quant_step, quant_scale)
            payload = encode_gaussian(symbols, mean=mean, std=scale, low=low, high=high, strict_end=True)
            storage = _STORAGE_CODES["entropy"]
            if quant_scale != 1.0:
                params["q"] = quant_scale
        else:
            latent = self._refine(mu, x, image, step=None, quant_scale=1.0)[0].cpu().numpy().astype(np.float64)
            bits = self.settings["raw_bits"]
            payload = latent.astype("<f4" if bits == 32 else "<f2").tobytes()
            storage = _STORAGE_CODES[f"raw{bits}"]
        return pack(
            codec_id=self.codec_id, width=image.width, height=image.height, payload=payload,
            fingerprint=self.fingerprint, params={**params, "s": storage}, version=version,
        )

    def _encode_hyperprior(self, y: torch.Tensor, x: torch.Tensor, image: Image.Image) -> tuple[bytes, dict]:
        """The z and y sections of a hyperprior model's file, and the header's keys besides c and s; ``y`` is
        (1, C, h, w) in the model's symbol units (mu / quant_step)."""
        hyper, quant_scale = self.loaded.hyperprior, self.settings["quant_scale"]
        with torch.no_grad():  # z need not be reproducible: its symbols are in the file
            z = hyper.analyse(pad_channels(y, hyper.latent_channels))
        z_symbols = torch.round(z)[0].cpu().numpy().astype(np.int64)
        z_mean, z_scale, z_low, z_high = self._z_prior()
        z_stream = encode_gaussian(z_symbols, mean=z_mean, std=z_scale, low=z_low, high=z_high, strict_end=True)
        shape = tuple(y.shape[1:])
        params = {"z": len(z_stream)}
        if self._checkerboard:
            anchor_stream, other_stream = self._encode_checkerboard(y, z_symbols, x, image)
            params["a"] = len(anchor_stream)
            y_stream = anchor_stream + other_stream
        else:
            mean, std, low, high = self._y_params(z_symbols, shape, quant_scale)
            residual = (y[0].detach().cpu().double() - torch.from_numpy(mean)) / quant_scale
            symbols = self._refine_residual(residual, mean, std, x, image).numpy().astype(np.int64)
            y_stream = encode_gaussian(symbols, mean=0.0, std=std, low=low, high=high, strict_end=True)
        if quant_scale != 1.0:
            params["q"] = quant_scale
        return z_stream + y_stream, params

    def _refine_residual(self, residual: torch.Tensor, mean: np.ndarray, std: np.ndarray, x: torch.Tensor,
                         image: Image.Image) -> torch.Tensor:
        """y's residual symbols (C, h, w), rounded, or refined for this image with z fixed (module docstring)."""
        steps = self.settings["refine_steps"]
        if steps == 0:
            return torch.round(residual)
        model, quant_scale, quant_step = self._search_model(), self.settings["quant_scale"], self.loaded.quant_step
        channels = residual.shape[0]
        height, width = image.height, image.width
        mean_t = torch.from_numpy(mean).float().unsqueeze(0).to(self.device)
        std_t = torch.from_numpy(std).float().unsqueeze(0).to(self.device)

        def decode(u: torch.Tensor) -> torch.Tensor:
            y = ((mean_t + u * quant_scale) * quant_step).contiguous(memory_format=torch.channels_last)
            return model.decode(y, channels=channels)[..., :height, :width]

        def bits(u: torch.Tensor) -> torch.Tensor:
            return -torch.log2(discretised_gaussian_likelihood(u, torch.zeros_like(std_t), std_t)).sum()

        result = refine_latent(
            residual.float().unsqueeze(0).to(self.device), x[..., :height, :width], decode=decode, bits=bits,
            steps=steps, lam=self.settings["refine_lambda"] * quant_scale**2, precision=self._search_precision(),
        )
        return result.latent[0].cpu()

    def _encode_checkerboard(self, y: torch.Tensor, z_symbols: np.ndarray, x: torch.Tensor, image: Image.Image
                             ) -> tuple[bytes, bytes]:
        """The anchor and non-anchor sections of a checkerboard model's y (module docstring)."""
        hyper, quant_scale = self.loaded.hyperprior, self.settings["quant_scale"]
        channels, height, width = y.shape[1:]
        hyper_out = hyper.coding_output(z_symbols, height, width)
        mean, index = hyper.split_output(hyper_out, channels)
        anchors = anchor_mask(height, width)
        latent = y[0].detach().cpu().double().numpy()
        if self.settings["refine_steps"]:
            symbols = self._refine_checkerboard(latent, hyper_out, mean, index, x, image)
            anchor_symbols = symbols[:, anchors]
        else:
            symbols = None
            anchor_symbols = np.round((latent - mean) / quant_scale)[:, anchors]
        decoded = np.zeros_like(latent)
        decoded[:, anchors] = mean[:, anchors] + anchor_symbols * quant_scale
        other_mean, other_index = hyper.split_output(hyper.coding_context_output(hyper_out, decoded), channels)
        if symbols is None:
            other_symbols = np.round((latent - other_mean) / quant_scale)[:, ~anchors]
        else:
            other_symbols = symbols[:, ~anchors]
        streams = []
        for part, part_index in ((anchor_symbols, index[:, anchors]), (other_symbols, other_index[:, ~anchors])):
            std, low, high = _coding_std(part_index, quant_scale)
            streams.append(encode_gaussian(part.astype(np.int64), mean=0.0, std=std, low=low, high=high,
                                           strict_end=True))
        return streams[0], streams[1]

    def _refine_checkerboard(self, latent: np.ndarray, hyper_out: np.ndarray, mean: np.ndarray, index: np.ndarray,
                             x: torch.Tensor, image: Image.Image) -> np.ndarray:
        """Both halves' residual symbols (C, h, w), refined for this image with z fixed: an anchor's residual is
        measured from h_s's mean, a non-anchor's from the mean the context derives from the relaxed anchors.
        The search's rate uses the context's continuous scales for the non-anchors (the file rounds them up to
        the scale table, a few tenths of a percent more)."""
        hyper, model = self.loaded.hyperprior, self._search_model()
        quant_scale, quant_step = self.settings["quant_scale"], self.loaded.quant_step
        channels, rows, cols = latent.shape
        height, width = image.height, image.width
        latent_channels = hyper.latent_channels
        device = self.device
        anchors = anchor_mask(rows, cols)
        board = torch.from_numpy(anchors).to(device)
        out_t = torch.from_numpy(hyper_out).float().unsqueeze(0).to(device)
        mean_t = torch.from_numpy(mean).float().unsqueeze(0).to(device)
        anchor_std = torch.from_numpy(scale_table()[index] / quant_scale).float().unsqueeze(0).to(device)
        cache: dict[str, torch.Tensor] = {}

        def context(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(non-anchor mean, non-anchor std in residual symbols) for residuals ``u``; the last one cached,
            as decode and bits ask for the same relaxed latent in turn."""
            if cache.get("u") is not u:
                with torch.autocast(torch.device(device).type, enabled=False):
                    anchors = torch.where(board, mean_t + u.float() * quant_scale, 0.0)
                    out = hyper.checkerboard(out_t, pad_channels(anchors, latent_channels))
                other_mean = out[:, :channels]
                log_scale = out[:, latent_channels : latent_channels + channels].clamp(*LOG_SCALE_CLAMP)
                cache.update(u=u, mean=other_mean, std=log_scale.exp().clamp(min=SCALE_MIN) / quant_scale)
            return cache["mean"], cache["std"]

        def decode(u: torch.Tensor) -> torch.Tensor:
            other_mean, _ = context(u)
            y = (torch.where(board, mean_t, other_mean) + u * quant_scale) * quant_step
            return model.decode(y.contiguous(memory_format=torch.channels_last), channels=channels)[..., :height, :width]

        def bits(u: torch.Tensor) -> torch.Tensor:
            _, other_std = context(u)
            std = torch.where(board, anchor_std, other_std)
            return -torch.log2(discretised_gaussian_likelihood(u.float(), torch.zeros_like(std), std)).sum()

        start = (latent - mean) / quant_scale  # the encoder's residuals: anchors from h_s's mean, ...
        decoded = np.where(anchors, mean + np.round(start) * quant_scale, 0.0)
        other_mean, _ = hyper.split_output(hyper.coding_context_output(hyper_out, decoded), channels)
        start = np.where(anchors, start, (latent - other_mean) / quant_scale)  # ... the others from the context's
        result = refine_latent(
            torch.from_numpy(start).float().unsqueeze(0).to(device), x[..., :height, :width],
            decode=decode, bits=bits, steps=self.settings["refine_steps"],
            lam=self.settings["refine_lambda"] * quant_scale**2, precision=self._search_precision(),
        )
        return result.latent[0].cpu().double().numpy()

    def _search_precision(self) -> str:
        """The refinement's arithmetic: with ``auto``, bfloat16 where it runs in hardware. On Kodak it found
        latents as good as float32's in about half the time (BENCHMARKS.md, "Encode-time latent refinement")."""
        return search_precision(self.settings["precision"], self.device)

    def _search_model(self) -> torch.nn.Module:
        """The refinement search's copy of the model, in channels_last: oneDNN's fast layout (about 1.6x in
        float32 and 2x in bfloat16 for the decoder's forward and backward on a 768x512 image, 1 thread), weights
        included (the shared model's weights stay contiguous; decoding converts only the latent, encoding reads
        the image's HWC array as a channels_last tensor)."""
        if self._search_copy is None:
            self._search_copy = copy.deepcopy(self.loaded.model).to(memory_format=torch.channels_last)
        return self._search_copy

    def _refine(self, latent: torch.Tensor, x: torch.Tensor, image: Image.Image, *, step: float | None,
                quant_scale: float) -> torch.Tensor:
        """The latent to store: symbols (``step`` given) or floats, refined for this image when asked to."""
        steps = self.settings["refine_steps"]
        if steps == 0:
            return torch.round(latent) if step is not None else latent
        model, prior = self._search_model(), self.loaded.prior
        channels = latent.shape[1]
        height, width = image.height, image.width
        scale = 1.0 if step is None else step

        def decode(y: torch.Tensor) -> torch.Tensor:
            return model.decode((y * scale).contiguous(memory_format=torch.channels_last),
                                channels=channels)[..., :height, :width]

        def bits(y: torch.Tensor) -> torch.Tensor:
            return prior.bits(y, quant_scale)

        result = refine_latent(
            latent, x[..., :height, :width], decode=decode, bits=bits if step is not None else None,
            steps=steps, lam=self.settings["refine_lambda"] * quant_scale**2, precision=self._search_precision(),
        )
        return result.latent

    def _header_params(self, params: dict) -> tuple[int, int, float]:
        """(channels, storage code, quant_scale) of a header, validated against the model."""
        channels, storage = params.get("c"), params.get("s")
        max_channels = int(self.loaded.config["model"]["max_channels"])
        quant_scale = params.get("q", 1.0)
        if not (isinstance(channels, int) and 1 <= channels <= max_channels and storage in _STORAGE_CODES.values()
                and isinstance(quant_scale, float) and QUANT_SCALE_RANGE[0] <= quant_scale <= QUANT_SCALE_RANGE[1]
                and (storage in (0, *_HYPERPRIOR_CODES) or "q" not in params)
                and (storage in _HYPERPRIOR_CODES) == ("z" in params)
                and (storage == _STORAGE_CODES["checkerboard"]) == ("a" in params)):
            raise MalformedHeader(f"invalid vaegan parameters {params}")
        if storage in (0, *_HYPERPRIOR_CODES):
            model_code = (_STORAGE_CODES["checkerboard"] if self._checkerboard else
                          _STORAGE_CODES["hyperprior"] if self._hyperprior else 0)
            if storage != model_code:
                coded = {0: "per-channel prior", 1: "hyperprior", 2: "hyperprior with a checkerboard context"}
                raise MalformedHeader(f"the file's latent is coded with a {coded[storage]}; the model at "
                                      f"{self.loaded.path} codes with a {coded[model_code]}")
        return channels, storage, quant_scale

    @staticmethod
    def _section_bytes(params: dict, payload_size: int) -> list[int]:
        """The lengths of a hyperprior file's sections (z, then the anchors' for a checkerboard file, then the
        rest of y) from the header, checked against the payload's."""
        lengths = [params["z"], *([params["a"]] if "a" in params else [])]
        for name, length in zip(("z", "a"), lengths):
            if not (isinstance(length, int) and 0 < length and length % 4 == 0):
                raise MalformedHeader(f"{name} section length {length!r} is not a positive number of 32-bit words")
        if sum(lengths) > payload_size:
            raise MalformedHeader(f"section lengths {lengths} do not fit a {payload_size}-byte payload")
        return [*lengths, payload_size - sum(lengths)]

    def check_header(self, header: Header) -> None:
        """Refuse a payload whose length cannot hold the latent of the image the header declares."""
        super().check_header(header)
        channels, storage, quant_scale = self._header_params(header.params)
        shape = self._latent_shape(header.width, header.height, channels)
        count = int(np.prod(shape))
        if storage in _HYPERPRIOR_CODES:
            self._check_hyperprior_capacity(header, shape, quant_scale)
            return
        if storage:
            if header.payload_size != count * (storage // 8):
                raise CorruptPayload(f"payload has {header.payload_size} bytes, {count} float{storage} values need "
                                     f"{count * (storage // 8)}")
            return
        mean, scale, low, high = self._prior(channels, self.loaded.quant_step, quant_scale)
        try:
            check_gaussian_capacity(header.payload_size, shape=shape, mean=mean, std=scale, low=low, high=high)
        except EntropyDecodeError as exc:
            raise CorruptPayload(
                f"payload cannot hold the {header.width}x{header.height} image's latent: {exc}") from None

    def _y_shapes(self, shape: tuple[int, int, int], storage: int) -> list[tuple[int, ...]]:
        """The shapes of a hyperprior file's y sections: y, or the anchors' (C, n) and the others' (C, m)."""
        if storage != _STORAGE_CODES["checkerboard"]:
            return [shape]
        anchors = int(anchor_mask(shape[1], shape[2]).sum())
        return [(shape[0], anchors), (shape[0], shape[1] * shape[2] - anchors)]

    def _check_hyperprior_capacity(self, header: Header, shape: tuple[int, int, int], quant_scale: float) -> None:
        """Before any decoding: the z section must hold z; each y section at least what it costs at the
        smallest coding scale (its exact bound, with the scales z and the anchors give, is checked before it is
        decoded)."""
        storage = header.params["s"]
        z_bytes, *y_bytes = self._section_bytes(header.params, header.payload_size)
        z_mean, z_scale, z_low, z_high = self._z_prior()
        smallest = scale_table()[0] / quant_scale
        high = int(np.ceil(_PRIOR_SIGMAS * smallest)) + 1
        try:
            check_gaussian_capacity(z_bytes, shape=self._z_shape(shape), mean=z_mean, std=z_scale, low=z_low,
                                    high=z_high)
            for size, part in zip(y_bytes, self._y_shapes(shape, storage)):
                check_gaussian_capacity(size, shape=part, mean=0.0, std=smallest, low=-high, high=high)
        except EntropyDecodeError as exc:
            raise CorruptPayload(
                f"payload cannot hold the {header.width}x{header.height} image's latent: {exc}") from None

    def _hyperprior_symbols(self, container: Container, shape: tuple[int, int, int], quant_scale: float
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(z symbols, y residual symbols, y mean, y coding std) of a hyperprior file, the last three (C, h, w)
        whatever the file's sections."""
        payload, storage = container.payload, container.params["s"]
        z_bytes, *y_bytes = self._section_bytes(container.params, len(payload))
        z_mean, z_scale, z_low, z_high = self._z_prior()
        try:
            z_symbols = decode_gaussian(payload[:z_bytes], shape=self._z_shape(shape), mean=z_mean,
                                        std=z_scale, low=z_low, high=z_high, strict_end=True)
        except EntropyDecodeError as exc:
            raise CorruptPayload(f"hyperprior z bitstream does not decode: {exc}") from exc
        sections = np.cumsum([z_bytes, *y_bytes])
        if storage != _STORAGE_CODES["checkerboard"]:
            mean, std, low, high = self._y_params(z_symbols, shape, quant_scale)
            return z_symbols, _decode_section(payload[z_bytes:], std, low, high), mean, std
        hyper = self.loaded.hyperprior
        channels, rows, cols = shape
        anchors = anchor_mask(rows, cols)
        hyper_out = hyper.coding_output(z_symbols, rows, cols)
        mean, index = hyper.split_output(hyper_out, channels)
        std, low, high = _coding_std(index[:, anchors], quant_scale)
        symbols = np.zeros(shape, dtype=np.int64)
        symbols[:, anchors] = _decode_section(payload[sections[0]:sections[1]], std, low, high)
        decoded = np.where(anchors, mean + symbols * quant_scale, 0.0)
        other_mean, other_index = hyper.split_output(hyper.coding_context_output(hyper_out, decoded), channels)
        other_std, low, high = _coding_std(other_index[:, ~anchors], quant_scale)
        symbols[:, ~anchors] = _decode_section(payload[sections[1]:], other_std, low, high)
        mean = np.where(anchors, mean, other_mean)
        all_std = np.empty(shape, dtype=np.float64)
        all_std[:, anchors], all_std[:, ~anchors] = std, other_std
        return z_symbols, symbols, mean, all_std

    def information_bits(self, data: bytes | Container) -> float:
        """Information content of the symbols a file stores under the model's entropy model (z's included for a
        hyperprior), i.e. the payload without the entropy coder's word padding; raw storage: the payload's bits."""
        container = data if isinstance(data, Container) else self.open_container(data)
        channels, storage, quant_scale = self._header_params(container.params)
        shape = self._latent_shape(container.width, container.height, channels)
        with torch.no_grad():
            if storage in _HYPERPRIOR_CODES:
                z_symbols, symbols, _, std = self._hyperprior_symbols(container, shape, quant_scale)
                z_prior = self.loaded.hyperprior.z_prior
                z_bits = z_prior.bits(torch.from_numpy(z_symbols).double().unsqueeze(0).to(z_prior.mean.device))
                y_bits = -torch.log2(discretised_gaussian_likelihood(
                    torch.from_numpy(symbols).double(), torch.zeros(()), torch.from_numpy(std))).sum()
                return float(z_bits) + float(y_bits)
            if storage == _STORAGE_CODES["entropy"]:
                latent, _, _ = self.latent_from_container(container)
                step = self.loaded.quant_step * quant_scale
                symbols = torch.from_numpy(np.round(latent / step)).unsqueeze(0)
                return float(self.loaded.prior.bits(symbols.to(self.loaded.prior.mean.device), quant_scale))
        return 8.0 * len(container.payload)

    def latent_from_container(self, data: bytes | Container) -> tuple[np.ndarray, int, tuple[int, int]]:
        """(latent (C, h, w) float32 as the decoder sees it, C, (width, height)) of a ``.gcz`` file (its bytes, or
        a container already read and checked)."""
        container = data if isinstance(data, Container) else self.open_container(data)
        channels, storage, quant_scale = self._header_params(container.params)
        shape = self._latent_shape(container.width, container.height, channels)
        count = int(np.prod(shape))
        if storage in _HYPERPRIOR_CODES:
            _, symbols, mean, _ = self._hyperprior_symbols(container, shape, quant_scale)
            latent = ((mean + symbols * quant_scale) * self.loaded.quant_step).astype(np.float32)
        elif storage == 0:
            mean, scale, low, high = self._prior(channels, self.loaded.quant_step, quant_scale)
            try:
                symbols = decode_gaussian(container.payload, shape=shape, mean=mean, std=scale, low=low, high=high,
                                          strict_end=True)  # low is 8 prior stds out and more: never last
            except EntropyDecodeError as exc:
                raise CorruptPayload(f"latent bitstream does not decode: {exc}") from exc
            latent = (symbols * (self.loaded.quant_step * quant_scale)).astype(np.float32)
        else:
            size = storage // 8
            if len(container.payload) != count * size:
                raise CorruptPayload(f"payload has {len(container.payload)} bytes, {count} float{storage} values need {count * size}")
            latent = np.frombuffer(container.payload, dtype="<f4" if storage == 32 else "<f2").astype(np.float32)
            if not np.isfinite(latent).all():
                raise CorruptPayload("latent contains NaN or infinity")
            latent = latent.reshape(shape)
        return latent, channels, (container.width, container.height)

    def decode_latent(self, latent: np.ndarray, *, channels: int, width: int, height: int) -> Image.Image:
        """Run the decoder on a (C, h, w) latent and crop to ``width`` x ``height``; in tiles (see the top), so
        memory is bounded by the tile, not the image."""
        d = int(self.loaded.config["model"]["downsample"])
        _, rows, cols = latent.shape
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        m = _DECODE_MARGIN
        with torch.no_grad():
            for r0 in range(0, rows, _DECODE_CORE):
                for c0 in range(0, cols, _DECODE_CORE):
                    r1, c1 = min(r0 + _DECODE_CORE, rows), min(c0 + _DECODE_CORE, cols)
                    a0, b0 = max(r0 - m, 0), max(c0 - m, 0)
                    block = latent[:, a0 : min(r1 + m, rows), b0 : min(c1 + m, cols)]
                    y = torch.from_numpy(np.ascontiguousarray(block)).unsqueeze(0).to(self.device)
                    y = y.contiguous(memory_format=torch.channels_last)  # ~1.6x faster convolutions on a CPU
                    x = self.loaded.model.decode(y, channels=channels)[0].permute(1, 2, 0).cpu().numpy()
                    core = x[(r0 - a0) * d : (r1 - a0) * d, (c0 - b0) * d : (c1 - b0) * d]
                    top, left = r0 * d, c0 * d
                    if top >= height or left >= width:
                        continue
                    core = core[: height - top, : width - left]
                    pixels[top : top + core.shape[0], left : left + core.shape[1]] = np.clip(
                        np.nan_to_num(core) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # NaN: a latent out of range
        return Image.fromarray(pixels, "RGB")

    def decode(self, data: bytes) -> Image.Image:
        return self.decode_container(self.open_container(data))

    def decode_container(self, container: Container) -> Image.Image:
        latent, channels, (width, height) = self.latent_from_container(container)
        return self.decode_latent(latent, channels=channels, width=width, height=height)


def _decode_section(data: bytes, std: np.ndarray, low: int, high: int) -> np.ndarray:
    """A y section's residual symbols, shaped as ``std``; strict_end checks the section's length against these
    scales before decoding."""
    try:
        return decode_gaussian(data, shape=std.shape, mean=0.0, std=std, low=low, high=high, strict_end=True)
    except EntropyDecodeError as exc:
        raise CorruptPayload(f"latent bitstream does not decode: {exc}") from exc


def _coding_std(index: np.ndarray, quant_scale: float) -> tuple[np.ndarray, int, int]:
    """(coding std in residual symbol units, low, high) of the residuals coded with these scale indices."""
    std = scale_table()[index] / quant_scale
    high = int(np.ceil(_PRIOR_SIGMAS * std.max())) + 1 if std.size else 1
    return std, -high, high


def _coded_range(mean: np.ndarray, scale: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per-channel (mean, scale) shaped (C, 1, 1) and the symbol range [low, high] that holds 8 scales around
    every mean (beyond it: escapes)."""
    low = int(np.floor((mean - _PRIOR_SIGMAS * scale).min())) - 1
    high = int(np.ceil((mean + _PRIOR_SIGMAS * scale).max())) + 1
    if high - low > _MAX_ALPHABET:
        raise ValueError(f"prior range [{low}, {high}] is too wide to entropy-code ({what})")
    return mean.reshape(-1, 1, 1), scale.reshape(-1, 1, 1), low, high


register(VAEGANCodec)

# One codec name per row of the poster's Table 2; the same bitstream, channels fixed.
for _channels, _codec_id in ((28, 33), (16, 34), (8, 35), (4, 36), (2, 37)):
    register(
        type(
            f"VAEGANC{_channels}Codec",
            (VAEGANCodec,),
            {
                "name": f"vaegan-c{_channels}",
                "codec_id": _codec_id,
                "fixed_channels": _channels,
                "params": tuple(p for p in VAEGANCodec.params if p.name != "channels"),
                "__doc__": f"The VAE-GAN codec with {_channels} latent channels.",
            },
        )
    )
