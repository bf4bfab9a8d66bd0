"""The one interface every codec implements, classical or generative, and the registry by name.

A codec turns an RGB image into the bytes of a complete ``.gcz`` file (container header included, see
``container.py``) and back. Evaluation and the command line only ever use this interface, so a bpp or a
compression ratio is always the length of a file that decodes.

Settings are validated once, in ``Codec.__init__``: unknown names, wrong types and values outside
``choices`` raise ``ValueError`` naming the codec and the setting. Decoding reads everything it needs from
the file's header; the only setting a decoder uses is the model of a generative codec.

Limits. Each codec has a pixel limit, ``max_pixels`` (a class default per family, ``CLASSICAL_MAX_PIXELS`` or
``LEARNED_MAX_PIXELS``; set the attribute on an instance, or pass ``max_pixels`` to ``decode_file`` /
``gencomp decompress --max-pixels``, to change it). Encoding refuses a larger image (so no file is written that
the default decoder would refuse) and decoding refuses a larger header before its payload is read. Each codec
also refuses, in :meth:`Codec.check_header`, a payload whose length cannot carry the image its header
declares, so decoding time and memory are bounded by the file's own length and the pixel limit.
"""

from __future__ import annotations

import abc
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image

from gencomp.codecs.container import (
    Container,
    CorruptPayload,
    FingerprintMismatch,
    Header,
    LimitExceeded,
    UnknownCodec,
    unpack,
)
from gencomp.data.images import DEFAULT_MAX_PIXELS, TOO_LARGE, ImageRejected
from gencomp.models import zoo

if TYPE_CHECKING:  # models pull in torch; classical codecs must not need them at import time
    from gencomp.models.store import LoadedModel


@dataclass(frozen=True)
class Param:
    """One setting of a codec, as listed by ``gencomp codecs``."""

    name: str
    type: str  # "int", "float", "str", "path"
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    # A setting added after results were cached: at its default it is left out of ``defining_settings``, so the
    # cells of earlier code (which behaved as the default does) keep their cache keys.
    added_later: bool = False


def _coerce(codec: str, param: Param, value: Any) -> Any:
    if value is None:
        if param.default is None or param.type == "path":
            return None
        raise ValueError(f"codec {codec!r}: setting {param.name!r} cannot be empty")
    try:
        if param.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif param.type == "float":
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif param.type == "str":
            if not isinstance(value, str):
                raise ValueError
        elif param.type == "path":
            if not isinstance(value, (str, os.PathLike)) and not hasattr(value, "kind"):
                raise ValueError  # a path, or an already loaded model (LoadedModel)
        else:  # pragma: no cover - a codec author's mistake
            raise TypeError(f"unknown Param type {param.type!r}")
    except (ValueError, TypeError):
        raise ValueError(
            f"codec {codec!r}: setting {param.name!r} must be of type {param.type}, got {value!r}"
        ) from None
    if param.choices is not None and value not in param.choices:
        raise ValueError(f"codec {codec!r}: setting {param.name!r} must be one of {list(param.choices)}, got {value!r}")
    return value


CLASSICAL_MAX_PIXELS = DEFAULT_MAX_PIXELS  # 8000 x 8000, the image rules' limit
# A learned decoder spends seconds per megapixel on a CPU (the GAN: ~3 s/Mpx on 2 cores); 24 Mpx is a 6000 x 4000
# camera image, about a minute and a half, in bounded tiles.
LEARNED_MAX_PIXELS = 24_000_000


