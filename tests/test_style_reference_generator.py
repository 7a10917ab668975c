"""The reference-frame method's generator side: facial map, weighting mask W, Style-Aware Generator, Eq. 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stylization.data.draw import FACIAL_MAP_GROUPS, facial_map
from stylization.data.parsing import landmark_labels, style_weight_map
from stylization.style_reference.generator import (PatternAttention, StyleAwareGenerator, matched_pattern,
                                                   region_weights, style_photometric_loss)

SIZE = 256  # facial-map side: 1 px lines
LEFT, STEP, HEIGHT = 16, 10, 8  # px: the hand-made groups' left end, point spacing, closed-band height


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The nets here are tiny: one intra-op thread avoids spin-waiting when other processes share the cores
    (2 threads took seconds per step under load, 1 takes milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def band_landmarks() -> np.ndarray:
    """[68, 2]: group g on its own band at y = 16 + 28 g. An open group runs left to right at that y; a
    closed one runs along the top edge, then back along the bottom edge HEIGHT px lower, so its closing
    segment is the vertical at x = LEFT."""
    points = np.full((68, 2), np.nan)
    for g, (indices, closed, _) in enumerate(FACIAL_MAP_GROUPS):
        top = 16 + 28 * g
        n = len(indices)
        if closed:
            half = n // 2
            xs = [LEFT + STEP * k for k in range(half)] + [LEFT + STEP * (half - 1 - k) for k in range(n - half)]
            ys = [top] * half + [top + HEIGHT] * (n - half)
        else:
            xs, ys = [LEFT + STEP * k for k in range(n)], [top] * n
        points[list(indices)] = np.stack([xs, ys], 1)
    return points


def segments(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
    """Every segment facial_map should draw, with its colour, computed from the group table."""
    out = []
    for indices, closed, color in FACIAL_MAP_GROUPS:
        pairs = list(zip(indices[:-1], indices[1:])) + ([(indices[-1], indices[0])] if closed else [])
        out += [(points[a], points[b], color) for a, b in pairs if np.isfinite(points[[a, b]]).all()]
    return out


def distance_to_segments(size: int, segs) -> np.ndarray:
    """[size, size]: each pixel centre's distance (px) to the nearest segment."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    best = np.full((size, size), np.inf)
    for a, b, _ in segs:
        d = b - a
        t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1]))
    return best


def assert_coloured(pixel: np.ndarray, color) -> None:
    """An anti-aliased pixel on black is colour · coverage: mostly covered and of the group's hue."""
    coverage = pixel.max() / 255
    assert coverage > 0.6, pixel
    np.testing.assert_allclose(pixel, np.asarray(color) * coverage, atol=3)


