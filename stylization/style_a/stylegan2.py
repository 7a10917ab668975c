"""StyleGAN2 generator and discriminator in plain PyTorch (no compiled extension).

Parameter names and shapes follow rosinality/stylegan2-pytorch, the schema that the
StyleGAN2, DualStyleGAN, pSp and VToonify checkpoints use, so their files load with
``strict=True`` (see ``../shared/reference/checkpoints/``). The custom CUDA ops of that code
(upfirdn2d, fused bias + leaky ReLU) are written here with standard PyTorch ops.

Numerics, as in StyleGAN2:
* equalised learning rate: weights are stored N(0, 1) (divided by ``lr_mul``) and scaled by
  ``lr_mul / sqrt(fan_in)`` at run time;
* the activation is leaky ReLU (slope 0.2) of (x + bias) times sqrt(2);
* up/down-sampling filters with the separable [1, 3, 3, 1] kernel (normalised; × factor² when
  upsampling) through :func:`upfirdn2d`;
* modulated convolutions: weights scaled per sample by the style, then demodulated
  (divided by their per-output-channel norm, eps 1e-8).

Randomness: noise is the stored ``noises.noise_i`` buffers unless ``randomize_noise``;
random noise and the style-mixing index come from an optional ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_BLUR = (1, 3, 3, 1)


def channel_table(channel_multiplier: int = 2, channel_cap: int = 512) -> dict[int, int]:
    """Feature channels at each resolution (4 .. 1024), capped at ``channel_cap``."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: min(ch, channel_cap) for res, ch in table.items()}