class Codec(abc.ABC):
    """encode(image) -> bytes, decode(bytes) -> image."""

    name: ClassVar[str]  # registry key, e.g. "jpeg", "gan-inversion", "vaegan-c8"
    family: ClassVar[str]  # "classical", "gan", "vaegan"
    codec_id: ClassVar[int]  # stable id written into the container header
    bitstream: ClassVar[str]  # payload format; codecs with the same one decode each other's files
    params: ClassVar[tuple[Param, ...]] = ()
    max_pixels: int = CLASSICAL_MAX_PIXELS  # per instance: encode and decode refuse larger images

    def __init__(self, **settings: Any):
        known = {p.name: p for p in self.params}
        unknown = set(settings) - set(known)
        if unknown:
            raise ValueError(f"codec {self.name!r} has no setting(s) {sorted(unknown)}; it takes {sorted(known)}")
        self.settings: dict[str, Any] = {
            p.name: _coerce(self.name, p, settings.get(p.name, p.default)) for p in self.params
        }

    def defining_settings(self) -> dict[str, Any]:
        """The settings that define this codec's output, as cache keys and result tables record them."""
        return {
            p.name: self.settings[p.name] for p in self.params
            if not (p.added_later and self.settings[p.name] == p.default)
        }

    @abc.abstractmethod
    def encode(self, image: Image.Image) -> bytes:
        """Compress an RGB image to the bytes of a complete container file."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> Image.Image:
        """Reconstruct the RGB image from the bytes :meth:`encode` wrote."""

    @property
    def fingerprint(self) -> bytes:
        """Hash of the model weights this codec depends on (empty for classical codecs)."""
        return b""

    def open_container(self, data: bytes) -> Container:
        """Unpack ``data`` and check that this codec can decode its payload, within its limits."""
        return unpack(data, check=self.check_header)

    def check_header(self, header: Header) -> None:
        """Refuse a file this codec cannot decode within its limits, before its payload is read: another
        codec's bitstream, an image over ``max_pixels``. Codecs extend it with what their payload must hold."""
        try:
            writer = REGISTRY.by_id(header.codec_id)
        except KeyError:
            raise UnknownCodec(f"file was written by codec id {header.codec_id}, unknown to this gencomp") from None
        if writer.bitstream != self.bitstream:
            raise CorruptPayload(f"file holds a {writer.name!r} bitstream, which codec {self.name!r} cannot decode")
        if header.pixels > self.max_pixels:
            raise LimitExceeded(
                f"{header.width}x{header.height} = {header.pixels} pixels is over codec {self.name!r}'s limit of "
                f"{self.max_pixels} (raise it with --max-pixels if you trust this file)"
            )

    def decode_container(self, container: Container) -> Image.Image:
        """Decode a container already read and checked with :meth:`check_header` (``read_container``).
        Codecs that implement it decode large files without holding the whole file in memory."""
        raise NotImplementedError

    def check_rgb(self, image: Image.Image) -> Image.Image:
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(image).__name__}")
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image (decode through gencomp.data.images.open_image), got mode {image.mode}")
        if image.width * image.height > self.max_pixels:
            raise ImageRejected(
                TOO_LARGE, f"{image.width}x{image.height} is over codec {self.name!r}'s limit of {self.max_pixels} pixels"
            )
        return image


# -- generative codecs: a model file ---------------------------------------------------------------------

DEFAULT_MODEL_PATHS = {"gan": "models/gan/model.pt", "vaegan": "models/vaegan/model.pt"}
MODEL_ENV_VARS = {"gan": "GENCOMP_GAN_MODEL", "vaegan": "GENCOMP_VAEGAN_MODEL"}

# The few model files in use (an evaluation grid reuses one for many images), newest last; bounded, so a long-lived
# process that sees many retrained files does not keep every one of them in memory.
MODEL_CACHE_SIZE = 4
_model_cache: OrderedDict[tuple[str, int, int, str], LoadedModel] = OrderedDict()
_model_cache_lock = threading.Lock()


# Default weights that ship inside the package (gencomp/assets/<kind>-default.pt, provenance in the .json beside
# it), so `gencomp compress --codec vaegan-c8` works right after install, with no training and no download. The
# zoo (gencomp/models/zoo.py) owns that folder and every name in it.
ASSETS = zoo.ASSETS


def shipped_model_path(kind: str) -> Path:
    return zoo.model_file(zoo.default_name(kind))


def default_model_path(kind: str) -> Path:
    """The model a generative codec uses when given none, first that applies:
    ``$GENCOMP_GAN_MODEL`` / ``$GENCOMP_VAEGAN_MODEL``; the training stage's output in the current directory
    (``models/<kind>/model.pt``); the default weights shipped with the package. If none exists, the stage
    path is returned, so the error names the file a user would train."""
    if os.environ.get(MODEL_ENV_VARS[kind]):
        return Path(os.environ[MODEL_ENV_VARS[kind]])
    stage_output = Path(DEFAULT_MODEL_PATHS[kind])
    if stage_output.is_file():
        return stage_output
    shipped = shipped_model_path(kind)
    return shipped if shipped.is_file() else stage_output


DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str) -> str:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available) -> the torch device string; refuses an unknown name
    and an absent cuda."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be cpu, cuda or auto, not {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but this torch build sees no CUDA GPU; use device=cpu or auto")
    return name


