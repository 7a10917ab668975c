"""Preprocessing: landmarks and crops of a picture, the landmark fit, the Deep3DFaceRecon backend,
and pose sources (coefficient files and the pose track of a rendered video)."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from stylization.data.corpus import Corpus
from stylization.data.face_model import build_face_model
from stylization.data.video import read_video
from stylization.errors import ConfigError, DataError
from stylization.preprocess.fitting import fit_coefficients
from stylization.preprocess.pose import (
    apply_pose,
    gentle_pose,
    load_coeff_file,
    ping_pong,
    pose_rows,
    pose_track,
    read_pose_source,
)


def test_landmarks_crop_and_alignment(synthetic_corpus):
    from stylization.data.alignment import CROP_SCALE, face_crop, ffhq_align
    from stylization.preprocess.faces import LandmarkDetector

    corpus = Corpus(synthetic_corpus)
    rec = corpus.clips("test")[0]
    frame = cv2.resize(read_video(corpus.path(rec, "video"))[0], (256, 256), interpolation=cv2.INTER_CUBIC)
    truth = corpus.load_landmarks(rec)[0] * 4
    face = LandmarkDetector("dlib")(frame)
    assert face.n_faces == 1 and np.abs(face.landmarks - truth).mean() < 4.0
    crop, lm = face_crop(frame, truth, 128)
    assert crop.shape == (128, 128, 3)
    assert abs(np.ptp(lm, 0).max() - 128 / CROP_SCALE) < 1e-3  # the corpus framing
    aligned = ffhq_align(frame, truth, 64)
    assert aligned.shape == (64, 64, 3) and aligned.std() > 5


def test_landmark_fit_recovers_the_synthetic_face(synthetic_corpus):
    corpus = Corpus(synthetic_corpus)
    rec = corpus.clips("test")[0]
    landmarks, truth = corpus.load_landmarks(rec)[5], corpus.load_coeffs(rec)[5]
    fm = build_face_model("stand_in")
    row = fit_coefficients(fm, landmarks, 64)
    refit = fm.landmarks_from_coeffs(torch.from_numpy(row)[None], 64)[0].numpy()
    assert np.abs(refit - landmarks).mean() < 0.5  # pixels of the 64 frame
    np.testing.assert_allclose(row[257:], truth[257:], atol=1e-6)  # the corpus's crop convention
    assert np.abs(row[224:227] - truth[224:227]).max() < 0.1  # radians


HEAD_STD = 1e-3  # random heads of this spread give coefficients of order one from an untrained backbone


def fake_deep3d_files(root, model: np.ndarray, heads_seed: int | None = None) -> tuple[str, str]:
    """A random-weight ``epoch_20.pth`` in the official layout and a BFM folder whose
    similarity_Lm3D_all.mat holds ``model`` [68, 3] -> (recon_path, bfm_folder). The heads are zero
    (Deep3DFaceRecon's start: every frame gives the mean face) unless ``heads_seed`` draws them."""
    from scipy.io import savemat

    from stylization.preprocess.recon_net import ReconNet

    (root / "BFM").mkdir()
    savemat(root / "BFM" / "similarity_Lm3D_all.mat", {"lm": model})
    net = ReconNet()
    if heads_seed is not None:
        g = torch.Generator().manual_seed(heads_seed)
        with torch.no_grad():
            for head in net.final_layers:
                head.weight.copy_(torch.randn(head.weight.shape, generator=g) * HEAD_STD)
    torch.save({"net_recon": net.state_dict(), "epoch": 20}, root / "epoch_20.pth")
    return str(root / "epoch_20.pth"), str(root / "BFM")


def test_deep3d_alignment_and_backend(tmp_path):
    from stylization.preprocess.deep3d import Deep3DBackend, align, five_points, pos_fit
    from stylization.errors import CheckpointError

    rng = np.random.default_rng(0)
    model = rng.normal(size=(68, 3))
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    image_points = 2.5 * (model @ rot.T)[:, :2] + np.array([100.0, 80.0])
    t, s = pos_fit(image_points, model)
    np.testing.assert_allclose(t, [100.0, 80.0], atol=1e-6)
    assert abs(s - 2.5) < 1e-6

    photo = (rng.random((300, 260, 3)) * 255).astype(np.uint8)
    lm68 = rng.uniform(80, 200, size=(68, 2))
    crop, params = align(photo, lm68, five_points(model))
    assert crop.shape == (224, 224, 3) and params[:2].tolist() == [260, 300]

    with pytest.raises(CheckpointError, match="epoch_20.pth.*similarity_Lm3D_all.mat"):
        Deep3DBackend(str(tmp_path / "epoch_20.pth"), str(tmp_path / "BFM"))
    coeffs = Deep3DBackend(*fake_deep3d_files(tmp_path, model))(photo, lm68)
    assert coeffs.shape == (260,) and np.isfinite(coeffs).all()
    np.testing.assert_allclose(coeffs[257:], align(photo, lm68, five_points(model))[1][2:], rtol=1e-5)
    assert np.abs(coeffs[:257]).max() == 0  # Deep3D's heads start at zero: the mean face


def test_deep3d_clip_is_batched_and_equals_frame_by_frame(tmp_path, monkeypatch):
    from stylization.preprocess.deep3d import Deep3DBackend, align, five_points
    from stylization.preprocess.runner import ClipProcessor

    rng = np.random.default_rng(1)
    model = rng.normal(size=(68, 3))
    recon, bfm = fake_deep3d_files(tmp_path, model, heads_seed=0)
    n = 3  # ResNet-50 at 224² on the CPU: a few frames keep the test short
    frames = (rng.random((n, 256, 256, 3)) * 255).astype(np.uint8)
    # The model seen at 100 px (y down) near the middle of a 256 crop, moving: each frame has its own crop.
    landmarks = (100 * model[:, :2] * [1, -1] + 128 + rng.normal(scale=3.0, size=(n, 68, 2))).astype(np.float32)

    backend = Deep3DBackend(recon, bfm, batch_size=2)
    clip = backend.coefficients(frames, landmarks)  # a batch of two frames, then a batch of one
    one_by_one = np.stack([backend(f, lm) for f, lm in zip(frames, landmarks)])  # batches of one
    assert clip.shape == (n, 260) and clip.dtype == np.float32
    scale = np.abs(one_by_one[:, :257]).max()
    assert 0.01 < scale < 100 and np.ptp(one_by_one[:, :257], axis=0).max() > 1e-3 * scale  # frames differ
    np.testing.assert_allclose(clip, one_by_one, rtol=1e-5, atol=1e-5 * scale)
    crops = np.stack([align(f, lm, five_points(model))[1][2:] for f, lm in zip(frames, landmarks)])
    np.testing.assert_array_equal(clip[:, 257:], crops.astype(np.float32))  # each frame's own (s, tx, ty)
    assert np.ptp(crops, axis=0).min() > 0

    with pytest.raises(DataError, match=r"landmarks \[T, 68, 2\].*\[3, 5, 2\]"):
        backend.coefficients(frames, landmarks[:, :5])
    with pytest.raises(ConfigError, match="batch_size"):
        Deep3DBackend(recon, bfm, batch_size=0)

    calls = []  # the runner hands the backend the whole clip (the rows are checked above; no new forward pass)
    monkeypatch.setattr(Deep3DBackend, "coefficients", lambda self, f, lm: calls.append((len(f), len(lm))) or clip)
    monkeypatch.setattr(Deep3DBackend, "__call__", lambda self, f, lm: pytest.fail("frame-by-frame call"))
    processor = SimpleNamespace(deep3d=backend)  # ClipProcessor's detector and face model play no part here
    assert ClipProcessor.coefficients(processor, frames, landmarks) is clip and calls == [(n, n)]


def test_fit_leaves_the_shared_face_model_as_it_was(monkeypatch):
    fm = build_face_model("stand_in")
    before = {k: v.clone() for k, v in fm.state_dict().items()}
    landmarks = fm.landmarks(torch.zeros(80), torch.zeros(64), torch.zeros(3), torch.zeros(3), 64).numpy()
    fit_coefficients(fm, landmarks, 64, steps=3)
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in fm.state_dict().items())

    calls = []

    def failing_landmarks(self, *args, **kwargs):  # the fit raises half-way (e.g. a bad landmark array)
        calls.append(self)
        raise RuntimeError("planted failure")

    monkeypatch.setattr(type(fm), "landmarks", failing_landmarks)
    with pytest.raises(RuntimeError, match="planted failure"):
        fit_coefficients(fm, landmarks, 64, steps=3)
    assert calls and calls[0] is not fm and calls[0].mean_keypoints.dtype == torch.float64  # a float64 copy ran
    assert all(v.dtype == torch.float32 for v in fm.state_dict().values())  # the shared model did not change


