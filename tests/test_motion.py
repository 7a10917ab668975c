"""The motion generator (PIRenderer layout) and the flow warp."""

import torch

from conftest import read_manifest
from stylization.data.coeffs import SEMANTIC_DIM, WINDOW_FRAMES
from stylization.style_a.motion import MappingNet, MotionGenerator, flow_to_grid, warp


def test_layout_matches_pirender_mapping_and_warping_nets():
    manifest = [(n, s) for n, s in read_manifest("pirender_facegenerator.tsv") if not n.startswith("editing_net.")]
    with torch.device("meta"):
        model = MotionGenerator()
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == manifest


def test_descriptor_and_flow_shapes():
    torch.manual_seed(0)
    model = MotionGenerator().eval()
    with torch.no_grad():
        flow, descriptor = model(torch.rand(2, 3, 256, 256) * 2 - 1, torch.randn(2, SEMANTIC_DIM, WINDOW_FRAMES))
    assert descriptor.shape == (2, 256) and flow.shape == (2, 2, 64, 64) and torch.isfinite(flow).all()
    # the mapping net shrinks 27 frames to 3 before pooling: the window's ends matter less than nothing
    net = MappingNet()
    assert net.first(torch.randn(1, 73, 27)).shape[-1] == 21


def test_zero_flow_is_the_identity_with_aligned_corners():
    x = torch.randn(2, 5, 64, 64)
    assert torch.allclose(warp(x, torch.zeros(2, 2, 64, 64), align_corners=True), x, atol=1e-4)  # float rounding
    i = torch.arange(64.0)
    smooth = (torch.sin(i / 10)[:, None] + torch.cos(i / 10)[None, :]).expand(1, 1, 64, 64)
    pirender = warp(smooth, torch.zeros(1, 2, 64, 64))  # PIRenderer's convention: within half a pixel, not exact
    assert torch.allclose(pirender[..., 8:56, 8:56], smooth[..., 8:56, 8:56], atol=0.06)
    assert not torch.allclose(pirender, smooth, atol=1e-3)


def test_a_known_translation_moves_the_feature():
    x = torch.randn(1, 3, 32, 32)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 3.0  # sample 3 pixels to the right
    out = warp(x, flow, align_corners=True)
    assert torch.allclose(out[..., :29], x[..., 3:], atol=1e-5)
    assert torch.count_nonzero(out[..., 29:]) == 0  # beyond the border: zeros
    small = warp(torch.randn(1, 4, 64, 64), torch.zeros(1, 2, 16, 16), align_corners=True)  # grid resized
    assert small.shape == (1, 4, 64, 64)
    grid = flow_to_grid(torch.zeros(1, 2, 4, 5))
    assert torch.allclose(grid[0, 0, :, 0], torch.linspace(-1, 1, 5)) and torch.allclose(grid[0, :, 0, 1],
                                                                                          torch.linspace(-1, 1, 4))
