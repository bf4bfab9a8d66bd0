"""Training the VAE-GAN's decoder alone on the latents its files carry (``trainable=decoder``): the training latent
is the one the codec's decoder reads, and the run leaves the files (encoder, entropy model) as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gencomp.codecs import decode_file, get_codec
from gencomp.codecs.container import unpack
from gencomp.models import load_model
from gencomp.models.hyperprior import pad_channels

torch.set_num_threads(1)


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 3 + 20 * np.sin(y / 3), y * 5 + 10 * np.cos(x / 4), (x + y) * 2], axis=-1)
    rgb = rgb + rng.normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module", params=["none", "checkerboard"])
def model_path(request, tmp_path_factory):
    from tests.test_hyperprior import _hyper_model

    return _hyper_model(tmp_path_factory.mktemp("dec") / f"{request.param}.pt", seed=3, context=request.param)


@pytest.mark.parametrize("channels", [4, 2])
@pytest.mark.parametrize("quant_scale", [1.0, 2.0])
def test_the_training_latent_is_the_one_the_file_carries(model_path, channels, quant_scale):
    loaded = load_model(model_path)
    codec = get_codec("vaegan", model=model_path, channels=channels, refine_steps=0, quant_scale=quant_scale)
    image = _photo(96, 64)
    data = codec.encode(image)
    from_file, _, _ = codec.latent_from_container(codec.open_container(data))
    x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        mu = loaded.model.encode(x)
    mu = pad_channels(mu[:, :channels], loaded.hyperprior.latent_channels) / loaded.quant_step
    trained_on = loaded.hyperprior.decoded_latent(mu, channels, quant_scale)[0] * loaded.quant_step
    assert trained_on.shape[0] == loaded.hyperprior.latent_channels
    assert torch.all(trained_on[channels:] == 0)  # the channels not coded count as zero, as in the decoder
    trained_on = trained_on[:channels].numpy()
    assert np.ptp(from_file) > 3 * quant_scale  # many symbols, not a latent of zeros
    # float32 here, float64 in the codec: the means agree to ~1e-5; a residual that close to a rounding boundary
    # may round the other way, which moves that element by one step
    close = np.abs(trained_on - from_file) < 1e-3
    assert close.mean() > 0.999
    assert np.allclose(np.abs(trained_on - from_file)[~close], quant_scale, atol=1e-3)


def test_training_the_decoder_alone_keeps_the_files(tmp_path):
    from gencomp.train.loop import train
    from tests.test_hyperprior import _tiny_hp
    from tests.test_train import AstronautCrops

    hp = _tiny_hp(hyper_context="checkerboard")
    train("vaegan", data_dir=None, out_dir=tmp_path / "hp", overrides=dict(hp, steps=2), dataset=AstronautCrops(32),
          progress=False)
    source = tmp_path / "hp" / "model.pt"
    out = tmp_path / "dec"
    summary = train("vaegan", data_dir=None, out_dir=out, dataset=AstronautCrops(32), progress=False,
                    val_dataset=AstronautCrops(32, count=8, seed=1),
                    overrides=dict(hp, init_from=str(source), trainable="decoder", steps=4, lr=1e-3,
                                   warmup_steps=0))
    assert summary["trainable"] == "decoder"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["recon"] > 0 and "bpp" not in r for r in rows)  # the distortion alone
    before, after = load_model(source), load_model(out / "model.pt")
    changed = {k for k, v in before.model.state_dict().items() if not torch.equal(v, after.model.state_dict()[k])}
    assert changed and all(k.startswith("decoder.") for k in changed)
    assert all(torch.equal(v, after.hyperprior.state_dict()[k]) for k, v in before.hyperprior.state_dict().items())
    image = _photo(64, 48)
    old = get_codec("vaegan", model=source, channels=8, refine_steps=0).encode(image)
    new = get_codec("vaegan", model=out / "model.pt", channels=8, refine_steps=0).encode(image)
    assert unpack(old).payload == unpack(new).payload and unpack(old).params == unpack(new).params
    assert decode_file(new, model=out / "model.pt").size == (64, 48)


def test_decoder_training_needs_a_rate_aware_model(tmp_path):
    from gencomp.train.loop import train
    from gencomp.train.presets import PresetError
    from tests.test_train import TINY_VAEGAN, AstronautCrops

    with pytest.raises(PresetError, match="rate_lambda > 0"):
        train("vaegan", data_dir=None, out_dir=tmp_path, dataset=AstronautCrops(32), progress=False,
              overrides=dict(TINY_VAEGAN, trainable="decoder"))