def make_kernel(taps) -> torch.Tensor:
    """1-D taps -> normalised 2-D separable FIR kernel (a 2-D kernel is only normalised)."""
    k = torch.tensor(taps, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample by zero insertion, pad (negative pads crop), FIR-filter, downsample.

    x [B, C, H, W]; kernel [kh, kw]; ``pad`` = (before, after), the same on both axes.
    The filter is a true convolution (the kernel is flipped), as in the reference op.
    """
    b, c, h, w = x.shape
    y = x
    if up > 1:
        y = y.reshape(b, c, h, 1, w, 1)
        y = F.pad(y, (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
    p0, p1 = pad
    y = F.pad(y, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    y = y[:, :, max(-p0, 0): y.shape[2] - max(-p1, 0), max(-p0, 0): y.shape[3] - max(-p1, 0)]
    # one depthwise (grouped) convolution, strided for the downsampling: ~10x faster on CPUs than
    # folding the channels into the batch, and it never computes the samples it would drop
    weight = torch.flip(kernel, (0, 1)).to(y.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(y, weight, stride=down, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
    """leaky_relu(x + bias) · scale, with the bias on the channel axis (dim 1)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.to(x.dtype).reshape(shape), negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias (optional) + leaky ReLU (0.2) + × sqrt(2)."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x):
        if self.bias is None:
            return F.leaky_relu(x, 0.2) * 2 ** 0.5
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    def __init__(self, taps, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, taps, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.factor, self.pad = factor, ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear with equalised learning rate; ``activation=True`` applies the fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def forward(self, x):
        weight = self.weight * self.scale
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(in_ch * kernel ** 2), stride, padding
        self.dilation = 1  # VToonify dilates some 3×3 convolutions (padding set to match)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding, self.dilation)


class ModulatedConv2d(nn.Module):
    """Style-modulated (and by default demodulated) convolution, optionally up/down-sampling by 2.

    input [B, C_in, H, W], style [B, style_dim] -> [B, C_out, H', W'].
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, downsample: bool = False, blur_kernel=DEFAULT_BLUR):
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_ch * kernel ** 2)
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def forward(self, x, style):
        b, _, h, w = x.shape
        s = self.modulation(style).reshape(b, 1, self.in_ch, 1, 1)
        weight = self.scale * self.weight * s  # [B, out, in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + 1e-8).reshape(b, self.out_ch, 1, 1, 1)
        k = self.kernel_size
        if self.upsample:
            # transposed conv with stride 2 (grouped per sample), then the blur completes the FIR upsampling
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x.reshape(1, b * self.in_ch, h, w), weight, stride=2, groups=b)
            return self.blur(out.reshape(b, self.out_ch, out.shape[2], out.shape[3]))
        weight = weight.reshape(b * self.out_ch, self.in_ch, k, k)
        if self.downsample:
            x = self.blur(x)
            out = F.conv2d(x.reshape(1, b * self.in_ch, x.shape[2], x.shape[3]), weight, stride=2, groups=b)
        else:
            out = F.conv2d(x.reshape(1, b * self.in_ch, h, w), weight, padding=self.padding, groups=b)
        return out.reshape(b, self.out_ch, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int):
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(self, in_ch, out_ch, kernel, style_dim, upsample=False, blur_kernel=DEFAULT_BLUR, demodulate=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel, style_dim, demodulate, upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch, style_dim, upsample=True, blur_kernel=DEFAULT_BLUR):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    """StyleGAN2 generator (rosinality layout).

    Args:
        size: output resolution, a power of two >= 8.
        style_dim: latent width (512).
        n_mlp: mapping layers (8).
        channel_multiplier: 2 for the FFHQ config-f models.
        channel_cap: upper bound on every layer's channels (512 in the official models;
            smaller for tests and CPU experiments).
        lr_mlp: learning-rate multiplier of the mapping network (0.01).
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channel_cap: int = 512, blur_kernel=DEFAULT_BLUR, lr_mlp: float = 0.01):
        super().__init__()
        log_size = int(math.log2(size))
        if 2 ** log_size != size or size < 8:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size, self.style_dim, self.log_size = size, style_dim, log_size
        self.channels = channel_table(channel_multiplier, channel_cap)
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                                  for _ in range(n_mlp)])
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.num_layers = (log_size - 2) * 2 + 1
        self.n_latent = log_size * 2 - 2
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = self.channels[4]
        for i in range(3, log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

    def stored_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def random_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        device = self.input.input.device
        return [torch.randn(batch, 1, n.shape[-2], n.shape[-1], generator=generator,
                            device=generator.device if generator is not None else device).to(device)
                for n in self.stored_noise()]

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """The average w of ``n`` random z: the usual truncation centre, [1, style_dim]."""
        z = torch.randn(n, self.style_dim, generator=generator).to(self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def map_codes(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, 512] -> w [B, 512]; z+ [B, L, 512] -> w+ [B, L, 512] (each row mapped on its own)."""
        if z.ndim == 3:
            return self.style(z.reshape(-1, z.shape[-1])).reshape(z.shape)
        return self.style(z)

    def latents(self, styles, input_is_latent=False, truncation=1.0, truncation_latent=None, inject_index=None,
                generator=None) -> torch.Tensor:
        """One or two codes -> w+ [B, n_latent, 512].

        A code is z [B, 512] or z+ [B, n_latent, 512], or with ``input_is_latent`` w / w+.
        Two codes mix: layers before ``inject_index`` from the first, the rest from the second.
        ``truncation`` ψ pulls every code towards ``truncation_latent``, w ← w̄ + ψ·(w − w̄), only
        when ψ < 1, as rosinality's ``Generator.forward`` (and DualStyleGAN's, pSp's decoder's) does:
        ψ >= 1 leaves the codes as they are, it never extrapolates away from w̄.
        """
        styles = [styles] if torch.is_tensor(styles) else list(styles)
        if not input_is_latent:
            styles = [self.map_codes(s) for s in styles]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation needs truncation_latent (e.g. generator.mean_latent())")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        per_layer = [s if s.ndim == 3 else s[:, None].expand(-1, self.n_latent, -1) for s in styles]
        if len(per_layer) == 1:
            return per_layer[0]
        if inject_index is None:  # style mixing at a random layer, drawn from the given generator
            inject_index = int(torch.randint(1, self.n_latent, (1,), generator=generator))
        return torch.cat([per_layer[0][:, :inject_index], per_layer[1][:, inject_index:]], 1)

    def forward(self, styles, input_is_latent: bool = False, truncation: float = 1.0, truncation_latent=None,
                noise=None, randomize_noise: bool = False, inject_index: int | None = None,
                return_latents: bool = False, generator: torch.Generator | None = None):
        """z or w codes -> (images [B, 3, size, size] in about [-1, 1], w+ latent or None).

        ``styles``: a tensor [B, 512] (z, or w with ``input_is_latent``), a w+ tensor
        [B, n_latent, 512] (with ``input_is_latent``), or a list of two codes for style mixing.
        """
        latent = self.latents(styles, input_is_latent, truncation, truncation_latent, inject_index, generator)
        b = latent.shape[0]
        if noise is None:
            noise = self.random_noise(b, generator) if randomize_noise else self.stored_noise()
        out = self.conv1(self.input(b), latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2],
                                                 self.to_rgbs):
            out = conv_up(out, latent[:, i], n1)
            out = conv(out, latent[:, i + 1], n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU], the discriminator's building block."""

    def __init__(self, in_ch, out_ch, kernel, downsample=False, blur_kernel=DEFAULT_BLUR, bias=True, activate=True):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, blur_kernel=DEFAULT_BLUR):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel, bias=False, activate=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: images [B, 3, size, size] -> logits [B, 1]."""

    def __init__(self, size: int, channel_multiplier: int = 2, channel_cap: int = 512, blur_kernel=DEFAULT_BLUR,
                 out_dim: int = 1):
        super().__init__()
        log_size = int(math.log2(size))
        if 2 ** log_size != size or size < 8:
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        ch = channel_table(channel_multiplier, channel_cap)
        convs = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_ch, ch[2 ** (i - 1)], blur_kernel))
            in_ch = ch[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = 4, 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 4 * 4, ch[4], activation=True),
                                          EqualLinear(ch[4], out_dim))

    def forward(self, x):
        """[B, 3, size, size] -> [B, out_dim] (logits when out_dim is 1)."""
        return self.final_linear(self.features(x))

    def features(self, x):
        """The flattened 4×4 features before ``final_linear``: [B, 16 · C]."""
        out = self.convs(x)
        b, c, h, w = out.shape
        group = max(g for g in range(1, min(b, self.stddev_group) + 1) if b % g == 0)  # minibatch-stddev groups
        y = out.reshape(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean((2, 3, 4), keepdim=True).squeeze(2)
        y = y.repeat(group, 1, h, w)
        return self.final_conv(torch.cat([out, y], 1)).reshape(b, -1)


class ConditionalDiscriminator(Discriminator):
    """Projection discriminator conditioned on the style degree and the art-style index (VToonify's).

    ``final_linear`` gives a 128-d embedding h; the condition c = [MLP(degree) (64), Embedding(style) (64)];
    the logit is <h, c> / sqrt(128).
    """

    def __init__(self, size: int, num_styles: int, channel_multiplier: int = 2, channel_cap: int = 512,
                 condition_dim: int = 128):
        super().__init__(size, channel_multiplier, channel_cap, out_dim=condition_dim)
        half = condition_dim // 2
        self.condition_dim = condition_dim
        self.label_mapper = nn.Sequential(nn.Linear(1, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2),
                                          nn.Linear(64, half))
        self.style_mapper = nn.Embedding(num_styles, condition_dim - half)

    def forward(self, x, degree: torch.Tensor, style_index: torch.Tensor):
        """x [B, 3, size, size], degree [B] in [0, 1], style_index [B] (long) -> logits [B, 1]."""
        h = self.final_linear(self.features(x))
        condition = torch.cat([self.label_mapper(degree.reshape(-1, 1).to(h.dtype)), self.style_mapper(style_index)], 1)
        return (h * condition).sum(1, keepdim=True) / math.sqrt(self.condition_dim)
