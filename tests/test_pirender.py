"""PIRenderer in the released layout (StyleTalk's renderer_checkpoint.pt, PIRender's face checkpoint):
strict loading, the official residual block's behaviour, the warp-only stage."""

import subprocess
import sys

import torch
from conftest import REPO, read_manifest, write_official

from stylization.loading import load_official
from stylization.styletalk.pirender import PIRenderer


def test_layout_and_strict_loading(tmp_path):
    manifest = read_manifest("pirender_facegenerator.tsv")
    assert [(k, list(v.shape)) for k, v in PIRenderer().state_dict().items()] == manifest
    path = tmp_path / "renderer_checkpoint.pt"
    write_official(path, manifest, "net_G_ema")
    assert isinstance(load_official("pirender", path), PIRenderer)
    from stylization.runs import load_pirender  # inference takes the released file, or its folder, too

    assert load_pirender(path).image_size == 256 and load_pirender(tmp_path).image_size == 256
    done = subprocess.run([sys.executable, "scripts/check_checkpoint.py", "--kind", "pirender", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("OK"), done.stderr[-500:]


def test_render_and_the_official_residual_block():
    """Outputs at 128 px; the editing net's residual blocks ignore conv1/norm1, as the official
    code does (it overwrites their result); warp_only skips the editing net."""
    torch.manual_seed(0)
    model = PIRenderer().eval()
    source, window = torch.rand(1, 3, 128, 128) * 2 - 1, torch.randn(1, 73, 27)
    with torch.no_grad():
        out = model(source, window)
        assert out["flow"].shape == (1, 2, 32, 32) and out["fake_image"].shape == (1, 3, 128, 128)
        assert out["fake_image"].abs().max() <= 1 and "fake_image" not in model(source, window, warp_only=True)
        for block in (model.editing_net.decoder.res0.res0, model.editing_net.decoder.res2.res1):
            block.conv1.weight.normal_()
            block.norm1.mlp_gamma.weight.normal_()
        torch.testing.assert_close(model(source, window)["fake_image"], out["fake_image"])
