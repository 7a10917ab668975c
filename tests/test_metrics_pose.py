"""Head-pose metrics (stylization.metrics.pose) against values worked out by hand."""

import numpy as np
import pytest

from stylization.metrics.pose import diversity_deg, frame_energy, motion_deg, speed_energy_correlation


def test_diversity_and_motion_in_degrees():
    t = np.arange(250) / 25
    poses = np.zeros((250, 6))
    poses[:, 1] = np.radians(3.0) * np.sin(2 * np.pi * 0.5 * t)  # yaw, amplitude 3 degrees, 5 whole periods
    assert motion_deg(poses) == pytest.approx(3.0 / np.sqrt(2) / 3, rel=1e-3)  # one of three angles moves
    same = np.stack([poses, poses])
    assert diversity_deg(same) == 0.0
    shifted = np.stack([poses, poses + np.radians([2.0, 0, 0, 0, 0, 0])])  # pitch 2 degrees apart
    assert diversity_deg(shifted) == pytest.approx(1.0 / 3)  # std of {0, 2} is 1, averaged over 3 angles
    with pytest.raises(ValueError):
        diversity_deg(poses[None])


def test_speed_follows_energy():
    rng = np.random.default_rng(0)
    loud = rng.uniform(0.05, 1.0, 100)  # per-frame loudness
    wav = np.concatenate([a * np.sign(rng.standard_normal(640)) for a in loud])  # RMS of frame i is loud[i]
    np.testing.assert_allclose(frame_energy(wav, 100), loud)
    yaw = np.concatenate([[0.0], np.cumsum(np.radians(loud[1:]))])  # speed (degrees per frame) = loudness
    poses = np.zeros((100, 6))
    poses[:, 1] = yaw
    assert speed_energy_correlation(poses, wav) == pytest.approx(1.0)
    poses[:, 1] = np.concatenate([[0.0], np.cumsum(np.radians(1.0 - loud[1:]))])
    assert speed_energy_correlation(poses, wav) == pytest.approx(-1.0)
    assert np.isnan(speed_energy_correlation(np.zeros((100, 6)), wav))  # a still head has no rhythm
