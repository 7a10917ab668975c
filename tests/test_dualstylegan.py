"""DualStyleGAN: the official layout, degree 0 = plain StyleGAN2, the art path, exstyle codes."""

import numpy as np
import pytest
import torch
from conftest import check_checkpoint as check
from conftest import read_manifest, write_official

from stylization.errors import DataError
from stylization.loading import load_exstyle_codes
from stylization.style_a.dualstylegan import DualStyleGAN


def test_full_size_layout_matches_the_manifest():
    manifest = read_manifest("dualstylegan_generator_1024.tsv")
    with torch.device("meta"):
        model = DualStyleGAN(1024, 512, 8, channel_multiplier=2, res_index=6)
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == manifest
    assert sum(p.numel() for p in model.parameters()) == 74_176_268


def small_model():
    torch.manual_seed(0)
    model = DualStyleGAN(64, style_dim=64, n_mlp=8, channel_cap=16)
    with torch.no_grad():  # make the art path's effect large enough to see
        for block in model.res[:7]:
            block.conv[0].weight.mul_(100)
            block.conv2[0].weight.mul_(100)
    return model


def test_degree_zero_is_the_plain_stylegan2():
    model = small_model()
    z, ex = torch.randn(2, 64), torch.randn(2, model.n_latent, 64)
    plain = model.generator(z)[0]
    assert torch.allclose(model(z, ex, interp_weights=[0.0] * model.n_latent)[0], plain, atol=1e-6)
    assert torch.allclose(model(z, ex, use_res=False)[0], plain, atol=1e-6)
    assert torch.allclose(model(z, ex, fuse_index=-1)[0], plain, atol=1e-6)
    styled = model(z, ex, interp_weights=[0.75] * 7 + [1.0] * (model.n_latent - 7))[0]
    assert styled.shape == plain.shape and (styled - plain).abs().mean() > 1e-3


def test_truncation_passes_through_only_below_one():
    """DualStyleGAN's forward, like rosinality's, truncates ``if truncation < 1`` (its scripts pass
    truncation_latent=0): ψ = 1.5 renders as ψ = 1, ψ = 0.5 as the halved intrinsic code."""
    model = small_model()
    z, ex = torch.randn(2, 64), torch.randn(2, model.n_latent, 64)
    plain = model(z, ex)[0]
    assert torch.equal(model(z, ex, truncation=1.5, truncation_latent=0)[0], plain)
    w = model.generator.style(z)
    half = model(0.5 * w, ex, input_is_latent=True)[0]
    assert torch.allclose(model(z, ex, truncation=0.5, truncation_latent=0)[0], half, atol=1e-5)


def test_structure_and_colour_paths_act_on_their_layers():
    model = small_model()
    z, ex = torch.randn(1, model.n_latent, 64), torch.randn(1, model.n_latent, 64)  # z+ codes
    base = model(z, ex)[0]
    ex_structure = ex.clone()
    ex_structure[:, :7] += 1.0  # only the ModRes layers' codes
    ex_colour = ex.clone()
    ex_colour[:, 7:] += 1.0  # only the colour-transform layers' codes
    assert not torch.allclose(model(z, ex_structure)[0], base)
    assert not torch.allclose(model(z, ex_colour)[0], base)
    only_structure = [1.0] * 7 + [0.0] * (model.n_latent - 7)
    assert torch.allclose(model(z, ex_colour, interp_weights=only_structure)[0],
                          model(z, ex, interp_weights=only_structure)[0], atol=1e-6)
    model(z, ex)[0].mean().backward()


def test_exstyle_codes_load_safely(tmp_path):
    codes = {"cartoon_001.png": np.random.rand(1, 18, 512).astype(np.float32),
             "cartoon_017.png": np.random.rand(1, 18, 512).astype(np.float32)}
    np.save(tmp_path / "exstyle_code.npy", codes, allow_pickle=True)
    loaded = load_exstyle_codes(tmp_path / "exstyle_code.npy")
    assert list(loaded) == list(codes) and np.array_equal(loaded["cartoon_017.png"], codes["cartoon_017.png"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    np.save(tmp_path / "evil.npy", np.array({"x": Evil()}, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_exstyle_codes(tmp_path / "evil.npy")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(DataError, match="pickled dict"):
        load_exstyle_codes(tmp_path / "plain.npy")
    with pytest.raises(DataError, match="not found"):
        load_exstyle_codes(tmp_path / "none.npy")


def test_check_checkpoint_dualstylegan(tmp_path):
    manifest = read_manifest("dualstylegan_generator_1024.tsv")
    write_official(tmp_path / "generator.pt", manifest, "g_ema")
    out = check("dualstylegan_generator", tmp_path / "generator.pt")
    assert out.returncode == 0 and "74,176,268 parameters" in out.stdout, out.stderr
