"""U-Net segmenter: shapes for any size, learning a trivial mask, save/load round trip."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from latentatlas.descriptors.segmenter import load_segmenter, predict_probability, save_segmenter
from latentatlas.nn.unet import UNet
from latentatlas.train.segmentation import segmentation_loss, train_segmenter


@pytest.mark.parametrize("shape", [(17, 23), (32, 32), (5, 40)])
def test_unet_any_size(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = UNet(in_channels=2, out_channels=3, base=4, depth=3)
    out = model(torch.randn(2, 2, *shape))
    assert out.shape == (2, 3, *shape)


def test_unet_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match="input of shape"):
        UNet(in_channels=1, base=4)(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


def _bright_mask_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Mask = pixels brighter than 0.5 in a smoothed noise image: learnable by a few convs.
    from scipy import ndimage

    x = ndimage.gaussian_filter(rng.random((n, 1, 24, 24)), (0, 0, 2, 2))
    x = (x - x.mean()) / x.std()
    y = (x > 0.3).astype(np.float32)
    return x.astype(np.float32), y


def test_learns_trivial_mask() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = _bright_mask_data(32, rng)
    model = UNet(base=8, depth=2)
    before = predict_probability(model, x[:, 0])
    hist = train_segmenter(model, x, y, epochs=25, batch_size=8, lr=3e-3, seed=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    xt, yt = _bright_mask_data(8, np.random.default_rng(1))
    prob = predict_probability(model, xt[:, 0])
    assert prob.shape == (8, 1, 24, 24)
    acc = ((prob > 0.5) == (yt > 0.5)).mean()
    acc_before = ((before[:8] > 0.5) == (y[:8] > 0.5)).mean()
    assert acc > 0.95 > acc_before


def test_make_batch_is_seeded() -> None:
    def make(rng: np.random.Generator, b: int) -> tuple[np.ndarray, np.ndarray]:
        return _bright_mask_data(b, rng)

    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = UNet(base=4, depth=2)
        hist = train_segmenter(model, epochs=2, batch_size=4, make_batch=make, steps_per_epoch=3)
        runs.append((hist["loss"], model.head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_channel_weights_weigh_each_channels_loss() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 8, 8), torch.rand(2, 2, 8, 8)
    equal, _ = segmentation_loss(logits, target)
    assert float(segmentation_loss(logits, target, channel_weights=(3, 3))[0]) == pytest.approx(float(equal))
    first, _ = segmentation_loss(logits[:, :1], target[:, :1])
    second, _ = segmentation_loss(logits[:, 1:], target[:, 1:])
    assert float(segmentation_loss(logits, target, channel_weights=(1, 0))[0]) == pytest.approx(float(first))
    mixed = float(segmentation_loss(logits, target, channel_weights=(1, 0.25))[0])
    assert mixed == pytest.approx(0.8 * float(first) + 0.2 * float(second))
    with pytest.raises(ValueError, match="channel_weights"):
        segmentation_loss(logits, target, channel_weights=(1.0,))
    with pytest.raises(ValueError, match="channel_weights"):
        segmentation_loss(logits, target, channel_weights=(0.0, 0.0))


def test_train_bad_input() -> None:
    model = UNet(base=4, depth=2)
    x = np.zeros((4, 1, 16, 16), np.float32)
    with pytest.raises(ValueError, match="share n, h and w"):
        train_segmenter(model, x, np.zeros((3, 1, 16, 16)), epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_segmenter(model, x, np.full((4, 1, 16, 16), 2.0), epochs=1)
    with pytest.raises(ValueError, match="make_batch"):
        train_segmenter(model, epochs=1)


def test_tiled_prediction_matches_whole_image() -> None:
    torch.manual_seed(0)
    model = UNet(base=4, depth=3)
    img = np.random.default_rng(0).random((300, 260)).astype(np.float32)
    whole = predict_probability(model, img, tile=4096)
    tiled = predict_probability(model, img, tile=128)
    assert whole.shape == (1, 300, 260)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_save_load_identical_in_new_process(tmp_path) -> None:
    torch.manual_seed(0)
    model = UNet(base=4, depth=2, out_channels=2)
    img = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    path = save_segmenter(model, tmp_path / "seg", metadata={"normalization": "percentile"})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    loaded = load_segmenter(path)
    assert loaded.metadata == {"normalization": "percentile"}
    expected = predict_probability(model, img)
    np.testing.assert_array_equal(predict_probability(loaded, img), expected)
    np.save(tmp_path / "img.npy", img)
    code = (
        "import numpy as np, sys;"
        "from latentatlas.descriptors.segmenter import load_segmenter, predict_probability;"
        f"m = load_segmenter(r'{path}');"
        f"x = np.load(r'{tmp_path / 'img.npy'}');"
        f"np.save(r'{tmp_path / 'out.npy'}', predict_probability(m, x))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**_env()})
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def _env() -> dict[str, str]:
    import os

    import latentatlas

    src = os.path.dirname(os.path.dirname(latentatlas.__file__))
    return {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_segmenter(tmp_path / "nothing")
