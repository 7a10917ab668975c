"""pSp encoder: the official layout, shapes of the codes, latent_avg, and the checkpoint tool."""

import torch
from conftest import check_checkpoint as check
from conftest import read_manifest, write_official

from stylization.loading import load_official
from stylization.style_a.psp import PSP, GradualStyleEncoder


def test_full_size_layout_matches_the_manifest():
    manifest = read_manifest("psp_encoder.tsv")
    with torch.device("meta"):
        model = PSP(1024)
    # the file's state_dict, plus latent_avg (kept beside it in the file, a buffer here)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours[0] == ("latent_avg", [18, 512])
    assert ours[1:] == manifest
    assert sum(p.numel() for p in model.parameters()) == 297_506_764


def test_encoder_codes_on_a_256_face():
    torch.manual_seed(0)
    enc = GradualStyleEncoder().eval()
    with torch.no_grad():
        codes = enc(torch.rand(2, 3, 256, 256) * 2 - 1)
    assert codes.shape == (2, 18, 512) and torch.isfinite(codes).all()
    assert not torch.allclose(codes[0], codes[1])


def test_checkpoint_tool_and_latent_avg(tmp_path):
    manifest = read_manifest("psp_encoder.tsv")
    avg = torch.randn(18, 512)
    write_official(tmp_path / "encoder.pt", manifest, "state_dict", latent_avg=avg,
                   opts={"output_size": 1024, "input_nc": 3})
    out = check("psp_encoder", tmp_path / "encoder.pt")
    assert out.returncode == 0 and "297,506,764 parameters" in out.stdout, out.stderr
    model = load_official("psp_encoder", tmp_path / "encoder.pt")
    assert torch.equal(model.latent_avg, avg)
    write_official(tmp_path / "no_avg.pt", manifest, "state_dict")
    res = check("psp_encoder", tmp_path / "no_avg.pt")
    assert res.returncode == 1 and "latent_avg" in res.stderr
