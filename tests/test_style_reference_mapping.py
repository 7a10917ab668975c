"""The Style Mapping (stylization/style_reference/mapping.py) and its stage=style_ref_mapping: shapes and
ranges of every part, Eqs. 1, 2, 8 and 9 against hand computations, Hopenet's bins, the neutral state
reused for many references, the equivariance term's direction, and a short real training run that
validates and reloads."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import compose_train
from hydra.utils import instantiate

from stylization.data.face_model import rotation_matrix
from stylization.engine.distributed import init_distributed
from stylization.engine.run import build_stage
from stylization.engine.trainer import Trainer
from stylization.errors import ConfigError
from stylization.runs import load_run
from stylization.style_reference.gan import lsgan_d_loss, lsgan_g_loss
from stylization.style_reference.mapping import (
    BINS, angle_bins, angles_from_logits, identity_grid, rotation_from_angles, transformed_keypoints, warp_volume)
from stylization.style_reference.mapping_stage import StyleMappingStage, keypoint_prior, pairs

# A 32 px Style Mapping (the tiny corpus's frames) from the real YAML: heatmaps [4, 4, 16, 16], appearance
# volume [4, 4, 8, 8].
M = "model.mapping"
TINY = ["model.image_size=32", "model.num_kp=4", "model.depth=4", "model.feature_channels=4",
        f"{M}.keypoint_extractor.base_channels=8", f"{M}.keypoint_extractor.max_channels=16",
        f"{M}.keypoint_extractor.levels=2", f"{M}.keypoint_extractor.volume_channels=8",
        f"{M}.pose_net.stem_channels=8", f"{M}.pose_net.channels=[16,32]", f"{M}.pose_net.blocks=[1,1]",
        f"{M}.warping.compress_channels=2", f"{M}.warping.base_channels=8", f"{M}.warping.max_channels=16",
        f"{M}.warping.levels=1", f"{M}.generator.base_channels=8", f"{M}.generator.max_channels=16",
        f"{M}.generator.volume_blocks=1", f"{M}.generator.residual_blocks=1",
        "model.discriminator.base_channels=8", "model.discriminator.max_channels=16"]
K, S = 4, 32


def tiny_config(*extra):
    return compose_train(["stage=style_ref_mapping", "model=style_ref_mapping_small", "data.root=/nonexistent",
                          *TINY, *extra])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return instantiate(tiny_config().model.mapping).eval()


def random_rotation(n: int) -> torch.Tensor:
    return rotation_matrix((torch.rand(n, 3) - 0.5) * 2)


def test_every_part_has_its_shapes_and_ranges(model):
    torch.manual_seed(1)
    neutral, reference = torch.rand(2, 3, S, S), torch.rand(2, 3, S, S)
    with torch.no_grad():
        out = model(neutral, reference)
    canonical = out["canonical"]
    assert canonical.shape == (2, K, 3) and canonical.abs().max() <= 1
    assert out["kp_neutral"].shape == out["kp_reference"].shape == (2, K, 3)
    for pose in (out["pose_neutral"], out["pose_reference"]):
        assert {k: tuple(v.shape) for k, v in pose.items()} == {
            "yaw": (2, BINS), "pitch": (2, BINS), "roll": (2, BINS), "translation": (2, 3), "expression": (2, K, 3)}
    for r in (out["rotation_neutral"], out["rotation_reference"]):
        assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3).expand(2, 3, 3), atol=1e-5)
    assert out["image"].shape == (2, 3, S, S) and 0 <= out["image"].min() and out["image"].max() <= 1
    assert out["flow"].shape == (2, 4, 8, 8, 3)  # depth 4, the 8x8 appearance volume
    masks = out["masks"]
    assert masks.shape == (2, K + 1, 4, 8, 8) and 0 <= masks.min() and masks.max() <= 1
    assert torch.allclose(masks.sum(1), torch.ones(2, 4, 8, 8), atol=1e-5)  # Eq. 9
    assert out["occlusion"].shape == (2, 1, 8, 8) and 0 <= out["occlusion"].min() and out["occlusion"].max() <= 1
    assert model.generator.encode(neutral).shape == (2, 4, 4, 8, 8)


def test_eq1_is_the_hand_computation():
    """C_k = R·c_k + τ + ε_k per keypoint (Eq. 1 written for column vectors; c_k · Rᵀ for rows)."""
    torch.manual_seed(2)
    c, rot, tau, eps = torch.rand(2, K, 3) * 2 - 1, random_rotation(2), torch.rand(2, 3), torch.rand(2, K, 3) * 0.1
    got = transformed_keypoints(c, rot, tau, eps)
    for b in range(2):
        for k in range(K):
            expected = [sum(rot[b, i, j] * c[b, k, j] for j in range(3)) + tau[b, i] + eps[b, k, i] for i in range(3)]
            assert torch.allclose(got[b, k], torch.stack(expected), atol=1e-6)


def test_rotations_are_the_face_models_in_the_volumes_axes():
    """rotation_from_angles(yaw, pitch, roll) = S·rotation_matrix(pitch, yaw, roll)·S, S = diag(1, -1, -1): yaw
    +90° turns the volume's +x (image right) to +z (away from the camera, the face model's -z)."""
    yaw, pitch, roll = torch.tensor([math.pi / 2, 0.3]), torch.tensor([0.0, -0.2]), torch.tensor([0.0, 0.1])
    rot = rotation_from_angles(yaw, pitch, roll)
    assert torch.allclose(rot[0] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6)
    s = torch.diag(torch.tensor([1.0, -1, -1]))
    assert torch.allclose(rot[1], s @ rotation_matrix(torch.tensor([-0.2, 0.3, 0.1])) @ s, atol=1e-6)


def test_eq8_maps_each_reference_keypoint_onto_its_neutral_keypoint(model):
    """At a voxel p̄, keypoint k's motion is R R̄ᵀ (p̄ − C̄_k) + C_k: C̄_k itself goes to C_k; the background
    stays at p̄."""
    torch.manual_seed(3)
    grid = identity_grid(4, 8, 8, like=torch.zeros(()))
    kp_reference = torch.stack([grid[1, 2, 3], grid[3, 7, 0], grid[0, 0, 0], grid[2, 5, 6]])[None]
    kp_neutral, rot_n, rot_r = torch.rand(1, K, 3) * 2 - 1, random_rotation(1), random_rotation(1)
    motion = model.warping.sparse_motion((4, 8, 8), kp_neutral, kp_reference, rot_n, rot_r)
    assert motion.shape == (1, K + 1, 4, 8, 8, 3) and torch.equal(motion[0, 0], grid)
    for k, voxel in enumerate([(1, 2, 3), (3, 7, 0), (0, 0, 0), (2, 5, 6)]):
        assert torch.allclose(motion[0, k + 1][voxel], kp_neutral[0, k], atol=1e-5)
    p = grid[2, 4, 1]
    expected = rot_n[0] @ rot_r[0].T @ (p - kp_reference[0, 1]) + kp_neutral[0, 1]
    assert torch.allclose(motion[0, 2][2, 4, 1], expected, atol=1e-5)


def test_eq8_with_the_neutral_pose_is_the_identity(model):
    """R̄ = R, τ̄ = τ, ε̄ = ε: every sparse motion is the identity grid, so is the combined flow, and the warped
    volume is the volume; the whole model mapping an image onto itself warps by the identity too."""
    torch.manual_seed(4)
    volume, kp, rot = torch.randn(2, 4, 4, 8, 8), torch.rand(2, K, 3) * 2 - 1, random_rotation(2)
    with torch.no_grad():
        out = model.warping(volume, kp, kp, rot, rot)
    grid = identity_grid(4, 8, 8, like=volume)
    assert torch.allclose(out["sparse_motion"], grid.expand(2, K + 1, *grid.shape), atol=1e-5)
    assert torch.allclose(out["flow"], grid.expand(2, *grid.shape), atol=1e-5)
    assert torch.allclose(warp_volume(volume, out["flow"]), volume, atol=1e-4)
    image = torch.rand(2, 3, S, S)
    with torch.no_grad():
        self_mapped = model(image, image)
    assert torch.allclose(self_mapped["kp_reference"], self_mapped["kp_neutral"], atol=1e-5)
    assert torch.allclose(self_mapped["flow"], grid.expand(2, *grid.shape), atol=1e-5)


def test_angles_from_peaked_logits_are_the_bin_centres():
    centres = torch.deg2rad(-97.5 + 3.0 * torch.arange(BINS))
    logits = torch.full((BINS, BINS), -1e4).fill_diagonal_(0.0)
    assert torch.allclose(angles_from_logits(logits), centres, atol=1e-6)
    assert torch.equal(angle_bins(centres), torch.arange(BINS))
    assert angle_bins(torch.deg2rad(torch.tensor([-120.0, 120.0]))).tolist() == [0, BINS - 1]
    assert torch.allclose(angles_from_logits(torch.zeros(BINS)), torch.tensor(0.0), atol=1e-6)  # uniform: the middle


def test_one_neutral_state_serves_many_references(model):
    """forward_from_state(neutral_state(x), r) is forward(x, r); a state of B images serves N = 3B references."""
    torch.manual_seed(5)
    neutral, reference = torch.rand(2, 3, S, S), torch.rand(6, 3, S, S)
    with torch.no_grad():
        state = model.neutral_state(neutral)
        shared = model.forward_from_state(state, reference)
        direct = model(neutral.repeat_interleave(3, 0), reference)
        same = model.forward_from_state(model.neutral_state(neutral[:1]), reference[:1])
        alone = model(neutral[:1], reference[:1])
    for key in ("image", "kp_neutral", "kp_reference", "flow", "masks", "occlusion"):
        assert torch.allclose(shared[key], direct[key], atol=1e-5), key
        assert torch.equal(same[key], alone[key]), key
    with pytest.raises(ValueError, match="multiple"):
        model.forward_from_state(state, reference[:3])


def test_lsgan_losses():
    real = [torch.ones(2, 1, 4, 4), torch.full((2, 1, 2, 2), 0.5)]
    fake = [torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 2, 2)]
    assert float(lsgan_d_loss(real, fake)) == pytest.approx((0 + 0 + 0.25 + 1) / 2)
    assert float(lsgan_g_loss(fake)) == pytest.approx((1 + 0) / 2)
    maps = instantiate(tiny_config().model.discriminator)(torch.rand(2, 3, S, S))
    assert [m.shape[-1] for m in maps] == [6, 2]  # 32 px: 16, 8, then two 4x4 convolutions; the 16 px copy: 2


def test_keypoint_prior_by_hand():
    kp = torch.tensor([[[0.0, 0.0, 0.3], [0.2, 0.0, 0.3], [1.0, 1.0, 0.3]]])  # only the first pair is close
    assert float(keypoint_prior(kp, 0.1, 0.33)) == pytest.approx(2 * (0.1 - 0.04) + 0.03, abs=1e-6)


def test_equivariance_maps_moved_keypoints_back():
    """For an exactly equivariant detector (a blob's centroid) the term vanishes although the affine draw
    moves the keypoint: the mapping back has the right direction."""
    grid = identity_grid(1, S, S, like=torch.zeros(()))[0, ..., :2]  # [S, S, 2] (x, y)
    centre = torch.tensor([[0.2, -0.1], [-0.15, 0.1]])
    blob = torch.exp(-((grid[None] - centre[:, None, None]) ** 2).sum(-1) / (2 * 0.1 ** 2))  # [2, S, S]
    images = blob[:, None].expand(2, 3, S, S).contiguous()

    def centroid(image):
        w = image[:, 0].flatten(1)
        xy = (w @ grid.view(-1, 2)) / w.sum(1, keepdim=True)
        return torch.cat([xy, torch.zeros(len(xy), 1)], -1)[:, None]  # [B, 1, 3]

    detector = SimpleNamespace(image_keypoints=lambda image: {"keypoints": centroid(image)})
    stage = StyleMappingStage(tiny_config())
    ctx = SimpleNamespace(generator=torch.Generator().manual_seed(0), autocast=contextlib.nullcontext)
    loss = stage.equivariance_loss(detector, images, centroid(images), ctx)
    assert float(loss) < 2e-3
    theta = torch.tensor([[[math.cos(0.15), -math.sin(0.15), 0.1], [math.sin(0.15), math.cos(0.15), -0.05]]] * 2)
    moved = F.grid_sample(images, F.affine_grid(theta, [2, 3, S, S], align_corners=True), align_corners=True)
    assert (centroid(moved) - centroid(images)).abs().max() > 0.05  # moving the image moves its keypoint


def test_perceptual_term_compares_images_in_vggs_range(monkeypatch):
    """stage.loss.perceptual > 0 builds VGG-19 (here its first two blocks, random; ImageNet in real runs):
    zero for equal images, positive otherwise, over two scales."""
    from torchvision.models.vgg import cfgs, make_layers

    monkeypatch.setattr("stylization.style_reference.mapping_stage.vgg19_features",
                        lambda weights: make_layers(cfgs["E"][:6]))
    cfg = tiny_config("stage.loss.perceptual=1.0", "stage.perceptual_scales=2", "stage.perceptual_weights=null")
    cfg.stage.perceptual_layers = {"relu1_1": 1.0, "relu2_1": 1.0}
    stage = StyleMappingStage(cfg)
    torch.manual_seed(6)
    a, b = torch.rand(2, 3, S, S), torch.rand(2, 3, S, S)
    assert float(stage.perceptual_loss(a, a)) == 0 and float(stage.perceptual_loss(a, b)) > 0


@pytest.mark.parametrize("override, key", [
    ("stage.pairs=0", "stage.pairs"),
    ("stage.loss.l1=0", "stage.loss.l1 or stage.loss.perceptual"),
    ("+stage.loss.cycle=1.0", "stage.loss"),
    ("stage.equivariance_translation=-0.1", "stage.equivariance_translation"),
    ("model.image_size=36", "model.image_size"),
    ("stage.loss.perceptual=1.0,stage.perceptual_scales=3", "stage.perceptual_scales"),
])
def test_bad_options_fail_naming_their_key(override, key):
    """The stage checks its options before building anything or reading data (no corpus here)."""
    with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
        StyleMappingStage(tiny_config(*override.split(",")))


def test_the_stage_trains_validates_and_reloads(tiny_corpus, tmp_path, caplog):
    """Three real training steps on the tiny corpus (every term but the perceptual one, the discriminator
    too), a validation with the copy baseline, the image grid, and a checkpoint that rebuilds the EMA model."""
    trainer_opts = {"max_steps": 3, "max_minutes": "null", "num_workers": 0, "log_every_steps": 1,
                    "val_every_steps": 3, "val_batches": 1, "image_every_steps": 3, "checkpoint_every_steps": 3,
                    "keep_checkpoints": 0, "device": "cpu", "ema_decay": 0.5}
    cfg = compose_train(["stage=style_ref_mapping", "model=style_ref_mapping_small", f"data.root={tiny_corpus}",
                         f"trainer.run_dir={tmp_path}", *TINY, "stage.batch_size=2", "stage.pairs=2",
                         "stage.items_per_clip=1"] + [f"trainer.{k}={v}" for k, v in trainer_opts.items()])
    stage, logs = build_stage(cfg), []
    original = stage.training_step
    stage.training_step = lambda batch, ctx: logs.append(original(batch, ctx)) or logs[-1]
    os.makedirs(cfg.trainer.run_dir, exist_ok=True)
    trainer = Trainer(cfg, stage, init_distributed("cpu"))
    before = {k: {n: p.clone() for n, p in m.named_parameters()} for k, m in trainer.raw_modules.items()}
    with caplog.at_level(logging.INFO, logger="stylization.train"):
        assert trainer.fit() == 3
    assert len(logs) == 3
    terms = {"loss", "l1", "gan", "equivariance", "keypoint_prior", "pose_bins", "pose_angles", "deformation", "d_loss"}
    assert all(terms <= set(row) and all(math.isfinite(float(v)) for v in row.values()) for row in logs)
    assert "perceptual" not in logs[0]
    for name, module in trainer.raw_modules.items():  # both optimisers stepped
        assert any(not torch.equal(before[name][n], p) for n, p in module.named_parameters()), name
    val = [r.getMessage() for r in caplog.records if " val " in r.getMessage()]
    assert len(val) == 1 and all(f"{k}=" in val[0] for k in ("psnr", "copy_psnr", "pose_error_deg"))

    batch = next(iter(torch.utils.data.DataLoader(trainer.val_set, 2)))
    scores = trainer.stage.validation_step(batch, trainer.ctx)
    sources, drivings, _, _ = pairs(batch)
    assert drivings.shape == (4, 3, S, S) and 0 <= drivings.min() and drivings.max() <= 1
    assert float(scores["copy_l1"]) == pytest.approx(float((sources.repeat_interleave(2, 0) - drivings).abs().mean()))
    assert all(math.isfinite(float(v)) for v in scores.values())
    (grid,) = trainer.stage.visualize(batch, trainer.ctx).values()
    assert grid.shape == (4, 3, S, 3 * S) and 0 <= grid.min() and grid.max() <= 1

    run = load_run(tmp_path)
    assert (run.step, run.stage, run.module_names) == (3, "style_ref_mapping", ["discriminator", "mapping"])
    reloaded, ema = run.module("mapping", run.config.model.mapping), trainer.ema["mapping"].shadow
    with torch.no_grad():
        assert torch.equal(reloaded(sources, drivings[::2])["image"], ema(sources, drivings[::2])["image"])
