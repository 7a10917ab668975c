"""SAAS's style-aware expression generator, in the released layout, with a hypernetwork that trains.

The parts of ``video_driven.pth`` / ``audio_driven.pth`` (``tests/manifests/saas_video_driven.tsv``,
``saas_audio_driven.tsv``): an input encoder (:class:`LatentEncoder`: expressions, or
:class:`AudioLatentEncoder`: Audio2Exp's expressions from mel windows, each concatenated with the
source style code, -> 64-d latents), :class:`ResidualAdapter` (``ra``) and :class:`StyleDecoder`.
The style encoder is :class:`~stylization.saas.codebook.VQStyleEncoder`.

:class:`ResidualAdapter`: latents [B, T, 64] and a target style code [B, 256] ->
``neutral_branch`` (4-layer LSTM from learned initial states) + a 6-layer style LSTM on
[latent, style] whose initial states come from the style, and whose layers 1-4 have weights
``ra_style`` · (1 + Δ(style)): Δ for each weight matrix from a :class:`HyperNetwork` (a 1-D U-Net
encoder reading the style code as a 1-channel sequence: [B, 256] -> [B, 256, 64], the matrix's
shape), for each bias from a Linear(256, 256).

The official forward writes those modulated weights into a second LSTM (``ra_style_tmp``) through
``.data``, one sample at a time. ``.data`` writes are outside autograd, so neither the
hypernetworks nor ``ra_style``'s layers 1-4 ever receive a gradient, and training leaves them as
initialised. Here the same LSTM runs functionally (:func:`torch.func.functional_call` with the
modulated tensors as its parameters), so every part is trained; the values are the official ones:
layers 0 and 5 are ``ra_style_tmp``'s own (as the official forward uses them), layers 1-4 the
modulated ``ra_style`` ones. ``ra_style``'s layers 0 and 5 stay unused, as there.

:class:`StyleDecoder`: [latent, style] -> MLP -> 18 mouth + 46 other coefficients, concatenated
mouth first (SAAS treats expression coefficients 0-17 as the mouth).
Pure ``nn.Module`` s.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from stylization.style_e.audio2exp import Audio2Exp

MOUTH_COEFFS = 18  # SAAS's mouth: expression coefficients 0-17
MODULATED_LAYERS = (1, 2, 3, 4)  # style-LSTM layers whose weights the hypernetworks modulate


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class LatentEncoder(nn.Module):
    """``layers``: [exp [B, T, 64], style [B, S]] -> latent [B, T, latent]; widths halve
    (320 -> 160 -> 80 -> 64 at the released size)."""

    def __init__(self, exp_dim: int = 64, style_dim: int = 256, latent_dim: int = 64, layers: int = 2):
        super().__init__()
        sizes = [exp_dim + style_dim]
        for _ in range(layers):
            sizes.append(sizes[-1] // 4 * 2)
        self.layers = _mlp(sizes + [latent_dim])

    def forward(self, exp: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([exp, style[:, None].expand(-1, exp.shape[1], -1)], -1))


class _AudioWrapper(nn.Module):
    """``netG``: SadTalker's Audio2Exp (the official wrapper's single member)."""

    def __init__(self, channels):
        super().__init__()
        self.netG = Audio2Exp(channels)


class AudioLatentEncoder(LatentEncoder):
    """``audioencoder.netG`` (SadTalker's Audio2Exp) + ``layers``: mel windows [B, T, 1, 80, 16],
    the source's expression [B, 64] and blinks [B, T] -> latent [B, T, latent] (Audio2Exp's
    expression concatenated with the source style)."""

    def __init__(self, exp_dim: int = 64, style_dim: int = 256, latent_dim: int = 64, layers: int = 2,
                 audio_channels=(32, 64, 128, 256, 512)):
        super().__init__(exp_dim, style_dim, latent_dim, layers)
        self.audioencoder = _AudioWrapper(audio_channels)
        self._modules["layers"] = self._modules.pop("layers")  # the released order: audioencoder, layers

    def forward(self, mel: torch.Tensor, source_exp: torch.Tensor, blink: torch.Tensor,
                style: torch.Tensor) -> torch.Tensor:
        return super().forward(self.audioencoder.netG(mel, source_exp, blink), style)


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.double_conv = nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(),
                                         nn.Conv1d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool1d(2), _DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class HyperNetwork(nn.Module):
    """Style [B, S] as a 1-channel sequence -> DoubleConv(1 -> c) -> Down(c -> 2c) -> Down(2c -> 4c):
    [B, 4c, S / 4] (c = 64, S = 256: [B, 256, 64], an LSTM gate matrix of a 64-unit layer)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.inc = _DoubleConv(1, width)
        self.down1 = _Down(width, 2 * width)
        self.down2 = _Down(2 * width, 4 * width)

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        return self.down2(self.down1(self.inc(style[:, None])))


