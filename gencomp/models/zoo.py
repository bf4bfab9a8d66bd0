"""The model zoo: the table of models that ship in ``gencomp/assets``, and the one resolver of model names.

Each row names a model, its kind (``gan`` for approach 1, ``vaegan`` for approach 2), the domain of its training
data and the terms of use that data imposes. Per-model facts -- size, fingerprint, training-data hash, in-domain
validation numbers, and ``domain`` / ``terms`` where it states them -- come from the model's sidecar
``<name>.json`` beside ``<name>.pt`` (terms under ``terms``, ``terms_of_use`` or ``license``); the row's domain
and terms are used only where the sidecar lacks them.
Adding a model is dropping ``<name>.pt`` and ``<name>.json`` into ``gencomp/assets`` and adding one row to
:data:`ZOO`. A row whose file has not landed is listed as not installed; naming it is a clear error, nothing else
breaks.

:func:`resolve_model` is the one place a model name becomes a file: the codecs' ``model`` setting (and so the
evaluation grid and ``--model``), and training's ``init_from``. A zoo name comes first, then a path; anything else
is refused with the zoo's names. :func:`model_domain` says which domain a loaded model was trained on, for the
cross-domain report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gencomp.models.store import ModelFileError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
KINDS = ("gan", "vaegan")
UNKNOWN_DOMAIN = "unknown"

# The data the defaults were trained on (../shared/data/README.md): the embedded demo site plus four photo sets.
PHOTO_TERMS = (
    "mixed licences of the photo corpus: BSDS500 (research use), Sun-Hays 80, Unsplash (Unsplash License), Debian "
    "wallpapers (GPL-2+, CC-BY, CC-BY-SA), scikit-image/scikit-learn/matplotlib sample photos; check them before "
    "any use beyond research"
)
FACES_TERMS = (
    "research use only: trained on CelebA (aligned crops, CelebA-128 protocol), whose release agreement allows "
    "non-commercial research only and no redistribution of the images"
)
AERIAL_TERMS = (
    "research use only: trained on AID aerial scenes (tiles at 128 px), released for academic use; "
    "imagery from Google Earth"
)


@dataclass(frozen=True)
class ZooEntry:
    """One row of the zoo table: what the sidecar does not have to say."""

    name: str  # the file stem in gencomp/assets, and the name users type
    kind: str  # "gan" | "vaegan"
    domain: str  # training domain, used when the sidecar has no "domain"
    terms: str  # terms of use of the training data, used when the sidecar has no "terms"
    about: str  # one line: what the model is


ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("gan-default", "gan", "photos", PHOTO_TERMS, "GAN + inversion encoder, general photos (approach 1)"),
    ZooEntry("vaegan-default", "vaegan", "photos", PHOTO_TERMS,
             "switchable-channel VAE-GAN, mean-scale hyperprior with a checkerboard context, general photos (approach 2)"),
    ZooEntry("gan-faces", "gan", "faces", FACES_TERMS, "GAN + inversion encoder, CelebA faces at 128 px"),
    ZooEntry("vaegan-faces", "vaegan", "faces", FACES_TERMS, "switchable-channel VAE-GAN, CelebA faces at 128 px"),
    ZooEntry("gan-aerial", "gan", "aerial", AERIAL_TERMS, "GAN + inversion encoder, AID aerial tiles at 128 px"),
    ZooEntry("vaegan-aerial", "vaegan", "aerial", AERIAL_TERMS,
             "switchable-channel VAE-GAN, AID aerial tiles at 128 px"),
)  # fmt: skip


class ModelNotFound(ModelFileError):
    """A model named by something that is neither an installed zoo model nor a model file."""


@dataclass(frozen=True)
class ZooModel:
    """A zoo row together with what its files say (the sidecar is the source of per-model facts)."""

    entry: ZooEntry
    file: Path
    installed: bool
    sidecar: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # a sidecar that is missing, unreadable or disagrees with the row or the file

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def domain(self) -> str:
        value = self.sidecar.get("domain")
        return value if isinstance(value, str) and value else self.entry.domain

    @property
    def terms(self) -> str:
        for key in ("terms", "terms_of_use", "license"):
            value = self.sidecar.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and value:
                return "; ".join(f"{k}: {v}" for k, v in sorted(value.items()))
        return self.entry.terms

    @property
    def research_only(self) -> bool:
        return "research use only" in self.terms.lower()

    @property
    def data_sha256(self) -> str | None:
        data = self.sidecar.get("data")
        value = data.get("shards_manifest_sha256") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    @property
    def size_bytes(self) -> int | None:
        if self.installed:
            return self.file.stat().st_size
        value = self.sidecar.get("bytes")
        return value if isinstance(value, int) else None

    @property
    def fingerprint(self) -> str | None:
        value = self.sidecar.get("fingerprint")
        return value if isinstance(value, str) else None

    @property
    def validation(self) -> dict[str, Any]:
        value = self.sidecar.get("validation")
        return dict(value) if isinstance(value, dict) else {}

    @property
    def headline(self) -> dict[str, float]:
        """The in-domain numbers worth one glance, from the sidecar's validation (measured on the model's own
        validation split): PSNR and SSIM of the GAN's inversion; PSNR, SSIM and bpp of the VAE-GAN at its
        largest channel count."""
        return headline_numbers(self.kind, self.validation)

    def as_dict(self) -> dict[str, Any]:
        data = self.sidecar.get("data") if isinstance(self.sidecar.get("data"), dict) else {}
        return {
            "name": self.name, "kind": self.kind, "domain": self.domain, "terms": self.terms,
            "research_only": self.research_only, "about": self.entry.about, "installed": self.installed,
            "file": str(self.file), "bytes": self.size_bytes, "fingerprint": self.fingerprint,
            "data_sha256": self.data_sha256, "corpus": data.get("corpus"), "split_counts": data.get("split_counts"),
            "headline": self.headline, "validation": self.validation, "problems": list(self.problems),
        }  # fmt: skip


def headline_numbers(kind: str, validation: dict[str, Any]) -> dict[str, float]:
    def number(key: str) -> float | None:
        value = validation.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    if kind == "gan":
        picked = {"psnr": number("inversion_psnr"), "ssim": number("inversion_ssim")}
        return {k: v for k, v in picked.items() if v is not None}
    channels = sorted(int(k[len("psnr_c"):]) for k in validation if k.startswith("psnr_c") and k[6:].isdigit())
    if not channels:
        return {}
    c = channels[-1]
    picked = {"channels": float(c), "psnr": number(f"psnr_c{c}"), "ssim": number(f"ssim_c{c}"),
              "bpp": number(f"bpp_c{c}")}  # fmt: skip
    return {k: v for k, v in picked.items() if v is not None}


def names() -> list[str]:
    """Every zoo name, installed or not, in table order."""
    return [entry.name for entry in ZOO]


def entry(name: str) -> ZooEntry:
    for row in ZOO:
        if row.name == name:
            return row
    raise KeyError(f"{name!r} is not a model of the zoo ({', '.join(names())})")


def model_file(name: str) -> Path:
    """Where the zoo model ``name``'s weights are (or will be, once it lands)."""
    return ASSETS / f"{entry(name).name}.pt"


