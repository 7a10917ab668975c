"""The Style-Aware Generator of Pham et al. (CVPRW 2024, §3.4) and its style-aware photometric loss (Eq. 3).

The paper names the inputs (the source image, the facial map of the generated motion, the four
Intermediate Style Patterns) and the output (the frame), but gives no architecture. Ours is a U-Net:

* ``encoder``: the source and the facial map, concatenated (6 channels), through a 3×3 stem and
  ``levels`` stages that halve the size; level i has ``min(base_channels · 2^i, max_channels)``
  channels at S / 2^i. Every level's feature is a skip; the last is the bottleneck.
* ``pattern_encoder``: one narrower encoder of the same layout (``pattern_channels · 2^i``), shared
  by the P patterns, which it reads as a batch of B·P images.
* ``query_encoder``: the facial map alone (``key_channels`` at every level). At the bottleneck and at
  the ``fused_skips`` skip levels just above it, a :class:`PatternAttention` scores every pattern at
  every location against these facial-map features (softmax over P) and concatenates the weighted
  sum of the pattern features to the U-Net features, so the generator can take the mouth or the eyes
  from the pattern whose shape matches the wanted one. Patterns carry no index embedding, so the
  output does not depend on their order.
* ``bottleneck``: a 3×3 conv back to the bottleneck width, then ``res_blocks`` residual blocks.
* ``ups``: per level, bilinear ×2 upsampling and a 3×3 conv (no transposed convolution, so no
  checkerboard), the skip concatenated, a 3×3 conv; then ``to_rgb`` (3×3 conv) and tanh.

Convolutions are 3×3, each followed by an affine InstanceNorm and LeakyReLU(0.2); a conv that feeds
a norm has no bias, which the norm would cancel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylization.data.parsing import check_label_range, style_weight_table


def conv_norm_act(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.InstanceNorm2d(out_ch, affine=True),
                         nn.LeakyReLU(0.2))


class ResBlock(nn.Module):
    """x + (conv, norm, act, conv, norm)(x), at constant size and width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_norm_act(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                  nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Pyramid(nn.Module):
    """Image [N, in_ch, H, W] -> features, one per level: [N, channels[i], H / 2^i, W / 2^i], i = 0..levels."""

    def __init__(self, in_ch: int, channels: list[int]):
        super().__init__()
        self.stem = conv_norm_act(in_ch, channels[0])
        self.downs = nn.ModuleList(nn.Sequential(conv_norm_act(c_in, c_out, stride=2), conv_norm_act(c_out, c_out))
                                   for c_in, c_out in zip(channels[:-1], channels[1:]))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stem(x)]
        for down in self.downs:
            features.append(down(features[-1]))
        return features


class PatternAttention(nn.Module):
    """Dot-product attention over the P patterns, separately at every location.

    query [B, query_ch, h, w] (facial-map features), patterns [B, P, pattern_ch, h, w] ->
    (fused [B, pattern_ch, h, w], weights [B, P, h, w]); the weights are a softmax over P of
    ⟨W_q·query + b_q, W_k·pattern⟩ / sqrt(key_ch), and fused = Σ_p weights_p · patterns_p.
    """

    def __init__(self, query_ch: int, pattern_ch: int, key_ch: int):
        super().__init__()
        self.to_query = nn.Conv2d(query_ch, key_ch, 1)
        # No key bias: it would add the same ⟨query, bias⟩ to all P scores, which the softmax cancels.
        self.to_key = nn.Conv2d(pattern_ch, key_ch, 1, bias=False)
        self.scale = key_ch ** -0.5

    def forward(self, query: Tensor, patterns: Tensor) -> tuple[Tensor, Tensor]:
        b, p, _, h, w = patterns.shape
        q = self.to_query(query)
        k = self.to_key(patterns.flatten(0, 1)).view(b, p, -1, h, w)
        weights = torch.softmax(torch.einsum("bchw,bpchw->bphw", q, k) * self.scale, dim=1)
        return torch.einsum("bphw,bpchw->bchw", weights, patterns), weights