class ResidualAdapter(nn.Module):
    """Latents [B, T, L] + target style [B, S] -> [B, T, L] (see the module docstring)."""

    def __init__(self, latent_dim: int = 64, style_dim: int = 256, neutral_layers: int = 4, style_layers: int = 6,
                 hyperstyle: bool = True):
        super().__init__()
        self.hyperstyle = hyperstyle  # False: Table 3's "w/o HyperStyle", the style LSTM as stored (no modulation)
        if 4 * latent_dim != style_dim:
            raise ValueError(f"the hypernetworks map a {style_dim}-d style to {4 * latent_dim}-row gate matrices: "
                             f"style_dim must be 4 x latent_dim")
        if style_layers <= max(MODULATED_LAYERS):
            raise ValueError(f"style_layers must exceed {max(MODULATED_LAYERS)} (layers 1-4 are modulated)")
        self.style_layers, self.latent_dim = style_layers, latent_dim
        self.neutral_branch = nn.LSTM(latent_dim, latent_dim, neutral_layers, batch_first=True)
        self.neutral_init_hidden_state = nn.Parameter(torch.zeros(neutral_layers, latent_dim))
        self.neutral_init_cell_state = nn.Parameter(torch.zeros(neutral_layers, latent_dim))
        self.ra_style = nn.LSTM(latent_dim + style_dim, latent_dim, style_layers, batch_first=True)
        self.ra_style_tmp = nn.LSTM(latent_dim + style_dim, latent_dim, style_layers, batch_first=True)
        self.ra_init_hidden_state = nn.Linear(style_dim, style_layers * latent_dim)
        self.ra_init_cell_state = nn.Linear(style_dim, style_layers * latent_dim)
        n = len(MODULATED_LAYERS)
        width = style_dim // 4
        self.linear_layers_ih = nn.ModuleList(HyperNetwork(width) for _ in range(n))
        self.linear_layers_hh = nn.ModuleList(HyperNetwork(width) for _ in range(n))
        self.linear_layers_bias_ih = nn.ModuleList(nn.Linear(style_dim, style_dim) for _ in range(n))
        self.linear_layers_bias_hh = nn.ModuleList(nn.Linear(style_dim, style_dim) for _ in range(n))
        self._freeze_unused()

    def _freeze_unused(self) -> None:
        """The layout's tensors the forward never reads stay in the state dict but need no gradient
        (DistributedDataParallel insists that every trainable parameter reaches the loss): with
        HyperStyle, ``ra_style_tmp``'s layers 1-4 (replaced by the modulated ones) and ``ra_style``'s
        layers 0 and 5; without it, ``ra_style`` and the hypernetworks."""
        def layer(name: str) -> int:  # "weight_ih_l3" -> 3
            return int(name.rsplit("_l", 1)[1])

        if self.hyperstyle:
            unused = [p for name, p in self.ra_style_tmp.named_parameters() if layer(name) in MODULATED_LAYERS]
            unused += [p for name, p in self.ra_style.named_parameters() if layer(name) not in MODULATED_LAYERS]
        else:
            unused = list(self.ra_style.parameters())
            for hyper in (self.linear_layers_ih, self.linear_layers_hh, self.linear_layers_bias_ih,
                          self.linear_layers_bias_hh):
                unused += list(hyper.parameters())
        for p in unused:
            p.requires_grad_(False)

    def style_parameters(self, style: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per sample, the style LSTM's parameters: layers 0 and 5 ``ra_style_tmp``'s, layers 1-4
        ``ra_style``'s times (1 + the hypernetworks' Δ). Differentiable in every input."""
        own = dict(self.ra_style_tmp.named_parameters())
        base = dict(self.ra_style.named_parameters())
        deltas = {}
        for j, layer in enumerate(MODULATED_LAYERS):
            deltas[f"weight_ih_l{layer}"] = self.linear_layers_ih[j](style)
            deltas[f"weight_hh_l{layer}"] = self.linear_layers_hh[j](style)
            deltas[f"bias_ih_l{layer}"] = self.linear_layers_bias_ih[j](style)
            deltas[f"bias_hh_l{layer}"] = self.linear_layers_bias_hh[j](style)
        return [{name: base[name] * (1 + deltas[name][i]) if name in deltas else own[name] for name in own}
                for i in range(style.shape[0])]

    def forward(self, latent: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, t, _ = latent.shape
        h0 = self.neutral_init_hidden_state[:, None].expand(-1, b, -1).contiguous()
        c0 = self.neutral_init_cell_state[:, None].expand(-1, b, -1).contiguous()
        neutral = self.neutral_branch(latent, (h0, c0))[0]
        hs = self.ra_init_hidden_state(style).view(b, self.style_layers, self.latent_dim).transpose(0, 1)
        cs = self.ra_init_cell_state(style).view(b, self.style_layers, self.latent_dim).transpose(0, 1)
        inputs = torch.cat([latent, style[:, None].expand(-1, t, -1)], -1)
        if not self.hyperstyle:
            return neutral + self.ra_style_tmp(inputs, (hs.contiguous(), cs.contiguous()))[0]
        styled = [functional_call(self.ra_style_tmp, params, (inputs[i:i + 1],
                                                              (hs[:, i:i + 1].contiguous(), cs[:, i:i + 1].contiguous())))[0]
                  for i, params in enumerate(self.style_parameters(style))]
        return neutral + torch.cat(styled)


class StyleDecoder(nn.Module):
    """``features`` (Linear/ReLU, widths ×1.5: 320 -> 480 -> 720 -> 1080), ``last_layer_expression``
    (-> 46), ``last_layer_mouth`` (-> 18): [latent [B, T, L], style [B, S]] -> exp [B, T, 64], mouth first."""

    def __init__(self, latent_dim: int = 64, style_dim: int = 256, layers: int = 4, exp_dim: int = 64):
        super().__init__()
        sizes = [latent_dim + style_dim]
        for _ in range(layers - 1):
            sizes.append(int(sizes[-1] * 1.5 // 2 * 2))
        self.features = nn.Sequential(*_mlp(sizes), nn.ReLU())
        self.last_layer_expression = nn.Linear(sizes[-1], exp_dim - MOUTH_COEFFS)
        self.last_layer_mouth = nn.Linear(sizes[-1], MOUTH_COEFFS)

    def forward(self, latent: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = self.features(torch.cat([latent, style[:, None].expand(-1, latent.shape[1], -1)], -1))
        return torch.cat([self.last_layer_mouth(h), self.last_layer_expression(h)], -1)