def _read_sidecar(row: ZooEntry, weights: Path) -> tuple[dict[str, Any], list[str]]:
    path = weights.with_suffix(".json")
    if not path.is_file():
        return {}, ([f"no sidecar {path.name}"] if weights.is_file() else [])
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {}, [f"unreadable sidecar {path.name} ({exc})"]
    if not isinstance(sidecar, dict):
        return {}, [f"sidecar {path.name} is not a JSON object"]
    problems = []
    if sidecar.get("kind") not in (None, row.kind):
        problems.append(f"sidecar says kind {sidecar.get('kind')!r}, the zoo table {row.kind!r}")
    if weights.is_file() and isinstance(sidecar.get("bytes"), int) and sidecar["bytes"] != weights.stat().st_size:
        problems.append(f"sidecar says {sidecar['bytes']} bytes, {weights.name} has {weights.stat().st_size}")
    return sidecar, problems


def describe(name: str) -> ZooModel:
    """The zoo model ``name``: its row, whether its file is installed, and its sidecar."""
    row = entry(name)
    weights = model_file(name)
    sidecar, problems = _read_sidecar(row, weights)
    return ZooModel(row, weights, weights.is_file(), sidecar, tuple(problems))


def models(*, installed_only: bool = False) -> list[ZooModel]:
    """Every zoo model in table order (only those whose file is there, with ``installed_only``)."""
    described = [describe(row.name) for row in ZOO]
    return [m for m in described if m.installed or not installed_only]


