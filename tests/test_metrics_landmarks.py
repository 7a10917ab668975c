"""M-LMD / F-LMD (stylization/metrics/landmarks.py) against distances computed by hand in numpy."""

import numpy as np
import pytest
import torch

from stylization.data.face_model import stand_in_face_model
from stylization.metrics.landmarks import expression_landmark_errors, f_lmd, landmark_distance, m_lmd

MOUTH_POINTS = list(range(48, 68))  # the 68-point scheme's outer (48-59) and inner (60-67) lips


def by_hand(pred: np.ndarray, target: np.ndarray, points=range(68)) -> float:
    """Mean over every frame and the chosen points of the Euclidean distance, one pair at a time."""
    distances = []
    for frame_pred, frame_target in zip(pred.reshape(-1, 68, 2), target.reshape(-1, 68, 2)):
        for i in points:
            dx, dy = frame_pred[i] - frame_target[i]
            distances.append(np.sqrt(dx * dx + dy * dy))
    return float(np.mean(distances))


def test_distances_match_a_hand_computation():
    rng = np.random.default_rng(0)
    pred, target = rng.uniform(0, 64, (2, 3, 68, 2)), rng.uniform(0, 64, (2, 3, 68, 2))  # [B, T, 68, 2] px
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    assert f_lmd(p, t).item() == pytest.approx(by_hand(pred, target), rel=1e-12)
    assert m_lmd(p, t).item() == pytest.approx(by_hand(pred, target, MOUTH_POINTS), rel=1e-12)
    assert landmark_distance(p, t, [0, 30]).item() == pytest.approx(by_hand(pred, target, [0, 30]), rel=1e-12)


def test_mouth_distance_sees_only_the_mouth():
    target = np.random.default_rng(1).uniform(0, 64, (4, 68, 2)).astype(np.float32)
    pred = target.copy()
    pred[:, MOUTH_POINTS] += np.array([3.0, 4.0], np.float32)  # every mouth point 5 px away
    pred[:, :17] += np.array([0.0, 100.0], np.float32)  # the jaw line far away: F-LMD only
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    assert m_lmd(p, t).item() == pytest.approx(5.0, rel=1e-6)
    assert f_lmd(p, t).item() == pytest.approx((20 * 5.0 + 17 * 100.0) / 68, rel=1e-6)
    assert f_lmd(t, t).item() == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        f_lmd(p, t[:2])


def test_expression_errors_judge_the_expression_under_the_true_pose():
    fm = stand_in_face_model()
    rng = np.random.default_rng(2)
    coeffs = np.zeros((5, 260), np.float32)  # [T, 260]: identity, expression and pose of 5 frames
    coeffs[:, 0:80] = 0.3 * rng.normal(size=80)
    coeffs[:, 80:144] = 0.3 * rng.normal(size=(5, 64))
    coeffs[:, 224:227] = 0.1 * rng.normal(size=(5, 3))
    coeffs[:, 257] = 1.0
    exp_pred = coeffs[:, 80:144] + 0.5 * rng.normal(size=(5, 64)).astype(np.float32)
    truth = torch.from_numpy(coeffs)
    errors = expression_landmark_errors(fm, truth, torch.from_numpy(exp_pred), image_size=128.0)

    predicted = coeffs.copy()
    predicted[:, 80:144] = exp_pred
    lm_pred = fm.landmarks_from_coeffs(torch.from_numpy(predicted), 128.0).numpy()
    lm_true = fm.landmarks_from_coeffs(truth, 128.0).numpy()
    assert errors["m_lmd"].item() == pytest.approx(by_hand(lm_pred, lm_true, MOUTH_POINTS), rel=1e-5)
    assert errors["f_lmd"].item() == pytest.approx(by_hand(lm_pred, lm_true), rel=1e-5)
    assert errors["m_lmd"].item() > 0
    assert torch.equal(truth, torch.from_numpy(coeffs))  # the ground truth is not modified
    same = expression_landmark_errors(fm, truth, truth[:, 80:144], image_size=128.0)
    assert same["m_lmd"].item() == same["f_lmd"].item() == 0.0