class UpBlock(nn.Module):
    """x [B, in_ch, h, w], skip [B, skip_ch, 2h, 2w] -> [B, out_ch, 2h, 2w]: bilinear ×2, conv, concat, conv."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up = conv_norm_act(in_ch, out_ch)
        self.merge = conv_norm_act(out_ch + skip_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return self.merge(torch.cat([x, skip], 1))


class StyleAwareGenerator(nn.Module):
    """(source, facial map, Intermediate Style Patterns) -> frame; the layout is in the module docstring.

    Sizes: ``base_channels`` (encoder width at full size, doubled per level up to ``max_channels``),
    ``levels`` (halvings; H and W must be multiples of 2^levels, and the bottleneck at least 2×2),
    ``res_blocks`` (at the bottleneck), ``n_patterns`` (P: the paper's four key motion templates),
    ``pattern_channels`` (pattern encoder width at full size, doubled per level up to ``max_channels``),
    ``key_channels`` (facial-map encoder width and attention key size), ``fused_skips`` (skip levels
    above the bottleneck that also receive the fused patterns, 0..levels).
    """

    def __init__(self, base_channels: int = 64, max_channels: int = 512, levels: int = 4, res_blocks: int = 6,
                 n_patterns: int = 4, pattern_channels: int = 32, key_channels: int = 32, fused_skips: int = 2):
        super().__init__()
        if levels < 1 or not 0 <= fused_skips <= levels or n_patterns < 1:
            raise ValueError(f"StyleAwareGenerator: need levels >= 1 (got {levels}), 0 <= fused_skips <= levels "
                             f"(got {fused_skips}) and n_patterns >= 1 (got {n_patterns})")
        self.levels, self.n_patterns = levels, n_patterns
        self.fused_levels = tuple(range(levels - fused_skips, levels + 1))
        widths = [min(base_channels * 2 ** i, max_channels) for i in range(levels + 1)]
        pattern_widths = [min(pattern_channels * 2 ** i, max_channels) for i in range(levels + 1)]
        extra = [pattern_widths[i] if i in self.fused_levels else 0 for i in range(levels + 1)]
        self.encoder = Pyramid(6, widths)
        self.pattern_encoder = Pyramid(3, pattern_widths)
        self.query_encoder = Pyramid(3, [key_channels] * (levels + 1))
        self.attention = nn.ModuleDict({str(i): PatternAttention(key_channels, pattern_widths[i], key_channels)
                                        for i in self.fused_levels})
        self.bottleneck = nn.Sequential(conv_norm_act(widths[levels] + extra[levels], widths[levels]),
                                        *(ResBlock(widths[levels]) for _ in range(res_blocks)))
        self.ups = nn.ModuleList(UpBlock(widths[i + 1], widths[i] + extra[i], widths[i])
                                 for i in reversed(range(levels)))
        self.to_rgb = nn.Conv2d(widths[0], 3, 3, 1, 1)

    def forward(self, source: Tensor, facial_map: Tensor, patterns: Tensor) -> Tensor:
        """source [B, 3, H, W] in [-1, 1]; facial_map [B, 3, H, W] in [0, 1] (:func:`stylization.data.draw.facial_map`
        / 255); patterns [B, P, 3, H, W] in [-1, 1] -> frame [B, 3, H, W] in [-1, 1]."""
        b, _, h, w = source.shape
        step = 2 ** self.levels
        if (source.shape[1] != 3 or facial_map.shape != source.shape
                or patterns.shape != (b, self.n_patterns, 3, h, w)):
            raise ValueError(f"StyleAwareGenerator: need source and facial_map [B, 3, H, W] and patterns "
                             f"[B, {self.n_patterns}, 3, H, W]; got {tuple(source.shape)}, {tuple(facial_map.shape)}, "
                             f"{tuple(patterns.shape)}")
        if h % step or w % step or min(h, w) < 2 * step:
            raise ValueError(f"StyleAwareGenerator: H and W must be multiples of 2^levels = {step} and at least "
                             f"{2 * step}; got {h} x {w}")
        features = self.encoder(torch.cat([source, facial_map], 1))
        pattern_features = self.pattern_encoder(patterns.flatten(0, 1))
        queries = self.query_encoder(facial_map)
        for i in self.fused_levels:
            fused, _ = self.attention[str(i)](queries[i], pattern_features[i].unflatten(0, (b, self.n_patterns)))
            features[i] = torch.cat([features[i], fused], 1)
        x = self.bottleneck(features[-1])
        for up, i in zip(self.ups, reversed(range(self.levels))):
            x = up(x, features[i])
        return torch.tanh(self.to_rgb(x))


def style_photometric_loss(fake: Tensor, matched: Tensor, weights: Tensor) -> Tensor:
    """Eq. 3, L_sp = ||W ⊙ (I' − I_m)||_1, as a mean: the sum over B, 3, H, W divided by B·3·H·W
    (zero-weight pixels counted), so the loss does not grow with the image size.

    fake I' and matched I_m [B, 3, H, W] in [-1, 1]; weights W [B, 1, H, W] (:func:`region_weights`),
    the same for the three channels. Returns a scalar.
    """
    if fake.shape != matched.shape or weights.shape != (fake.shape[0], 1, *fake.shape[2:]):
        raise ValueError(f"style_photometric_loss: need fake and matched [B, C, H, W] and weights [B, 1, H, W]; got "
                         f"{tuple(fake.shape)}, {tuple(matched.shape)}, {tuple(weights.shape)}")
    return (weights * (fake - matched).abs()).mean()


def matched_pattern(patterns: Tensor, pattern_index: Tensor) -> Tensor:
    """I_m of Eq. 3: patterns [B, P, 3, H, W], pattern_index [B] (integers in 0..P-1) -> [B, 3, H, W]."""
    b, p = patterns.shape[:2]
    if pattern_index.shape != (b,) or pattern_index.dtype.is_floating_point:
        raise ValueError(f"matched_pattern: need integer pattern_index [{b}], got {pattern_index.dtype} "
                         f"{tuple(pattern_index.shape)}")
    if b and not (0 <= int(pattern_index.min()) and int(pattern_index.max()) < p):
        raise ValueError(f"matched_pattern: pattern_index must lie in 0..{p - 1}, got {pattern_index.tolist()}")
    return patterns[torch.arange(b, device=patterns.device), pattern_index.long()]


def region_weights(labels: Tensor) -> Tensor:
    """W of Eq. 3 from parsing labels [B, H, W] (integers 0..18: a BiSeNet argmax or
    :func:`stylization.data.parsing.landmark_labels`) -> float32 [B, 1, H, W], on the labels' device.

    The weights are :data:`stylization.data.parsing.STYLE_REGION_WEIGHTS` (mouth 5, eyes 3, skin,
    brows and nose 1, others 0), the table :func:`stylization.data.parsing.style_weight_map` uses.
    """
    if labels.dim() != 3 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"region_weights: need integer labels [B, H, W], got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel():
        check_label_range(int(labels.min()), int(labels.max()))
    table = torch.from_numpy(style_weight_table()).to(labels.device)
    return table[labels.long()].unsqueeze(1)
