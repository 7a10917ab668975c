"""The Style Mapping (paper §3.3, §5.2): a neutral image and a style reference image -> the Intermediate
Style Pattern (ISP), the neutral image's identity in the reference's head pose and expression.

The paper builds it on face-vid2vid (Wang et al., CVPR 2021) and first-order motion (FOMM):

* :class:`KeypointExtractor` — canonical 3D keypoints c_k of the neutral image: a 2D encoder, a 1x1
  projection to a 3D volume, a 3D decoder, K heatmaps, spatial softmax, expected coordinates.
* :class:`PoseExpressionNet` — head pose (yaw, pitch, roll as Hopenet's 66 bins; translation τ) and
  expression deformations ε_k of either image.
* :func:`transformed_keypoints` — Eq. 1 / Eq. 2: C_k = c_k R + τ + ε_k. The reference's keypoints C̄_k
  reuse the NEUTRAL image's c_k with the reference's R̄, τ̄, ε̄ (Eq. 2).
* :class:`WarpingNetwork` — Eq. 8's per-keypoint motions, their composition masks (Eq. 9) and an
  occlusion mask.
* :class:`IntermediateGenerator` — the appearance volume F_s of the neutral image, warped, projected
  to 2D, masked by the occlusion, decoded to the ISP.

Coordinates. Keypoints and flows live in the normalised coordinates of ``F.grid_sample``'s 3D
convention: (x, y, z) in [-1, 1], x along the volume's width (image right), y along its height
(image down), z along its depth; -1 and 1 are the centres of the first and last voxels
(``align_corners=True``, as FOMM's coordinate grids). Keypoints are row vectors [..., K, 3].

Rotations. R is the column-vector matrix of the project's :func:`~stylization.data.face_model.rotation_matrix`
(a point p rotates to R·p, as ``FaceModel.posed_keypoints`` poses a face), written in the volume's axes:
the face model's world is x right, y up, z towards the camera; the volume's y points down and its z
away from the camera, a change of axes S = diag(1, -1, -1), so the volume's rotation is S·R·S. The
angles a network predicts thus mean what the corpus's fitted (pitch, yaw, roll) mean. In the paper's
row-vector notation "c_k × R", its R is our Rᵀ: ``transformed_keypoints`` computes c_k · Rᵀ = (R·c_k)ᵀ.

Departures from face-vid2vid, all sizes aside: GroupNorm instead of (synchronised) BatchNorm, so a
module computes the same in training and evaluation at any per-process batch; 3x3x3 instead of 7x7x7
kernels for the keypoint heatmaps and the composition masks; the translation and expression heads
start at zero (the first steps warp by the head rotation alone); Hopenet's expected angle uses the bin
centres (Hopenet's ``idx·3 - 99`` sits 1.5° below them). Images are RGB in [0, 1] in and out.
Pure ``nn.Module`` s.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylization.data.face_model import rotation_matrix

BINS = 66  # Hopenet's head-pose bins per angle ...
BIN_DEGREES = 3.0  # ... each 3° wide ...
FIRST_BIN_DEGREES = -99.0  # ... covering [-99°, 99°)
NORM_GROUPS = 8  # GroupNorm groups (fewer where the channels are fewer or not divisible)
VOLUME_TO_WORLD = (1.0, -1.0, -1.0)  # S: the volume's axes (x right, y down, z away) from the face model's


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels)


def _conv_block(dims: int, c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    """Conv (same padding) -> GroupNorm -> ReLU, 2D or 3D."""
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return nn.Sequential(conv(c_in, c_out, kernel, padding=kernel // 2), _norm(c_out), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Pre-activation residual block (FOMM's ResBlock2d / ResBlock3d): x + conv(relu(norm(conv(relu(norm(x))))))."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.body = nn.Sequential(_norm(channels), nn.ReLU(), conv(channels, channels, 3, padding=1),
                                  _norm(channels), nn.ReLU(), conv(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Bottleneck(nn.Module):
    """ResNet's bottleneck block (1x1 -> 3x3 with ``stride`` -> 1x1, a quarter of ``c_out`` inside),
    with a 1x1 projection on the shortcut where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        mid = max(c_out // 4, 1)
        self.body = nn.Sequential(
            nn.Conv2d(c_in, mid, 1, bias=False), _norm(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), _norm(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, c_out, 1, bias=False), _norm(c_out))
        self.shortcut = nn.Identity() if c_in == c_out and stride == 1 else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def identity_grid(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """[D, H, W, 3] voxel-centre coordinates (x, y, z) in [-1, 1] (``align_corners=True``), float32 on
    ``like``'s device: sampling a volume at it returns the volume."""
    axes = [torch.linspace(-1, 1, n, device=like.device) if n > 1 else torch.zeros(1, device=like.device)
            for n in (depth, height, width)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], -1)


def warp_volume(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward warping: volume [B, C, D, H, W] sampled (trilinear, zeros outside) at grid [B, D', H', W', 3]
    (normalised (x, y, z), ``align_corners=True``) -> [B, C, D', H', W']."""
    return F.grid_sample(volume, grid.to(volume.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


# ---- Eq. 1, angles, rotations ------------------------------------------------------------------------

def bin_centres_degrees(like: torch.Tensor) -> torch.Tensor:
    """[66] the centres of Hopenet's bins in degrees: -97.5, -94.5, ..., 97.5 (float32, ``like``'s device)."""
    return FIRST_BIN_DEGREES + BIN_DEGREES * (torch.arange(BINS, device=like.device, dtype=torch.float32) + 0.5)


def angles_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Bin logits [..., 66] -> angle [...] in radians: the softmax expectation over the bin centres (Hopenet)."""
    probs = logits.float().softmax(-1)
    return torch.deg2rad((probs * bin_centres_degrees(logits)).sum(-1))


def angle_bins(angles: torch.Tensor) -> torch.Tensor:
    """Angles [...] in radians -> the index of their 3° bin [...] (int64), clamped to the 66 bins
    (the cross-entropy target of the head-pose loss)."""
    index = torch.floor((torch.rad2deg(angles.float()) - FIRST_BIN_DEGREES) / BIN_DEGREES)
    return index.clamp(0, BINS - 1).long()


def rotation_from_angles(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """yaw, pitch, roll [...] in radians (the corpus's angles: rotations about the face model's y, x and z
    axes) -> [..., 3, 3], :func:`~stylization.data.face_model.rotation_matrix` (Rz·Ry·Rx) in the volume's
    axes, S·R·S with S = diag(1, -1, -1) (see the module docstring)."""
    rot = rotation_matrix(torch.stack([pitch, yaw, roll], -1).float())
    s = rot.new_tensor(VOLUME_TO_WORLD)
    return rot * s[:, None] * s[None, :]


def transformed_keypoints(canonical: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                          expression: torch.Tensor) -> torch.Tensor:
    """Eq. 1 (and Eq. 2): C_k = R·c_k + τ + ε_k, written for row vectors as c_k · Rᵀ + τ + ε_k.

    canonical c [B, K, 3], rotation R [B, 3, 3] (column-vector convention), translation τ [B, 3],
    expression ε [B, K, 3] -> keypoints C [B, K, 3], all in the volume's normalised coordinates."""
    return canonical @ rotation.transpose(-1, -2) + translation[..., None, :] + expression


# ---- the networks ----------------------------------------------------------------------------------------

class KeypointExtractor(nn.Module):
    """Image -> canonical keypoints c_k (face-vid2vid's canonical keypoint detector).

    The image, resized by ``input_scale``, goes through ``levels`` 2D blocks (conv, norm, ReLU, 2x
    average pooling; channels ``base_channels``·2^(i+1) up to ``max_channels``), a 1x1 convolution to
    ``volume_channels``·``depth`` channels read as a [volume_channels, depth, h, w] volume, ``levels``
    3D blocks that double height and width back (channels halving down to ``base_channels``), and a 3D
    convolution to K heatmaps [K, depth, H', W']. A softmax over each heatmap's voxels (logits divided
    by ``temperature``) weights the voxel coordinates: the keypoints are their expectations.

    Args:
        num_kp: K. image_channels: 3 for RGB. input_scale: resize factor before the encoder
            (face-vid2vid 0.25 at 256 px). temperature: of the spatial softmax (face-vid2vid 0.1).
    """

    def __init__(self, *, num_kp: int, image_channels: int, base_channels: int, max_channels: int, levels: int,
                 depth: int, volume_channels: int, input_scale: float, temperature: float):
        super().__init__()
        if levels < 1 or depth < 1 or not 0 < input_scale <= 1 or temperature <= 0:
            raise ValueError(f"KeypointExtractor needs levels >= 1, depth >= 1, 0 < input_scale <= 1 and "
                             f"temperature > 0; got {levels}, {depth}, {input_scale}, {temperature}")
        self.num_kp, self.depth, self.volume_channels = num_kp, depth, volume_channels
        self.input_scale, self.temperature = float(input_scale), float(temperature)
        width = lambda i: min(max_channels, base_channels * 2 ** i)  # noqa: E731
        self.encoder = nn.Sequential(*[
            nn.Sequential(_conv_block(2, image_channels if i == 0 else width(i), width(i + 1)), nn.AvgPool2d(2))
            for i in range(levels)])
        self.to_volume = nn.Conv2d(width(levels), volume_channels * depth, 1)
        ups = []
        for i in reversed(range(levels)):
            c_in = volume_channels if i == levels - 1 else width(i + 1)
            ups += [nn.Upsample(scale_factor=(1, 2, 2)), _conv_block(3, c_in, width(i))]
        self.decoder = nn.Sequential(*ups)
        self.heatmap = nn.Conv3d(width(0), num_kp, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, C, S, S] in [0, 1] -> canonical keypoints c [B, K, 3] (x, y, z) in [-1, 1]."""
        if self.input_scale != 1:
            image = F.interpolate(image, scale_factor=self.input_scale, mode="bilinear", align_corners=False,
                                  antialias=True)
        feature = self.to_volume(self.encoder(image))
        b, _, h, w = feature.shape
        logits = self.heatmap(self.decoder(feature.view(b, self.volume_channels, self.depth, h, w))).float()
        heat = (logits.flatten(2) / self.temperature).softmax(-1)  # [B, K, D·H·W]
        grid = identity_grid(*logits.shape[2:], like=logits).view(-1, 3)
        return heat @ grid


class PoseExpressionNet(nn.Module):
    """Image -> head pose and expression deformations (face-vid2vid's head pose / expression estimator,
    Hopenet's bins: Ruiz et al. 2018).

    A 7x7 stride-2 convolution and a 3x3 stride-2 max-pool, then ResNet bottleneck stages (stage i:
    ``blocks[i]`` blocks of ``channels[i]`` channels, the first of every stage after the first with
    stride 2), global average pooling and linear heads.

    Args:
        num_kp: K. image_channels: 3 for RGB. stem_channels: of the first convolution.
        channels, blocks: per stage (face-vid2vid: [256, 512, 1024, 2048] and [3, 4, 6, 3]).
    """

    def __init__(self, *, num_kp: int, image_channels: int, stem_channels: int, channels: list[int],
                 blocks: list[int]):
        super().__init__()
        channels, blocks = [int(c) for c in channels], [int(n) for n in blocks]
        if not channels or len(channels) != len(blocks) or min(blocks) < 1:
            raise ValueError(f"channels and blocks must be equally long and every stage >= 1 block, "
                             f"got {channels}, {blocks}")
        self.num_kp = num_kp
        layers = [nn.Conv2d(image_channels, stem_channels, 7, 2, 3, bias=False), _norm(stem_channels),
                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c_in = stem_channels
        for i, (c, n) in enumerate(zip(channels, blocks)):
            for j in range(n):
                layers.append(Bottleneck(c_in, c, 2 if i > 0 and j == 0 else 1))
                c_in = c
        self.features = nn.Sequential(*layers)
        self.yaw, self.pitch, self.roll = (nn.Linear(c_in, BINS) for _ in range(3))
        self.translation = nn.Linear(c_in, 3)
        self.expression = nn.Linear(c_in, 3 * num_kp)
        for head in (self.translation, self.expression):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image [B, C, S, S] in [0, 1] -> ``yaw``, ``pitch``, ``roll`` bin logits [B, 66] (bin i covers
        [-99 + 3i, -96 + 3i) degrees), ``translation`` τ [B, 3] and ``expression`` ε [B, K, 3] (normalised
        volume units)."""
        h = self.features(image).mean((-2, -1))
        return {"yaw": self.yaw(h), "pitch": self.pitch(h), "roll": self.roll(h), "translation": self.translation(h),
                "expression": self.expression(h).view(-1, self.num_kp, 3)}


def pose_rotation(pose: dict[str, torch.Tensor]) -> torch.Tensor:
    """A :class:`PoseExpressionNet` output -> R [B, 3, 3] from the expected yaw, pitch and roll."""
    return rotation_from_angles(*(angles_from_logits(pose[k]) for k in ("yaw", "pitch", "roll")))


class Hourglass3d(nn.Module):
    """FOMM's hourglass in 3D: ``levels`` blocks halving height and width (not depth), as many doubling
    them back, each joined to the encoder's feature of its size; the output ends with the input itself,
    ``base_channels + in_channels`` channels (``out_channels``) at the input's size."""

    def __init__(self, in_channels: int, base_channels: int, max_channels: int, levels: int):
        super().__init__()
        width = lambda i: min(max_channels, base_channels * 2 ** i)  # noqa: E731
        self.down = nn.ModuleList(nn.Sequential(_conv_block(3, in_channels if i == 0 else width(i), width(i + 1)),
                                                nn.AvgPool3d((1, 2, 2))) for i in range(levels))
        self.up = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=(1, 2, 2)),
                                              _conv_block(3, (1 if i == levels - 1 else 2) * width(i + 1), width(i)))
                                for i in reversed(range(levels)))
        self.out_channels = base_channels + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, D, H, W] (H, W multiples of 2**levels) -> [B, out_channels, D, H, W]."""
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], 1)
        return out


class WarpingNetwork(nn.Module):
    """The dense motion from the neutral keypoints to the reference's (Eqs. 8, 9) and the occlusion mask.

    For each keypoint k the sparse motion maps a location p̄ of the reference's volume to the neutral's
    p = R R̄⁻¹ (p̄ − C̄_k) + C_k (Eq. 8; R̄⁻¹ = R̄ᵀ); one more motion, the identity, stands for the
    background. The compressed appearance volume is warped by each of the K + 1 motions; with the
    differences of Gaussian keypoint heatmaps (reference minus neutral, FOMM) they go through a 3D
    hourglass, whose output gives K + 1 composition masks, a softmax over k at every voxel (Eq. 9),
    and, collapsed over depth, the occlusion mask o (sigmoid).

    Args:
        num_kp: K. feature_channels, depth: of the appearance volume [C, D, h, w].
        compress_channels: the volume's channels after a 1x1 convolution (face-vid2vid 5).
        base_channels, max_channels, levels: the hourglass (h, w multiples of 2**levels).
        kp_variance: of the Gaussian heatmaps, in squared normalised units (FOMM 0.01).
    """

    def __init__(self, *, num_kp: int, feature_channels: int, depth: int, compress_channels: int, base_channels: int,
                 max_channels: int, levels: int, kp_variance: float):
        super().__init__()
        self.num_kp, self.feature_channels, self.depth, self.kp_variance = num_kp, feature_channels, depth, kp_variance
        self.compress = _conv_block(3, feature_channels, compress_channels, kernel=1)
        self.hourglass = Hourglass3d((num_kp + 1) * (compress_channels + 1), base_channels, max_channels, levels)
        self.mask = nn.Conv3d(self.hourglass.out_channels, num_kp + 1, 3, padding=1)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels * depth, 1, 7, padding=3)

    def sparse_motion(self, shape: tuple[int, int, int], kp_neutral: torch.Tensor, kp_reference: torch.Tensor,
                      rot_neutral: torch.Tensor, rot_reference: torch.Tensor) -> torch.Tensor:
        """Eq. 8 over the voxel grid of ``shape`` (D, H, W), identity first -> [B, K + 1, D, H, W, 3] (float32)."""
        with torch.autocast(kp_neutral.device.type, enabled=False):
            grid = identity_grid(*shape, like=kp_neutral)  # p̄ [D, H, W, 3]
            relative = rot_neutral.float() @ rot_reference.float().transpose(-1, -2)  # R R̄⁻¹ [B, 3, 3]
            offset = grid - kp_reference.float()[:, :, None, None, None, :]  # p̄ − C̄_k [B, K, D, H, W, 3]
            moved = torch.einsum("bij,bkdhwj->bkdhwi", relative, offset) + kp_neutral.float()[:, :, None, None, None, :]
            identity = grid.expand(moved.shape[0], 1, *grid.shape)
            return torch.cat([identity, moved], 1)

    def heatmaps(self, shape: tuple[int, int, int], keypoints: torch.Tensor) -> torch.Tensor:
        """Gaussians exp(-|p - C_k|² / (2·kp_variance)) over the grid: keypoints [B, K, 3] -> [B, K, D, H, W]."""
        grid = identity_grid(*shape, like=keypoints)
        sq = (grid - keypoints.float()[:, :, None, None, None, :]).pow(2).sum(-1)
        return torch.exp(-0.5 * sq / self.kp_variance)

    def forward(self, volume: torch.Tensor, kp_neutral: torch.Tensor, kp_reference: torch.Tensor,
                rot_neutral: torch.Tensor, rot_reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """volume F_s [B, C, D, h, w]; kp_neutral C, kp_reference C̄ [B, K, 3]; rot_neutral R, rot_reference
        R̄ [B, 3, 3] -> ``flow`` [B, D, h, w, 3] (where each reference voxel samples the neutral volume),
        ``masks`` [B, K + 1, D, h, w] (summing to 1 over K + 1; index 0 the background), ``occlusion``
        [B, 1, h, w] in [0, 1], ``sparse_motion`` [B, K + 1, D, h, w, 3]."""
        b, c, d, h, w = volume.shape
        if (c, d) != (self.feature_channels, self.depth):
            raise ValueError(f"WarpingNetwork was built for volumes of {self.feature_channels} channels x {self.depth} "
                             f"deep, got {tuple(volume.shape)}")
        k = self.num_kp
        motion = self.sparse_motion((d, h, w), kp_neutral, kp_reference, rot_neutral, rot_reference)
        feature = self.compress(volume)
        warped = warp_volume(feature.repeat_interleave(k + 1, 0), motion.flatten(0, 1)).unflatten(0, (b, k + 1))
        heat = self.heatmaps((d, h, w), kp_reference) - self.heatmaps((d, h, w), kp_neutral)
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], 1).unsqueeze(2).to(warped.dtype)
        out = self.hourglass(torch.cat([heat, warped], 2).flatten(1, 2))
        masks = self.mask(out).float().softmax(1)
        flow = (masks.unsqueeze(-1) * motion).sum(1)
        occlusion = torch.sigmoid(self.occlusion(out.flatten(1, 2)).float())
        return {"flow": flow, "masks": masks, "occlusion": occlusion, "sparse_motion": motion}


class IntermediateGenerator(nn.Module):
    """The appearance volume of the neutral image and, from its warped copy, the ISP image.

    :meth:`encode`: a 7x7 convolution, ``down_levels`` 2D blocks halving the size (channels
    ``base_channels``·2^i up to ``max_channels``), a 1x1 convolution to ``feature_channels``·``depth``
    channels read as a volume, ``volume_blocks`` 3D residual blocks: F_s [C, D, S/2^L, S/2^L].
    :meth:`decode`: the warped volume with its depth folded into channels, a 3x3 and a 1x1 convolution
    back to 2D, times the occlusion mask, ``residual_blocks`` 2D residual blocks (paper: 6),
    ``down_levels`` upsampling blocks (paper: 2), a 7x7 convolution and a sigmoid.
    """

    def __init__(self, *, image_channels: int, base_channels: int, max_channels: int, down_levels: int,
                 feature_channels: int, depth: int, volume_blocks: int, residual_blocks: int):
        super().__init__()
        self.feature_channels, self.depth = feature_channels, depth
        width = lambda i: min(max_channels, base_channels * 2 ** i)  # noqa: E731
        top = width(down_levels)
        self.first = _conv_block(2, image_channels, base_channels, kernel=7)
        self.down = nn.Sequential(*[nn.Sequential(_conv_block(2, width(i), width(i + 1)), nn.AvgPool2d(2))
                                    for i in range(down_levels)])
        self.to_volume = nn.Conv2d(top, feature_channels * depth, 1)
        self.volume_blocks = nn.Sequential(*[ResBlock(3, feature_channels) for _ in range(volume_blocks)])
        self.to_image_plane = nn.Sequential(_conv_block(2, feature_channels * depth, top), nn.Conv2d(top, top, 1))
        self.residual_blocks = nn.Sequential(*[ResBlock(2, top) for _ in range(residual_blocks)])
        self.up = nn.Sequential(*[nn.Sequential(nn.Upsample(scale_factor=2), _conv_block(2, width(i + 1), width(i)))
                                  for i in reversed(range(down_levels))])
        self.final = nn.Conv2d(base_channels, image_channels, 7, padding=3)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, C, S, S] in [0, 1] -> appearance volume F_s [B, feature_channels, depth, S/2^L, S/2^L]."""
        x = self.to_volume(self.down(self.first(image)))
        b, _, h, w = x.shape
        return self.volume_blocks(x.view(b, self.feature_channels, self.depth, h, w))

    def decode(self, warped: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """warped volume [B, C, D, h, w], occlusion [B, 1, h, w] in [0, 1] -> image [B, C_img, h·2^L, w·2^L]
        in [0, 1]."""
        x = self.to_image_plane(warped.flatten(1, 2)) * occlusion.to(warped.dtype)
        return torch.sigmoid(self.final(self.up(self.residual_blocks(x))).float())

    def forward(self, volume: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """F_s [B, C, D, h, w], flow [B, D, h, w, 3], occlusion [B, 1, h, w] -> the ISP [B, C_img, S, S] in [0, 1]."""
        return self.decode(warp_volume(volume, flow), occlusion)


class StyleMapping(nn.Module):
    """Neutral image + style reference image -> Intermediate Style Pattern (paper §3.3).

    ``neutral_state`` computes what depends on the neutral image alone (canonical keypoints, its pose,
    its keypoints C_k, the appearance volume); ``forward_from_state`` maps it onto references, so one
    neutral image maps onto many references at the cost of their pose networks and the warp.
    """

    def __init__(self, *, keypoint_extractor: KeypointExtractor, pose_net: PoseExpressionNet,
                 warping: WarpingNetwork, generator: IntermediateGenerator):
        super().__init__()
        if not keypoint_extractor.num_kp == pose_net.num_kp == warping.num_kp:
            raise ValueError(f"the parts disagree on the number of keypoints: keypoint_extractor "
                             f"{keypoint_extractor.num_kp}, pose_net {pose_net.num_kp}, warping {warping.num_kp}")
        if (warping.feature_channels, warping.depth) != (generator.feature_channels, generator.depth):
            raise ValueError(f"warping is built for volumes of {warping.feature_channels} channels x {warping.depth} "
                             f"deep, the generator makes {generator.feature_channels} x {generator.depth}")
        self.keypoint_extractor, self.pose_net, self.warping, self.generator = (
            keypoint_extractor, pose_net, warping, generator)

    def image_keypoints(self, image: torch.Tensor) -> dict:
        """An image's own keypoints: image [B, 3, S, S] in [0, 1] -> ``canonical`` c [B, K, 3], ``pose``
        (the :class:`PoseExpressionNet` outputs), ``rotation`` R [B, 3, 3], ``keypoints`` C [B, K, 3] (Eq. 1)."""
        canonical = self.keypoint_extractor(image)
        pose = self.pose_net(image)
        rotation = pose_rotation(pose)
        return {"canonical": canonical, "pose": pose, "rotation": rotation,
                "keypoints": transformed_keypoints(canonical, rotation, pose["translation"], pose["expression"])}

    def neutral_state(self, neutral: torch.Tensor) -> dict:
        """neutral I_s [B, 3, S, S] in [0, 1] -> :meth:`image_keypoints` and ``appearance`` F_s [B, C, D, h, w]."""
        return {**self.image_keypoints(neutral), "appearance": self.generator.encode(neutral)}

    def forward_from_state(self, state: dict, reference: torch.Tensor) -> dict:
        """A :meth:`neutral_state` of B neutral images and N references I_r [N, 3, S, S] in [0, 1]
        (N a multiple of B: neutral i goes with references i·N/B ... (i+1)·N/B - 1) -> the outputs of
        :meth:`forward`, batch N."""
        b, n = state["canonical"].shape[0], reference.shape[0]
        if n % b:
            raise ValueError(f"{n} references for {b} neutral states: N must be a multiple of B")
        state = _repeat(state, n // b)
        pose = self.pose_net(reference)
        rotation = pose_rotation(pose)
        keypoints = transformed_keypoints(state["canonical"], rotation, pose["translation"], pose["expression"])
        motion = self.warping(state["appearance"], state["keypoints"], keypoints, state["rotation"], rotation)
        image = self.generator(state["appearance"], motion["flow"], motion["occlusion"])
        return {"image": image, "kp_neutral": state["keypoints"], "kp_reference": keypoints,
                "canonical": state["canonical"], "pose_neutral": state["pose"], "pose_reference": pose,
                "rotation_neutral": state["rotation"], "rotation_reference": rotation, "flow": motion["flow"],
                "masks": motion["masks"], "occlusion": motion["occlusion"]}

    def forward(self, neutral: torch.Tensor, reference: torch.Tensor) -> dict:
        """neutral I_s [B, 3, S, S], reference I_r [B, 3, S, S], both in [0, 1] ->

        * ``image``: the ISP I_o [B, 3, S, S] in [0, 1];
        * ``kp_neutral`` C_k (Eq. 1), ``kp_reference`` C̄_k (Eq. 2, from the neutral's ``canonical`` c_k) [B, K, 3];
        * ``pose_neutral``, ``pose_reference``: the pose networks' outputs (bin logits, τ, ε);
          ``rotation_neutral`` R, ``rotation_reference`` R̄ [B, 3, 3];
        * ``flow`` [B, D, h, w, 3], ``masks`` [B, K + 1, D, h, w], ``occlusion`` [B, 1, h, w].
        """
        return self.forward_from_state(self.neutral_state(neutral), reference)


def _repeat(state: dict, times: int) -> dict:
    """Every tensor of a (nested) state repeated ``times`` along the batch, each row kept together."""
    if times == 1:
        return state
    return {k: _repeat(v, times) if isinstance(v, dict) else v.repeat_interleave(times, 0) for k, v in state.items()}
