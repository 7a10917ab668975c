"""Face models: the BFM loader against an independent Deep3DFaceRecon-style computation,
and the stand-in model's meaningful components."""

import numpy as np
import pytest
import torch
from scipy.io import savemat

from stylization.data.datasets import eye_openness
from stylization.data.face_model import (
    EXPRESSION_COMPONENTS,
    FaceModel,
    build_face_model,
    lip_opening,
    load_bfm,
    rotation_matrix,
    stand_in_face_model,
)
from stylization.errors import DataError


def write_fake_bfm(path, n_vertices=120, seed=0):
    """A BFM_model_front.mat with Deep3DFaceRecon's fields and a handful of vertices."""
    rng = np.random.default_rng(seed)
    keypoints = rng.choice(n_vertices, 68, replace=False) + 1  # 1-based, as in the file
    savemat(path, {
        "meanshape": rng.normal(size=(1, 3 * n_vertices)).astype(np.float32) + 0.3,
        "idBase": (0.1 * rng.normal(size=(3 * n_vertices, 80))).astype(np.float32),
        "exBase": (0.1 * rng.normal(size=(3 * n_vertices, 64))).astype(np.float32),
        "meantex": rng.uniform(size=(1, 3 * n_vertices)).astype(np.float32),
        "texBase": rng.normal(size=(3 * n_vertices, 80)).astype(np.float32),
        "point_buf": rng.integers(1, 10, size=(n_vertices, 8)),
        "tri": rng.integers(1, n_vertices, size=(200, 3)),
        "keypoints": keypoints[None].astype(np.float64),
    })



def reference_landmarks(mat, coeffs):
    """Deep3DFaceRecon's pipeline written out with NumPy, over the whole mesh."""
    mean = mat["meanshape"].reshape(-1, 3)
    mean = mean - mean.mean(0, keepdims=True)
    shape = mat["idBase"] @ coeffs[0:80] + mat["exBase"] @ coeffs[80:144] + mean.reshape(-1)
    shape = shape.reshape(-1, 3)
    x, y, z = coeffs[224:227]
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    world = shape @ (rz @ ry @ rx).T + coeffs[254:257]
    world[:, 2] = 10 - world[:, 2]
    proj = world @ np.array([[1015, 0, 112], [0, 1015, 112], [0, 0, 1]]).T
    xy = proj[:, :2] / proj[:, 2:]
    kp = xy[mat["keypoints"].reshape(-1).astype(int) - 1]
    return np.stack([kp[:, 0], 223 - kp[:, 1]], -1)


def test_bfm_loader_matches_reference_projection(tmp_path):
    from scipy.io import loadmat

    path = tmp_path / "BFM_model_front.mat"
    write_fake_bfm(path)
    fm = load_bfm(path)
    coeffs = np.zeros(257)
    rng = np.random.default_rng(1)
    coeffs[0:144] = rng.normal(size=144)
    coeffs[224:227] = [0.1, -0.2, 0.05]
    coeffs[254:257] = [0.05, -0.1, 0.2]
    ours = fm.landmarks_from_coeffs(torch.tensor(coeffs, dtype=torch.float64).float()).numpy()
    np.testing.assert_allclose(ours, reference_landmarks(loadmat(path), coeffs), atol=2e-3)
    assert build_face_model(str(path)).exp_dim == 64


def test_bfm_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="BFM file not found"):
        load_bfm(tmp_path / "missing.mat")
    bad = tmp_path / "bad.mat"
    savemat(bad, {"meanshape": np.zeros((1, 30))})
    with pytest.raises(DataError, match="missing BFM fields") as info:
        load_bfm(bad)
    assert str(bad) in str(info.value)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="not a readable MATLAB file"):
        load_bfm(junk)


def test_rotation_is_rz_ry_rx():
    a = torch.tensor([0.3, 0.0, 0.0])
    r = rotation_matrix(a)
    np.testing.assert_allclose(r @ torch.tensor([0.0, 1.0, 0.0]), [0, np.cos(0.3), np.sin(0.3)], atol=1e-6)
    assert torch.allclose(rotation_matrix(torch.zeros(2, 5, 3)), torch.eye(3).expand(2, 5, 3, 3))


def test_stand_in_is_deterministic_and_fills_the_crop():
    a, b = stand_in_face_model(), stand_in_face_model()
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
    assert a.id_dim == 80 and a.exp_dim == 64 and isinstance(a, FaceModel)
    lm = a.landmarks(torch.zeros(80), torch.zeros(64), torch.zeros(3), torch.zeros(3), 256)
    assert lm.shape == (68, 2)
    assert 20 < lm[:, 0].min() and lm[:, 0].max() < 236 and 20 < lm[:, 1].min() and lm[:, 1].max() < 236
    assert lm[8, 1] > lm[33, 1] > lm[27, 1] > lm[19, 1]  # chin below nose below bridge below brow (y down)


def expression(name, value=1.0):
    e = torch.zeros(64)
    e[EXPRESSION_COMPONENTS.index(name)] = value
    return e


def test_stand_in_named_components_do_what_they_say():
    fm = stand_in_face_model()
    ident = torch.zeros(80)

    def kp(name=None, value=1.0):
        return fm.keypoints_3d(ident, torch.zeros(64) if name is None else expression(name, value))

    neutral = kp()
    assert (lip_opening(kp("jaw_open")) > lip_opening(neutral) + 0.1).all()
    assert lip_opening(kp("jaw_open", 0.5))[1] < lip_opening(kp("jaw_open"))[1]
    smile = kp("lip_corner_pull")
    assert smile[48, 1] > neutral[48, 1] and smile[54, 0] > neutral[54, 0]  # corners go up and out
    assert eye_openness(kp("eye_close")[:, :2].numpy()) < 0.25 * eye_openness(neutral[:, :2].numpy())
    assert kp("brow_raise")[19, 1] > neutral[19, 1] > kp("brow_lower")[19, 1]
