"""DualStyleGAN: a StyleGAN2 with an extrinsic (art) style path, in plain PyTorch.

Layout (``generator.*``, ``style.*``, ``res.*``) matches the official ``generator.pt`` /
VToonify ``generator.*`` so the files load strictly.

* ``generator`` — the intrinsic StyleGAN2 (:class:`~stylization.style_a.stylegan2.Generator`).
* ``style`` — the structure transform T_s: PixelNorm + (n_mlp - 6) EqualLinear (lr_mul 0.01),
  applied per layer to the extrinsic W+ code.
* ``res`` — one entry per latent layer j (18 at 1024):
  - j <= ``res_index`` (0..6): a ModRes :class:`AdaResBlock` applied after conv layer j (j = 0 is
    ``conv1`` at 4×4), driven by T_s of the extrinsic code: x + w_j · residual(x);
  - j > ``res_index`` (7..17): the colour transform T_c, an EqualLinear initialised near
    identity; layer j's latent becomes w_j · T_c(extrinsic_j) + (1 - w_j) · intrinsic_j.

With every weight w_j = 0 (or ``use_res=False``) the output is exactly the intrinsic
StyleGAN2's: the art path adds nothing at degree 0.
"""

from __future__ import annotations

import torch
from torch import nn

from stylization.style_a.stylegan2 import ConvLayer, EqualLinear, Generator, PixelNorm


class AdaptiveInstanceNorm(nn.Module):
    """InstanceNorm (no affine) with gamma, beta = Linear(style) (gamma's bias starts at 1)."""

    def __init__(self, channels: int, style_dim: int = 512):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style = nn.Linear(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0
            self.style.bias[channels:] = 0.0

    def forward(self, x, style):
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


class AdaResBlock(nn.Module):
    """ModRes: x + w · conv2(AdaIN2(conv(AdaIN(x, s)), s)); convolutions start near zero."""

    def __init__(self, channels: int, style_dim: int = 512, dilation: int = 1):
        super().__init__()
        self.conv = ConvLayer(channels, channels, 3)
        self.conv2 = ConvLayer(channels, channels, 3)
        if dilation != 1:  # VToonify's variant: same parameters, dilated 3×3 convolutions
            for layer in (self.conv[0], self.conv2[0]):
                layer.dilation, layer.padding = dilation, dilation
        self.norm = AdaptiveInstanceNorm(channels, style_dim)
        self.norm2 = AdaptiveInstanceNorm(channels, style_dim)
        with torch.no_grad():  # a negligible residual at initialisation
            self.conv[0].weight.mul_(0.01)
            self.conv2[0].weight.mul_(0.01)

    def forward(self, x, style, weight: float = 1.0):
        if weight == 0:
            return x
        return x + weight * self.conv2(self.norm2(self.conv(self.norm(x, style)), style))


def color_transform(dim: int = 512) -> EqualLinear:
    """T_c: an EqualLinear whose effective matrix starts at the identity (plus 0.01 noise)."""
    layer = EqualLinear(dim, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim) * dim ** 0.5 + torch.randn(dim, dim) * 0.01)
    return layer


class DualStyleGAN(nn.Module):
    """Args: size, style_dim, n_mlp, channel_multiplier as the StyleGAN2; ``res_index`` (6): the
    last latent layer with a ModRes block; ``channel_cap`` for small test models."""

    def __init__(self, size: int = 1024, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 res_index: int = 6, channel_cap: int = 512):
        super().__init__()
        if n_mlp <= 6:
            raise ValueError("DualStyleGAN's structure transform has n_mlp - 6 layers: n_mlp must exceed 6")
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=0.01, activation=True)
                                                  for _ in range(n_mlp - 6)])
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier, channel_cap)
        self.res_index = res_index // 2 * 2
        g = self.generator
        self.res = nn.ModuleList([AdaResBlock(g.channels[4], style_dim)])
        for i in range(3, g.log_size + 1):
            for _ in range(2):
                if len(self.res) <= self.res_index:
                    self.res.append(AdaResBlock(g.channels[2 ** i], style_dim))
                else:
                    self.res.append(color_transform(style_dim))
        self.res.append(color_transform(style_dim))  # the last to_rgb's layer
        self.n_latent = g.n_latent

    def forward(self, styles, exstyles: torch.Tensor, input_is_latent: bool = False, truncation: float = 1.0,
                truncation_latent=None, noise=None, randomize_noise: bool = False, inject_index=None,
                use_res: bool = True, fuse_index: int = 18, interp_weights=None, return_latents: bool = False,
                generator: torch.Generator | None = None):
        """Intrinsic codes (z / z+ / w / w+, see :meth:`Generator.latents`) + extrinsic W+ code -> images.

        ``exstyles`` [B, 512] or [B, n_latent, 512] (W+; make it from an exstyle_code.npy entry with
        ``model.generator.map_codes``); ``interp_weights`` per latent layer (default all 1; the
        official style transfer uses [0.75] * 7 + [1] * 11); layers j > ``fuse_index`` skip the
        art path. Returns (images [B, 3, size, size], w+ or None).
        """
        g = self.generator
        latent = g.latents(styles, input_is_latent, truncation, truncation_latent, inject_index, generator)
        b = latent.shape[0]
        weights = [1.0] * self.n_latent if interp_weights is None else list(interp_weights)
        if noise is None:
            noise = g.random_noise(b, generator) if randomize_noise else g.stored_noise()
        if use_res:
            ex = exstyles if exstyles.ndim == 3 else exstyles[:, None].expand(-1, self.n_latent, -1)
            structure = self.style(ex.reshape(-1, ex.shape[-1])).reshape(ex.shape)

        def active(j):
            return use_res and j <= fuse_index and (j > 0 or fuse_index > 0)

        def code(j):  # layer j's latent, with the colour transform above res_index
            if active(j) and j > self.res_index:
                return weights[j] * self.res[j](ex[:, j]) + (1 - weights[j]) * latent[:, j]
            return latent[:, j]

        def modres(x, j):  # the ModRes block after conv layer j
            if active(j) and j <= self.res_index:
                return self.res[j](x, structure[:, j], weights[j])
            return x

        out = modres(g.conv1(g.input(b), latent[:, 0], noise[0]), 0)
        skip = g.to_rgb1(out, latent[:, 1])
        j = 1
        for conv_up, conv, n1, n2, to_rgb in zip(g.convs[::2], g.convs[1::2], noise[1::2], noise[2::2], g.to_rgbs):
            out = modres(conv_up(out, code(j), n1), j)
            out = modres(conv(out, code(j + 1), n2), j + 1)
            skip = to_rgb(out, code(j + 2), skip)
            j += 2
        return skip, (latent if return_latents else None)
