"""FID: the Inception weights load strictly from a local file (never downloaded), a set against
itself scores ~0, a shifted set scores more, and the distance equals the closed form."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from conftest import read_manifest
from stylization.errors import CheckpointError
from stylization.loading import inception_fid
from stylization.metrics.fid import fid, frechet_distance, inception_features

MANIFEST = "inception_fid.tsv"


def random_inception_state(seed: int = 0) -> dict:
    """Random tensors in the layout of the Inception weights file, scaled so activations stay finite
    through 94 BatchNorm'd convolutions (He-normal convolutions, unit running variance)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in read_manifest(MANIFEST):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var") or name.endswith("bn.weight"):
            state[name] = torch.ones(shape)
        elif name.endswith(("running_mean", "bn.bias", "fc.bias")):
            state[name] = torch.zeros(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[name] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    return state


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_inception_state(), path)  # pytorch-fid's file is a plain state dict
    return inception_fid(path)


def frames(seed: int, n: int = 6, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_fid_against_itself_is_zero_and_a_shifted_set_is_not(inception):
    a = frames(0)
    assert abs(fid(inception, a, a)) < 1e-3
    brighter = np.clip(a.astype(np.int16) + 60, 0, 255).astype(np.uint8)
    assert fid(inception, a, brighter) > 1e-2
    assert fid(inception, a, frames(1)) > 0


def test_features_have_the_pool_shape_and_do_not_depend_on_batching(inception):
    a = frames(2, n=5)
    one = inception_features(inception, a, batch=5)
    split = inception_features(inception, a, batch=2)
    assert one.shape == (5, 2048)
    np.testing.assert_allclose(one, split, rtol=1e-4, atol=1e-5)


def test_frechet_distance_equals_the_closed_form():
    """Against scipy's matrix square root: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b))."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(0.5, 2.0, size=(50, 6))
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)


def test_weights_come_from_a_file_or_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="inception=PATH"):
        inception_fid(None)
    with pytest.raises(CheckpointError, match="not found"):
        inception_fid(tmp_path / "absent.pth")
    state = random_inception_state()
    state.pop("fc.bias")
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="fc.bias") as err:
        inception_fid(tmp_path / "short.pth")
    assert "\n" not in str(err.value)
    torch.save({"x": object()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        inception_fid(tmp_path / "pickled.pth")