def test_facial_map_draws_each_group_in_its_colour_and_nothing_else():
    points = band_landmarks()
    image = facial_map(points, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    # Black farther than 2 px from every segment (1 px lines, anti-aliasing reaches the neighbours).
    far = distance_to_segments(SIZE, segments(points)) > 2.0
    assert far.mean() > 0.9 and not image[far].any()
    for g, (indices, closed, color) in enumerate(FACIAL_MAP_GROUPS):
        top = 16 + 28 * g
        assert_coloured(image[top, LEFT + STEP // 2], color)  # between the group's first two points
        # The closing segment (x = LEFT, from the bottom edge back up to the first point) only if closed.
        closing = image[top + HEIGHT // 2, LEFT]
        if closed:
            assert_coloured(closing, color)
        else:
            assert not closing.any()
    assert not image[5, 250].any()  # far from every point


def test_facial_map_skips_non_finite_points_and_scales():
    points = band_landmarks()
    points[3] = np.nan  # jaw: removes the segments 2-3 and 3-4 only
    image = facial_map(points, SIZE)
    jaw_y = 16
    assert_coloured(image[jaw_y, LEFT + STEP // 2], FACIAL_MAP_GROUPS[0][2])  # segment 0-1
    for k in (2, 3):  # midpoints of 2-3 and 3-4
        assert not image[jaw_y, LEFT + STEP * k + STEP // 2].any()
    assert not facial_map(np.full((68, 2), np.nan), 64).any()
    inf = band_landmarks()
    inf[0] = (np.inf, 5.0)
    facial_map(inf, 64)  # no crash
    # scale multiplies the coordinates before drawing
    np.testing.assert_array_equal(facial_map(points, 128, scale=0.5), facial_map(points * 0.5, 128))
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        facial_map(points[:60], 64)


def test_facial_map_line_width_grows_with_size():
    points = band_landmarks()  # the jaw runs along y = 16 (256 px), y = 32 when doubled (512 px)
    rows_256 = np.flatnonzero(facial_map(points, 256)[:28, LEFT + 5, 0])
    rows_512 = np.flatnonzero(facial_map(points * 2, 512)[:56, 2 * LEFT + 10, 0])
    assert 16 in rows_256 and 32 in rows_512 and len(rows_512) > len(rows_256)


def test_style_weight_map_table():
    labels = np.arange(19, dtype=np.uint8).reshape(1, 19)
    expected = [0, 1, 1, 1, 3, 3, 0, 0, 0, 0, 1, 5, 5, 5, 0, 0, 0, 0, 0]  # the paper's 5 / 3 / 1 / 0, by hand
    weights = style_weight_map(labels)
    assert weights.dtype == np.float32 and weights.shape == (1, 19)
    np.testing.assert_array_equal(weights[0], expected)
    torch_weights = region_weights(torch.arange(19).view(1, 1, 19))
    assert torch_weights.shape == (1, 1, 1, 19) and torch_weights.dtype == torch.float32
    np.testing.assert_array_equal(torch_weights[0, 0, 0].numpy(), expected)
    for bad in (np.array([[19]]), np.array([[-1]]), np.zeros((2, 2), np.float32)):
        with pytest.raises(ValueError):
            style_weight_map(bad)
    with pytest.raises(ValueError):
        region_weights(torch.full((1, 2, 2), 19))
    with pytest.raises(ValueError):
        region_weights(torch.zeros(1, 2, 2))


def test_style_weight_map_on_landmark_labels_and_bisenet_argmax():
    # A rough 64-px face by hand: jaw arc, straight brows and nose, elliptic eyes and lips.
    t = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    face = np.zeros((68, 2))
    face[:17] = np.stack([32 - 24 * np.cos(t), 28 + 26 * np.sin(t)], 1)
    face[17:27] = np.stack([np.linspace(14, 50, 10), np.full(10, 20.0)], 1)
    face[27:31] = np.stack([np.full(4, 32.0), np.linspace(22, 34, 4)], 1)
    face[31:36] = np.stack([np.linspace(28, 36, 5), np.full(5, 36.0)], 1)

    def ellipse(n: int, rx: float, ry: float, cx: float, cy: float) -> np.ndarray:  # from the right corner
        a = np.arange(n) * 2 * np.pi / n
        return np.stack([cx - rx * np.cos(a), cy - ry * np.sin(a)], 1)

    face[36:42], face[42:48] = ellipse(6, 4, 2, 22, 26), ellipse(6, 4, 2, 42, 26)
    face[48:60], face[60:68] = ellipse(12, 9, 4, 32, 44), ellipse(8, 6, 2, 32, 44)
    labels = landmark_labels(face, 64)
    weights = style_weight_map(labels)
    assert weights[44, 32] == 5.0 and weights[26, 22] == 3.0 and weights[0, 0] == 0.0
    assert set(np.unique(weights)) == {0.0, 1.0, 3.0, 5.0}
    # The same labels as a BiSeNet-like argmax, through the torch wrapper.
    logits = torch.from_numpy(np.eye(19, dtype=np.float32)[labels]).permute(2, 0, 1)[None]
    from_argmax = region_weights(logits.argmax(1))
    np.testing.assert_array_equal(from_argmax[0, 0].numpy(), weights)


def test_style_photometric_loss_by_hand():
    fake = torch.tensor([[[[0.5, -1.0]], [[0.0, 1.0]], [[1.0, 0.2]]]])  # [1, 3, 1, 2]
    matched = torch.tensor([[[[0.0, 1.0]], [[-0.5, 0.0]], [[1.0, 0.7]]]])
    weights = torch.tensor([[[[5.0, 0.0]]]])  # [1, 1, 1, 2]: the second pixel does not count
    # pixel 0: 5 · (0.5 + 0.5 + 0.0) = 5.0; pixel 1: 0; mean over 1 · 3 · 1 · 2 = 6 values
    assert style_photometric_loss(fake, matched, weights).item() == pytest.approx(5.0 / 6)
    moved = fake.clone()
    moved[..., 1] += 3.0
    moved.requires_grad_(True)
    loss = style_photometric_loss(moved, matched, weights)
    assert loss.item() == pytest.approx(5.0 / 6)
    loss.backward()
    assert (moved.grad[..., 1] == 0).all() and (moved.grad[..., 0].abs() > 0).any()
    with pytest.raises(ValueError, match="weights"):
        style_photometric_loss(fake, matched, weights.expand(1, 3, 1, 2))


def test_matched_pattern_picks_by_index():
    patterns = torch.arange(3 * 4, dtype=torch.float32).view(3, 4, 1, 1, 1).expand(3, 4, 3, 2, 2)
    picked = matched_pattern(patterns, torch.tensor([2, 0, 3]))
    assert picked.shape == (3, 3, 2, 2)
    assert picked[:, 0, 0, 0].tolist() == [2.0, 4.0, 11.0]  # row b, column index: 4 b + index
    with pytest.raises(ValueError):
        matched_pattern(patterns, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError):
        matched_pattern(patterns, torch.tensor([0.0, 1.0, 1.0]))


def test_pattern_attention_by_hand():
    attention = PatternAttention(query_ch=4, pattern_ch=4, key_ch=4)
    with torch.no_grad():
        attention.to_query.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        attention.to_query.bias.zero_()
        attention.to_key.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
    patterns = 3.0 * torch.eye(4).view(1, 4, 4, 1, 1).expand(1, 4, 4, 2, 2)  # pattern p is 3 · e_p everywhere
    query = torch.zeros(1, 4, 2, 2)
    query[0, 2, 0, 0] = 2.0  # at (0, 0) it asks for pattern 2; elsewhere for nothing in particular
    fused, weights = attention(query, patterns)
    # scores at (0, 0): <2 e_2, 3 e_p> / sqrt(4) = 3 for p = 2, else 0
    top = math.exp(3) / (math.exp(3) + 3)
    torch.testing.assert_close(weights[0, :, 0, 0], torch.tensor([(1 - top) / 3] * 2 + [top] + [(1 - top) / 3]))
    torch.testing.assert_close(weights[0, :, 1, 1], torch.full((4,), 0.25))
    torch.testing.assert_close(fused[0, :, 0, 0], 3.0 * weights[0, :, 0, 0])


CPU_CONFIG = dict(base_channels=8, max_channels=32, levels=2, res_blocks=1, n_patterns=4, pattern_channels=4,
                  key_channels=4, fused_skips=1)


def generator_inputs(seed: int, batch: int = 2, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, size, size, generator=g) * 2 - 1, torch.rand(batch, 3, size, size, generator=g),
            torch.rand(batch, 4, 3, size, size, generator=g) * 2 - 1)


def test_generator_shape_range_and_gradients():
    torch.manual_seed(0)
    net = StyleAwareGenerator(**CPU_CONFIG)
    source, fmap, patterns = generator_inputs(0)
    out = net(source, fmap, patterns)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    (out * torch.randn_like(out)).sum().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="patterns"):
        net(source, fmap, patterns[:, :3])
    with pytest.raises(ValueError, match="multiples"):
        net(*generator_inputs(0, size=18))


def test_generator_reads_the_facial_map_and_the_patterns():
    torch.manual_seed(0)
    net = StyleAwareGenerator(**{**CPU_CONFIG, "fused_skips": 2}).eval()
    source, fmap, patterns = generator_inputs(1)
    with torch.no_grad():
        base = net(source, fmap, patterns)
        assert torch.equal(base, net(source, fmap, patterns))  # deterministic in eval mode
        assert (net(source, generator_inputs(2)[1], patterns) - base).abs().max() > 1e-3
        assert (net(source, fmap, generator_inputs(3)[2]) - base).abs().max() > 1e-3
        # Patterns are scored by content, not position: their order does not matter.
        torch.testing.assert_close(net(source, fmap, patterns[:, [2, 0, 3, 1]]), base, atol=1e-5, rtol=0)
