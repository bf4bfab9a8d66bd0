"""The one interface every codec implements, classical or generative, and the registry by name.

A codec turns an RGB image into the bytes of a complete ``.gcz`` file (container header included, see
``container.py``) and back. Evaluation and the command line only ever use this interface, so a bpp or a
compression ratio is always the length of a file that decodes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image


@dataclass(frozen=True)
class Param:
    """One setting of a codec, as listed by ``gencomp codecs``."""

    name: str
    type: str  # "int", "float", "str", "path"
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None


class Codec(abc.ABC):
    """encode(image) -> bytes, decode(bytes) -> image."""

    name: ClassVar[str]  # registry key, e.g. "jpeg", "gan-inversion", "vaegan-c8"
    family: ClassVar[str]  # "classical", "gan", "vaegan"
    codec_id: ClassVar[int]  # stable id written into the container header
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **settings: Any):
        known = {p.name: p for p in self.params}
        unknown = set(settings) - set(known)
        if unknown:
            raise ValueError(f"codec {self.name!r} has no setting(s) {sorted(unknown)}; it takes {sorted(known)}")
        self.settings: dict[str, Any] = {p.name: settings.get(p.name, p.default) for p in self.params}

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

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "settings": dict(self.settings)}


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
