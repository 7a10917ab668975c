"""VToonify-D: the official layout, a small model's forward (sizes, masks, degree), loading."""

import torch
from conftest import check_checkpoint as check
from conftest import read_manifest, write_official

from stylization.style_a.vtoonify import VToonifyD


def test_full_size_layout_matches_the_manifest():
    manifest = read_manifest("vtoonify_d.tsv")
    with torch.device("meta"):
        model = VToonifyD(256, 1024)
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == manifest
    assert sum(p.numel() for p in model.parameters()) == 163_812_547


def test_small_model_forward_masks_and_degree():
    torch.manual_seed(0)
    model = VToonifyD(in_size=64, out_size=256, style_dim=64, channel_cap=16).eval()
    x = torch.randn(2, 22, 64, 64)
    style = torch.randn(2, model.generator.n_latent, 64)
    with torch.no_grad():
        image, masks = model(x, style, degree=0.5, return_masks=True)
        other = model(x, style, degree=1.0)
    assert image.shape == (2, 3, 256, 256) and torch.isfinite(image).all()
    assert [m.shape[-1] for m in masks] == [32, 64] and all(((m >= 0) & (m <= 1)).all() for m in masks)
    assert not torch.allclose(image, other)  # the degree changes the result
    model.train()
    model(x, style).mean().backward()
    assert model.encoder[0][0].weight.grad is not None


def test_checkpoint_tool(tmp_path):
    manifest = read_manifest("vtoonify_d.tsv")
    write_official(tmp_path / "vtoonify_s_d.pt", manifest, "g_ema")
    res = check("vtoonify_d", tmp_path / "vtoonify_s_d.pt")
    assert res.returncode == 0 and "163,812,547 parameters" in res.stdout, res.stderr