def installed_names(kind: str | None = None) -> list[str]:
    return [m.name for m in models(installed_only=True) if kind is None or m.kind == kind]


def default_name(kind: str) -> str:
    """The zoo model a generative codec of ``kind`` falls back to (the shipped default)."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    return f"{kind}-default"


def _zoo_listing() -> str:
    installed = installed_names()
    missing = [n for n in names() if n not in installed]
    text = f"installed: {', '.join(installed) or 'none'}"
    if missing:
        text += f"; not installed yet: {', '.join(missing)}"
    return text + "; `gencomp models` lists them"


def is_zoo_name(value: Any) -> bool:
    return isinstance(value, str) and value in names()


def resolve_model(value: str | os.PathLike, *, kind: str | None = None, what: str = "model") -> Path:
    """The file a model setting names: a zoo model's weights (checked installed, and of ``kind`` when given),
    else an existing file at that path. Raises :class:`ModelNotFound` (a ValueError) listing the zoo otherwise;
    ``what`` names the setting in the message (``model``, ``init_from``)."""
    if is_zoo_name(value):
        row = entry(str(value))
        if kind is not None and row.kind != kind:
            raise ModelNotFound(f"{what} {value!r} is a {row.kind!r} model of the zoo; this needs a {kind!r} model "
                                f"(installed: {', '.join(installed_names(kind)) or 'none'})")
        path = model_file(row.name)
        if not path.is_file():
            raise ModelNotFound(f"{what} {value!r} is in the zoo but not installed: {path} is missing (its weights "
                                f"have not landed yet); {_zoo_listing()}")
        return path
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        reason = "is a folder, not a model file"
    elif path.suffix or len(path.parts) > 1:  # meant as a path
        reason = "names no file: model file not found"
    else:
        reason = "is neither a model file nor a model of the zoo"
    raise ModelNotFound(f"{what} {str(value)!r} {reason} (train one, or name a zoo model: {_zoo_listing()})")


def zoo_model_for(path: str | os.PathLike | None, fingerprint: str | None) -> ZooModel | None:
    """The installed zoo model whose weights these are: the same file, or a copy (the sidecar's fingerprint)."""
    resolved = Path(path).resolve() if path is not None else None
    for model in models(installed_only=True):
        if resolved is not None and model.file.resolve() == resolved:
            return model
        if fingerprint and model.fingerprint == fingerprint:
            return model
    return None


def model_domain(path: str | os.PathLike | None, fingerprint: str | None,
                 metadata: dict[str, Any] | None = None) -> str:
    """The training domain of a model file, first that applies: an installed zoo model's (same file or same
    fingerprint); a ``domain`` in the sidecar beside the file (``<stem>.json``) whose fingerprint matches or is
    absent; a ``domain`` in the file's own metadata; else ``"unknown"``."""
    zoo_model = zoo_model_for(path, fingerprint)
    if zoo_model is not None:
        return zoo_model.domain
    if path is not None:
        sidecar_path = Path(path).with_suffix(".json")
        try:
            sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
        except (OSError, ValueError):
            sidecar = {}
        if isinstance(sidecar, dict) and isinstance(sidecar.get("domain"), str) and sidecar["domain"] and (
                sidecar.get("fingerprint") in (None, fingerprint)):
            return sidecar["domain"]
    value = (metadata or {}).get("domain")
    return value if isinstance(value, str) and value else UNKNOWN_DOMAIN


def model_name(setting: Any, path: str | os.PathLike | None, fingerprint: str | None) -> str:
    """How results name the model a codec used: the zoo name when the weights are a zoo model's, else the
    path as given (or as found, for the default)."""
    zoo_model = zoo_model_for(path, fingerprint)
    if zoo_model is not None:
        return zoo_model.name
    given = setting if isinstance(setting, (str, os.PathLike)) else None  # not a LoadedModel's repr
    return str(given) if given else str(path or "")
