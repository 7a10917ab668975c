"""The reference-frame method's motion side: the 3D landmark motion representation, the motion generator
and its stage, the manifold projection, the key motion templates and retrieval, and the style transfer
losses and fine-tuning (stylization/data/keypoint_motion.py, stylization/style_reference/{motion,
templates,transfer}.py, motion_stage.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import compose_train

from stylization.constants import COEFF_DIM, COEFF_SLICES
from stylization.data.face_model import stand_in_face_model
from stylization.data.keypoint_motion import KeypointMotionDataset, Motion, compose
from stylization.engine.checkpoint import FORMAT, atomic_save
from stylization.engine.run import run_training
from stylization.errors import CheckpointError
from stylization.runs import load_style_ref_motion
from stylization.style_reference.motion import (MOTION_DIM, FeatureBank, MotionGenerator, lle_weights,
                                                manifold_projection)
from stylization.style_reference.templates import (TEMPLATES, match_templates, mouth_descriptors,
                                                   retrieve_style_references)
from stylization.style_reference.transfer import (StyleTransferNetwork, TransferOptions, constraint_loss,
                                                  gradient_regulariser, transfer)

FM = stand_in_face_model()


def random_coeffs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.zeros((n, COEFF_DIM), np.float32)
    c[:, COEFF_SLICES["id"]] = rng.normal(0, 0.5, 80)
    c[:, COEFF_SLICES["exp"]] = rng.normal(0, 0.3, (n, 64))
    c[:, COEFF_SLICES["angle"]] = rng.normal(0, 0.1, (n, 3))
    c[:, COEFF_SLICES["trans"]] = rng.normal(0, 0.05, (n, 3)) + np.array([0, -0.1, -3])
    return c


def test_motion_of_a_clip_composes_back_to_its_posed_keypoints():
    c = torch.from_numpy(random_coeffs(12))
    m = Motion.of(FM, c)
    assert m.face.shape == (12, 68, 3) and m.pose.shape == (12, 6)
    assert torch.allclose(m.face.mean(0), torch.zeros(68, 3), atol=1e-5) and torch.allclose(m.pose.mean(0), torch.zeros(6), atol=1e-6)
    posed = FM.posed_keypoints(c[:, COEFF_SLICES["id"]], c[:, COEFF_SLICES["exp"]], c[:, COEFF_SLICES["angle"]],
                               c[:, COEFF_SLICES["trans"]])
    assert torch.allclose(m.keypoints(FM), posed, atol=1e-5)
    # no motion: the base face at the base pose
    still = compose(FM, m.base_face, m.base_pose, torch.zeros(3, 68, 3), torch.zeros(3, 6))
    assert torch.allclose(still[0], still[2]) and not torch.allclose(still[0], posed[0])


def test_dataset_items_and_scale(tiny_corpus):
    ds = KeypointMotionDataset(tiny_corpus, FM, split="train", window_frames=8)
    item = ds[0]
    assert item["mel"].shape == (8, 1, 80, 16) and item["face_motion"].shape == (8, 68, 3)
    assert item["pose_motion"].shape == (8, 6) and item["base_face"].shape == (68, 3)
    rec = next(r for r in ds.clips if r.id == item["clip_id"])
    whole = Motion.of(FM, ds.corpus.load_coeffs(rec))
    assert torch.allclose(item["face_motion"], whole.face[item["start"]:item["start"] + 8], atol=1e-5)
    face, pose = ds.motion_scale()
    assert face.shape == (68, 3) and pose.shape == (6,) and (face >= 0).all()


def test_generator_shapes_and_units():
    g = MotionGenerator(encoder_channels=4, feature_dim=8, hidden=8, layers=1).eval()
    face_scale, pose_scale = torch.rand(68, 3) + 0.5, torch.rand(6) + 0.5
    g.set_motion_scale(face_scale, pose_scale)
    face, pose = g(torch.randn(2, 5, 1, 80, 16))
    assert face.shape == (2, 5, 68, 3) and pose.shape == (2, 5, 6)
    phi = g.normalise(face, pose)
    assert phi.shape == (2, 5, MOTION_DIM)
    raw = g.head(g.lstm(g.encoder(torch.zeros(1, 1, 1, 80, 16)))[0])
    f0, p0 = g.decode(g.encoder(torch.zeros(1, 1, 1, 80, 16)))
    assert torch.allclose(g.normalise(f0, p0), raw, atol=1e-5)  # normalise undoes the output scales


def test_lle_weights_reconstruct_a_point_in_the_neighbours_span():
    b = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    x = torch.tensor([[0.2, 0.3]], dtype=torch.float64)  # = 0.5 b0 + 0.2 b1 + 0.3 b2
    w = lle_weights(x, b, reg=1e-9)
    assert torch.allclose(w, torch.tensor([[0.5, 0.2, 0.3]], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(1, dtype=torch.float64))


def test_manifold_projection():
    bank = torch.randn(50, 6)
    x = torch.randn(7, 6)
    assert torch.allclose(manifold_projection(x, bank, k=5, weight=0.0), x)
    on = manifold_projection(bank[:3], bank, k=4, weight=1.0)  # points of the bank project onto themselves
    assert torch.allclose(on, bank[:3], atol=0.02)  # exactly, but for the Gram regulariser
    far = manifold_projection(x * 10, bank, k=5, weight=1.0)
    nearest_distance = lambda y: torch.cdist(y, bank).min(1).values  # noqa: E731
    assert (nearest_distance(far) < nearest_distance(x * 10)).all()  # pulled towards the bank's manifold
    half = FeatureBank(bank, k=5, weight=0.5)(x[None])[0]
    assert torch.allclose(half, 0.5 * x + 0.5 * manifold_projection(x, bank, 5, 1.0), atol=1e-5)


def _mouth(opening: float, width: float) -> np.ndarray:
    """Landmarks with face width 10 (points 0 and 16), mouth corners ``width`` apart, inner lips ``opening`` apart."""
    p = np.zeros((68, 2))
    p[0], p[16] = (0, 0), (10, 0)
    p[48], p[54] = (5 - width / 2, 5), (5 + width / 2, 5)
    for a, b in ((61, 67), (62, 66), (63, 65)):
        p[a], p[b] = (5, 5 - opening / 2), (5, 5 + opening / 2)
    return p


def test_mouth_descriptors_by_hand():
    d = mouth_descriptors(np.stack([_mouth(1.0, 4.0), _mouth(0.0, 5.0)]))
    assert np.allclose(d, [[0.1, 0.4], [0.0, 0.5]])


def test_retrieval_picks_distinct_frames_matching_the_templates():
    rng = np.random.default_rng(0)
    frames = [_mouth(o, w) for o, w in zip(rng.uniform(0, 2, 200), rng.uniform(3, 5, 200))]
    frames[17] = _mouth(3.0, 4.0)  # by far the widest open: the "o" template's frame
    d = mouth_descriptors(np.stack(frames))
    chosen = retrieve_style_references(d)
    assert len(chosen) == len(TEMPLATES) == len(set(chosen.tolist()))
    o = TEMPLATES.index("o")
    assert d[chosen[o], 0] >= np.quantile(d[:, 0], 0.9)
    closed = [TEMPLATES.index("none"), TEMPLATES.index("m")]
    assert all(d[chosen[i], 0] <= np.quantile(d[:, 0], 0.2) for i in closed)
    assert d[chosen[TEMPLATES.index("m")], 1] > d[chosen[TEMPLATES.index("none")], 1]  # "m": the wider closed mouth
    match = match_templates(d[chosen], d[chosen], d.std(0))
    assert match.tolist() == [0, 1, 2, 3]


def test_transfer_losses_by_hand():
    f = StyleTransferNetwork(in_dim=3, widths=(2,))  # one linear layer: f(x) = W x + b
    w = f.net[0].weight.detach()
    a, b = torch.randn(5, 3), torch.randn(4, 3)
    expect = ((a.mean(0) - b.mean(0)) @ w.T).pow(2).sum()
    assert torch.allclose(constraint_loss(f, a, b), expect, atol=1e-6)
    d = torch.tensor([0.6, 0.8])
    # the gradient of d . (W x) is W^T d whatever x: the penalty is (|W^T d| - 1)^2
    expect_r = ((w.T @ d).norm() - 1) ** 2
    assert torch.allclose(gradient_regulariser(f, a[:4], b, d, torch.rand(4, 1)), expect_r, atol=1e-6)


OPTIONS = dict(steps=40, lr=3e-3, critic_lr=1e-3, critic_steps=2, windows=2, window_frames=6, reference_frames=32,
               anchor=0.0, sc=1.0, r=1.0, critic_penalty=10.0, seed=0)


def test_transfer_moves_the_motion_towards_the_references():
    torch.manual_seed(0)
    g = MotionGenerator(encoder_channels=4, feature_dim=8, hidden=8, layers=1).eval()
    mels = [torch.randn(20, 1, 80, 16)]
    with torch.no_grad():
        before = g.normalise(*g(mels[0][None])).mean((0, 1))
    face, pose = torch.full((64, 68, 3), 2.0), torch.full((64, 6), 2.0)  # references far off in every coordinate
    target = g.normalise(face, pose).mean(0)
    tuned, logs = transfer(g, face, pose, mels, TransferOptions(**OPTIONS))
    with torch.no_grad():
        after = tuned.normalise(*tuned(mels[0][None])).mean((0, 1))
    assert (after - target).norm() < 0.5 * (before - target).norm()
    assert len(logs) == OPTIONS["steps"] and all(math.isfinite(r["l_sc"]) for r in logs)
    with torch.no_grad():  # the input generator is left as it was
        assert torch.allclose(g.normalise(*g(mels[0][None])).mean((0, 1)), before)


def test_stage_trains_validates_and_reloads(tiny_corpus, tmp_path):
    run_dir = tmp_path / "motion"
    cfg = compose_train(["stage=style_ref_motion", "model=style_ref_motion_small", f"data.root={tiny_corpus}",
                         "stage.window_frames=8", "stage.batch_size=2", "model.encoder_channels=4", "model.feature_dim=8",
                         "model.hidden=8", f"trainer.run_dir={run_dir}", "trainer.max_steps=3", "trainer.max_minutes=null",
                         "trainer.num_workers=0", "trainer.val_every_steps=3", "trainer.val_batches=1",
                         "trainer.checkpoint_every_steps=3", "trainer.device=cpu", "trainer.log_every_steps=1"])
    run_training(cfg)
    log = (run_dir / "train.log").read_text()
    assert "still_m_lmd=" in log and "m_lmd=" in log
    model = load_style_ref_motion(run_dir)
    assert model.untransferred is None and model.bank is None
    assert not torch.equal(model.generator.face_scale, torch.ones(68, 3))  # the scale the run measured was saved
    face, pose = model(torch.randn(1, 4, 1, 80, 16))
    assert face.shape == (1, 4, 68, 3) and torch.isfinite(face).all() and torch.isfinite(pose).all()

    path = tmp_path / "other" / "checkpoints" / "step_000000001.pt"  # a run of another stage is refused by name
    atomic_save({"format": FORMAT, "stage": "syncnet", "step": 1, "epoch": 0, "batch_in_epoch": 0,
                 "config": {"model": {}}, "modules": {}, "ema": {}, "optimizers": {}}, path)
    with pytest.raises(CheckpointError, match="not a 'style_ref_motion'"):
        load_style_ref_motion(tmp_path / "other")


def test_style_strength_blends_the_transferred_and_untransferred_motion():
    from stylization.style_reference.motion import StyleRefMotion

    torch.manual_seed(0)
    a, b = (MotionGenerator(encoder_channels=4, feature_dim=8, hidden=8, layers=1).eval() for _ in range(2))
    mel = torch.randn(1, 6, 1, 80, 16)
    with torch.no_grad():
        (fa, pa), (fb, pb) = a(mel), b(mel)
    for g in (0.0, 0.5, 1.0):
        face, pose = StyleRefMotion(a, b, strength=g)(mel)
        assert torch.allclose(face, g * fa + (1 - g) * fb, atol=1e-6) and torch.allclose(pose, g * pa + (1 - g) * pb, atol=1e-6)
    bank = FeatureBank(torch.randn(30, 8), k=4, weight=1.0)
    projected = StyleRefMotion(a, bank=bank)(mel)[0]
    with torch.no_grad():
        assert torch.allclose(projected, a.decode(bank(a.encoder(mel)))[0])
