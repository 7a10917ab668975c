"""The coefficient layout: named parts, the 73-d renderer vector and 27-frame windows."""

import numpy as np
import pytest
import torch

from stylization.data.coeffs import (
    COEFF_SLICES,
    SEMANTIC_DIM,
    WINDOW_FRAMES,
    semantic_vectors,
    semantic_windows,
    split_coeffs,
    validate_coeffs,
    window_indices,
)
from stylization.errors import DataError


def layout_row():
    """One frame whose value at each column is the column number."""
    return np.arange(260, dtype=np.float32)[None]


def test_parts_cover_the_row_without_gaps():
    parts = split_coeffs(layout_row())
    assert [v.shape[-1] for v in parts.values()] == [80, 64, 80, 3, 27, 3, 3]
    assert parts["exp"][0, 0] == 80 and parts["angle"][0, 0] == 224 and parts["trans"][0, 0] == 254
    assert parts["crop"][0].tolist() == [257, 258, 259]
    assert "crop" not in split_coeffs(layout_row()[:, :257])


def test_semantic_vector_is_exp_angle_trans_crop():
    sem = semantic_vectors(layout_row())
    expected = list(range(80, 144)) + [224, 225, 226, 254, 255, 256, 257, 258, 259]
    assert sem.shape == (1, SEMANTIC_DIM) and sem[0].tolist() == expected
    assert torch.equal(semantic_vectors(torch.from_numpy(layout_row())), torch.tensor([expected], dtype=torch.float32))


def test_windows_are_clamped_at_both_ends():
    idx = window_indices([0, 5, 9], n_frames=10)
    assert idx.shape == (3, WINDOW_FRAMES)
    assert idx[0, :14].tolist() == [0] * 14 and idx[0, 14] == 1
    assert idx[2, 13] == 9 and idx[2, -1] == 9 and idx[1, 0] == 0


def test_semantic_windows_centre_column_is_the_frame():
    coeffs = np.random.default_rng(0).normal(size=(40, 260)).astype(np.float32)
    win = semantic_windows(coeffs)
    assert win.shape == (40, 73, 27)
    np.testing.assert_array_equal(win[:, :, 13], semantic_vectors(coeffs))
    np.testing.assert_array_equal(win[20, :, 0], semantic_vectors(coeffs)[7])
    t = semantic_windows(torch.from_numpy(coeffs), centers=[3])
    np.testing.assert_array_equal(t.numpy()[0], win[3])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5, 259)), "shape"),
    (np.zeros((5,)), "shape"),
    (np.full((5, 260), np.nan), "NaN"),
])
def test_validation_names_the_source(bad, message):
    with pytest.raises(DataError, match=message) as info:
        validate_coeffs(bad, "clip_7/coeffs.npy")
    assert "clip_7/coeffs.npy" in str(info.value)


def test_validation_checks_frame_count():
    with pytest.raises(DataError, match="expected 6 frames"):
        validate_coeffs(np.zeros((5, 260)), "x", n_frames=6)
    validate_coeffs(np.zeros((5, 260)), "x", n_frames=5)
    assert COEFF_SLICES["gamma"] == slice(227, 254)