def load_model_cached(path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """Load a model file once per (path, size, mtime, device): an evaluation grid reuses one model for many images."""
    from gencomp.models.store import load_model

    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, device)
    except OSError:
        return load_model(path, map_location=device)  # raises ModelFileError with a clear message
    with _model_cache_lock:
        if key in _model_cache:
            _model_cache.move_to_end(key)
        else:
            _model_cache[key] = load_model(path, map_location=device)
            while len(_model_cache) > MODEL_CACHE_SIZE:
                _model_cache.popitem(last=False)
        return _model_cache[key]


# Every model codec takes this setting. CPU is the default because it is the reference: the same file decodes to
# identical pixels in any CPU process. On a GPU, convolutions use other kernels (TF32/cuDNN algorithms), so the
# encoder's latents and the decoded pixels can differ from the CPU's in the last bits; files stay valid either way.
DEVICE_PARAM = Param("device", "str", "cpu", "where the model runs: cpu (bit-exact reference), cuda, or auto",
                     DEVICES)


class ModelCodec(Codec):
    """A codec that needs a trained model; ``settings["model"]`` is a zoo name (``gencomp models``), a path or a
    LoadedModel, resolved by :func:`gencomp.models.zoo.resolve_model`."""

    model_kind: ClassVar[str]  # "gan" | "vaegan"
    max_pixels: int = LEARNED_MAX_PIXELS

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        self._loaded: LoadedModel | None = None
        self.device = resolve_device(self.settings.get("device", "cpu"))
        model = self.settings.get("model")
        if zoo.is_zoo_name(model):  # a zoo model not installed, or of the other kind, is refused with the settings
            zoo.resolve_model(model, kind=self.model_kind)
        # a path is checked when the model is loaded: a grid names models/<kind>/model.pt before training writes it

    @property
    def model_path(self) -> Path:
        """The model file this codec loads (its ``model`` setting resolved, or the default model)."""
        model = self.settings.get("model")
        if hasattr(model, "kind"):
            return Path(model.path)
        return zoo.resolve_model(model, kind=self.model_kind) if model else default_model_path(self.model_kind)

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            model = self.settings.get("model")
            loaded = model if hasattr(model, "kind") else load_model_cached(self.model_path, self.device)
            if loaded.kind != self.model_kind:
                raise ValueError(
                    f"codec {self.name!r} needs a {self.model_kind!r} model, but {loaded.path} is a {loaded.kind!r} model"
                )
            self._loaded = loaded
        return self._loaded

    @property
    def fingerprint(self) -> bytes:
        from gencomp.codecs.container import fingerprint_bytes

        return fingerprint_bytes(self.loaded.fingerprint)

    def check_header(self, header: Header) -> None:
        super().check_header(header)
        try:
            _ = self.loaded  # loading checks the model's kind
        except ValueError as exc:  # a model of the other kind: not the model this file was written with
            if "needs a" not in str(exc):
                raise
            raise FingerprintMismatch(f"file holds a {self.name!r} bitstream: {exc}") from None
        self.check_fingerprint(header)

    def check_fingerprint(self, container: Container | Header) -> None:
        if container.fingerprint != self.fingerprint:
            raise FingerprintMismatch(
                f"file was encoded with model {container.fingerprint.hex()}, but the model given is "
                f"{self.fingerprint.hex()} ({self.loaded.path}); decode it with the model that encoded it"
            )


# -- registry --------------------------------------------------------------------------------------------


@dataclass
class Registry:
    codecs: dict[str, type[Codec]] = field(default_factory=dict)

    def register(self, cls: type[Codec]) -> type[Codec]:
        if cls.name in self.codecs and self.codecs[cls.name] is not cls:
            raise ValueError(f"codec name {cls.name!r} registered twice")
        ids = {c.codec_id: c.name for c in self.codecs.values()}
        if cls.codec_id in ids and ids[cls.codec_id] != cls.name:
            raise ValueError(f"codec id {cls.codec_id} used by both {ids[cls.codec_id]!r} and {cls.name!r}")
        self.codecs[cls.name] = cls
        return cls

    def get(self, name: str) -> type[Codec]:
        try:
            return self.codecs[name]
        except KeyError:
            raise KeyError(f"unknown codec {name!r}; known: {', '.join(sorted(self.codecs))}") from None

    def by_id(self, codec_id: int) -> type[Codec]:
        for cls in self.codecs.values():
            if cls.codec_id == codec_id:
                return cls
        raise KeyError(codec_id)


REGISTRY = Registry()
register = REGISTRY.register


def get_codec(name: str, **settings: Any) -> Codec:
    """Instantiate a registered codec by name with its settings."""
    return REGISTRY.get(name)(**settings)
