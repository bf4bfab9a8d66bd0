"""index.html opened in headless Chromium: every image must load (naturalWidth > 0).

A copy of the page gets a small script that, on the load event, writes each <img>'s naturalWidth into the DOM;
Chromium's --dump-dom prints the DOM after load. A deliberately broken image in a second copy checks that the
check itself can fail. Skipped only when Chromium is not installed (.ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gencomp.evaluate import RESULT_COLUMNS
from gencomp.report import build_report, sample_folder, slugify
from tests.test_report import HEIGHT, WIDTH, _rows_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

PROBE = """
<script>
window.addEventListener("load", function () {
  var images = document.getElementsByTagName("img");
  var widths = [];
  for (var i = 0; i < images.length; i++) { widths.push(images[i].naturalWidth); }
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = "[" + widths.join(",") + "]";
  document.body.appendChild(out);
});
</script>
"""
BROKEN_IMAGE = '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA" alt="broken on purpose">'


def _natural_widths(page: Path, profile: Path) -> list[int]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    match = re.search(r'<pre id="probe">\[([0-9,]*)\]</pre>', done.stdout)
    assert match, f"no probe output from chromium (rc {done.returncode}): {done.stderr[-2000:]}"
    return [int(w) for w in match.group(1).split(",") if w]


def _with_probe(html: str, extra: str = "") -> str:
    assert html.count("</body>") == 1
    return html.replace("</body>", extra + PROBE + "</body>")


def test_every_image_in_index_html_loads(tmp_path):
    rows = _rows_for("kodak", "img-a", -1) + _rows_for("kodak", "img-b", 1)
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    samples = tmp_path / "samples"
    folder = sample_folder(samples, "kodak", "img-a")
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("original", slugify("GAN 0"), slugify("JPEG (1%)")):
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    written = build_report(results, tmp_path / "report", samples_dir=samples, dataset="kodak")
    html = written["index.html"].read_text()
    n_images = html.count("<img ")
    assert n_images == 4  # three RD curves (PSNR, MS-SSIM, HaarPSI) and the samples figure

    # the page alone, away from every other file: nothing it shows may come from outside it
    alone = tmp_path / "alone"
    alone.mkdir()
    page = alone / "index.html"
    page.write_text(_with_probe(html))
    widths = _natural_widths(page, tmp_path / "profile")
    assert len(widths) == n_images
    assert all(w > 0 for w in widths), widths

    broken = alone / "broken.html"
    broken.write_text(_with_probe(html, BROKEN_IMAGE))
    widths = _natural_widths(broken, tmp_path / "profile2")
    assert len(widths) == n_images + 1 and widths[-1] == 0
