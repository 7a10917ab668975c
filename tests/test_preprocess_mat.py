"""3DMM .mat files of StyleTalk / DreamTalk / PIRenderer and SadTalker, in and out."""

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from stylization.data.video import resample_indices
from stylization.errors import DataError
from stylization.preprocess.mat3dmm import read_3dmm, write_3dmm


def rows(n=40, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 260)).astype(np.float32)


def test_a_styletalk_file_reads_into_our_layout_at_25_fps(tmp_path):
    coeff = rows(60)[:, :257]
    params = np.tile(np.array([256, 256, 0.97, 125.3, 123.0], np.float32), (60, 1))
    savemat(tmp_path / "clip.mat", {"coeff": coeff, "transform_params": params})
    out = read_3dmm(tmp_path / "clip.mat", fps=30)  # StyleTalk's samples are 30 fps: 2 s -> 50 rows
    assert out.shape == (50, 260) and out.dtype == np.float32
    idx = resample_indices(np.arange(60) / 30, 30, 25)
    np.testing.assert_array_equal(out[:, :257], coeff[idx])
    np.testing.assert_allclose(out[:, 257:], params[idx, 2:])
    assert read_3dmm(tmp_path / "clip.mat").shape == (60, 260)  # DreamTalk's: already 25 fps


def test_a_sadtalker_file_keeps_exp_pose_and_crop(tmp_path):
    full = rows(30)
    semantic = np.concatenate([full[:, 80:144], full[:, 224:227], full[:, 254:257], full[:, 257:260]], 1)
    savemat(tmp_path / "sad.mat", {"coeff_3dmm": semantic})
    out = read_3dmm(tmp_path / "sad.mat")
    for cols in (slice(80, 144), slice(224, 227), slice(254, 260)):
        np.testing.assert_allclose(out[:, cols], full[:, cols])
    assert not out[:, :80].any() and not out[:, 144:224].any()


def test_ours_round_trips_at_30_fps_and_every_project_finds_its_keys(tmp_path):
    ours = rows(50)
    write_3dmm(tmp_path / "ours.mat", ours, fps=30)
    mat = loadmat(tmp_path / "ours.mat")
    assert mat["coeff"].shape == (60, 257) and mat["transform_params"].shape == (60, 5)
    assert mat["coeff_3dmm"].shape == (60, 73) and (mat["transform_params"][:, :2] == 256).all()
    back = read_3dmm(tmp_path / "ours.mat", fps=30)
    there = resample_indices(np.arange(50) / 25, 25, 30)
    again = resample_indices(np.arange(60) / 30, 30, 25)
    np.testing.assert_allclose(back, ours[there[again]])
    assert (there[again] == np.arange(50)).mean() > 0.75  # most frames come back as themselves


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_3dmm(tmp_path / "none.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="not a readable .mat"):
        read_3dmm(tmp_path / "junk.mat")
    savemat(tmp_path / "other.mat", {"x": np.zeros(3)})
    with pytest.raises(DataError, match="no 'coeff'"):
        read_3dmm(tmp_path / "other.mat")
    savemat(tmp_path / "wide.mat", {"coeff": np.zeros((4, 80))})
    with pytest.raises(DataError, match="must be \\[T, 257\\]"):
        read_3dmm(tmp_path / "wide.mat")


def test_other_layouts_of_the_same_keys(tmp_path):
    coeff = rows(25)[:, :257]
    params = np.array([256, 256, 0.9, 120.0, 130.0], np.float32)
    savemat(tmp_path / "one_row.mat", {"coeff": coeff, "transform_params": params})  # one alignment for the clip
    out = read_3dmm(tmp_path / "one_row.mat")
    np.testing.assert_allclose(out[:, 257:], np.tile(params[2:], (25, 1)))
    savemat(tmp_path / "wide_3dmm.mat", {"coeff_3dmm": coeff, "transform_params": np.tile(params, (25, 1))})
    np.testing.assert_array_equal(read_3dmm(tmp_path / "wide_3dmm.mat"), out)  # coeff_3dmm holding whole rows
    savemat(tmp_path / "short_params.mat", {"coeff": coeff, "transform_params": np.zeros((24, 5))})
    with pytest.raises(DataError, match="'transform_params' must be \\[T, 5\\]"):
        read_3dmm(tmp_path / "short_params.mat")
    savemat(tmp_path / "cell.mat", {"coeff": np.array([np.zeros(3), "text"], dtype=object)})
    with pytest.raises(DataError, match="'coeff' is not a numeric matrix"):
        read_3dmm(tmp_path / "cell.mat")
    savemat(tmp_path / "empty.mat", {"coeff": np.zeros((0, 257), np.float32)})
    with pytest.raises(DataError, match="no frames|must be"):
        read_3dmm(tmp_path / "empty.mat")
