"""Golden .gcz files (tests/fixtures/golden, written by scripts/make_golden_files.py): every learned bitstream
still decodes to the very pixels it decoded to when it was written, and files of another format version are
refused by name. A change that breaks this changes the format: bump container.VERSION and keep old files'
refusal (or decoding) tested. Version 2 marks the GAN files with colour parameters, version 3 the VAE-GAN files
coded with a checkerboard context; all others are version 1."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from gencomp.codecs import decode_file, inspect
from gencomp.codecs import container
from gencomp.codecs.container import SUPPORTED_VERSIONS, VERSION, FingerprintMismatch, UnsupportedVersion

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
RECORD = json.loads((GOLDEN / "golden.json").read_text())
VERSION_OFFSET = 4  # after the 4-byte magic (container.py's layout)


def test_the_golden_files_are_of_the_versions_this_gencomp_reads():
    assert {v["codec"] for v in RECORD["files"].values()} == {"vaegan", "gan-inversion"}
    versions = {name: (GOLDEN / name).read_bytes()[VERSION_OFFSET] for name in RECORD["files"]}
    assert versions == {name: v.get("version", 1) for name, v in RECORD["files"].items()}
    assert set(versions.values()) == set(SUPPORTED_VERSIONS) == {1, 2, VERSION}
    # version 2 is exactly the files that carry colour parameters: the ones a version-1 reader would misread
    assert {n for n, v in versions.items() if v == 2} == {n for n in versions if "colour" in n}
    # version 3 exactly the checkerboard files, which a reader without the context must refuse
    assert {n for n, v in versions.items() if v == 3} == {n for n in versions if n.startswith("vaegan-cb-")}


def test_a_version_1_reader_refuses_a_colour_file_by_name(monkeypatch):
    monkeypatch.setattr(container, "SUPPORTED_VERSIONS", (1,))
    with pytest.raises(UnsupportedVersion, match="version 2 is not supported"):
        decode_file((GOLDEN / "gan-inversion-colour-8bit.gcz").read_bytes(), model=GOLDEN / "gan-tiny.pt")
    decode_file((GOLDEN / "gan-inversion-overlap-8bit.gcz").read_bytes(), model=GOLDEN / "gan-tiny.pt")


def test_a_version_2_reader_refuses_a_checkerboard_file_by_name(monkeypatch):
    monkeypatch.setattr(container, "SUPPORTED_VERSIONS", (1, 2))
    with pytest.raises(UnsupportedVersion, match="version 3 is not supported"):
        decode_file((GOLDEN / "vaegan-cb-c4-entropy.gcz").read_bytes(), model=GOLDEN / "vaegan-cb-tiny.pt")
    decode_file((GOLDEN / "vaegan-hp-c4-entropy.gcz").read_bytes(), model=GOLDEN / "vaegan-hp-tiny.pt")


@pytest.mark.parametrize("name", sorted(RECORD["files"]))
def test_golden_file_decodes_to_its_pixels(name):
    expected = RECORD["files"][name]
    data = (GOLDEN / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected["file_sha256"]  # the fixture itself is intact
    assert inspect(data)["codec"].startswith(expected["codec"])
    image = decode_file(data, model=GOLDEN / expected["model"])
    assert list(image.size) == expected["size"]
    assert hashlib.sha256(np.asarray(image, dtype=np.uint8).tobytes()).hexdigest() == expected["pixels_sha256"]


@pytest.mark.parametrize("name", sorted(RECORD["files"]))
def test_a_file_of_another_version_is_refused_by_name(name):
    data = bytearray((GOLDEN / name).read_bytes())
    assert data[VERSION_OFFSET] in SUPPORTED_VERSIONS
    data[VERSION_OFFSET] = VERSION + 1
    model = GOLDEN / RECORD["files"][name]["model"]
    with pytest.raises(UnsupportedVersion, match=f"version {VERSION + 1}"):
        decode_file(bytes(data), model=model)


def test_a_golden_file_with_the_wrong_model_is_refused():
    with pytest.raises(FingerprintMismatch):
        decode_file((GOLDEN / "vaegan-c4-entropy.gcz").read_bytes(), model=GOLDEN / "gan-tiny.pt")