def test_coefficient_files_become_pose_rows(tmp_path):
    rng = np.random.default_rng(0)
    coeffs = rng.normal(size=(5, 257)).astype(np.float32)
    np.save(tmp_path / "c.npy", coeffs)
    loaded = load_coeff_file(str(tmp_path / "c.npy"))
    assert loaded.shape == (5, 260) and not loaded[:, 257:].any()
    rows = read_pose_source(str(tmp_path / "c.npy"), detector=None, face_model=None, crop_pixels=256)
    np.testing.assert_array_equal(rows, np.concatenate([coeffs[:, 224:227], coeffs[:, 254:257]], 1))
    np.testing.assert_array_equal(pose_rows(loaded), rows)
    np.save(tmp_path / "one.npy", coeffs[0])
    assert load_coeff_file(str(tmp_path / "one.npy")).shape == (1, 260)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_coeff_file(str(tmp_path / "bad.npy"))
    np.save(tmp_path / "wide.npy", np.zeros((3, 12)))
    with pytest.raises(DataError, match="expected coefficients"):
        load_coeff_file(str(tmp_path / "wide.npy"))
    with pytest.raises(DataError, match="not found"):
        load_coeff_file(str(tmp_path / "none.npy"))


def test_pose_track():
    assert ping_pong(3, 8).tolist() == [0, 1, 2, 1, 0, 1, 2, 1]
    assert ping_pong(1, 3).tolist() == [0, 0, 0]
    wobble = gentle_pose(250, seed=0)
    assert wobble.shape == (250, 3) and 0 < np.abs(wobble).max() < 0.1

    source = np.arange(260, dtype=np.float32) / 100
    still = np.concatenate([source[224:227], source[254:257], source[257:260]])
    np.testing.assert_array_equal(pose_track(source, 4), np.tile(still, (4, 1)))
    gentle = pose_track(source, 250, "gentle", seed=0)
    np.testing.assert_allclose(gentle[:, 0:3] - still[0:3], wobble, atol=1e-6)
    assert (gentle[:, 3:] == still[3:]).all()
    driving = np.array([[0, 0, 0, 0, 0, 0], [0.1, 0, 0, 0, 0, 1], [0.2, 0, 0, 0, 0, 2]], np.float32) + 5
    moved = pose_track(source, 5, "still", driving)
    np.testing.assert_allclose(moved[:, 0] - still[0], [0, 0.1, 0.2, 0.1, 0], atol=1e-6)  # relative, back and forth
    np.testing.assert_allclose(moved[:, 5] - still[5], [0, 1, 2, 1, 0], atol=1e-6)
    with pytest.raises(ConfigError, match="pose_motion"):
        pose_track(source, 4, "wild")

    coeffs = np.zeros((5, 260), np.float32)
    apply_pose(coeffs, moved)
    np.testing.assert_array_equal(coeffs[:, 224:227], moved[:, 0:3])
    np.testing.assert_array_equal(coeffs[:, 254:257], moved[:, 3:6])
    np.testing.assert_array_equal(coeffs[:, 257:260], moved[:, 6:9])
