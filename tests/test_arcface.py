"""ArcFace for CSIM: insightface's IResNet in the released layout (tests/manifests/arcface_iresnet*.tsv,
written by running arcface_torch's backbones/iresnet.py), its five-point alignment, strict loading of
a backbone.pth, the embedder and the benchmark's identity=arcface."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_manifest, write_official

from stylization.errors import CheckpointError, ConfigError
from stylization.loading import load_official
from stylization.metrics.arcface import ARCFACE_TEMPLATE, IResNet, align_face, alignment_matrix, depth_of, five_points

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("depth", [50, 100])
def test_layout_is_the_released_backbones(depth):
    own = IResNet(depth).state_dict()
    assert [(k, list(v.shape)) for k, v in own.items()] == read_manifest(f"arcface_iresnet{depth}.tsv")
    assert depth_of(own) == depth


def _apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_alignment_takes_the_five_points_onto_the_template():
    """A face turned by 0.3 rad, 2.2x larger and moved: the similarity found takes its five points
    exactly onto insightface's template, and the warp puts a dot drawn at each point there."""
    import cv2

    c, s = np.cos(0.3), np.sin(0.3)
    points = (ARCFACE_TEMPLATE @ (2.2 * np.array([[c, -s], [s, c]])).T + [150.0, 90.0]).astype(np.float32)
    np.testing.assert_allclose(_apply(alignment_matrix(points), points), ARCFACE_TEMPLATE, atol=1e-3)
    np.testing.assert_allclose(_apply(alignment_matrix(points, 224), points), 2 * ARCFACE_TEMPLATE, atol=1e-3)
    image = np.zeros((420, 420, 3), np.uint8)
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 6, (255, 255, 255), -1)
    face = align_face(image, points)
    assert face.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert face[int(round(y)), int(round(x))].min() > 200
    assert face.mean() < 40  # the rest stays dark
    with pytest.raises(ValueError, match="degenerate"):
        alignment_matrix(np.zeros((5, 2), np.float32))


def test_five_points_from_68_landmarks():
    lm = np.random.default_rng(0).uniform(0, 256, (68, 2)).astype(np.float32)
    five = five_points(lm)
    np.testing.assert_allclose(five, [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]], rtol=1e-6)


def test_a_backbone_file_loads_strictly_at_its_depth(tmp_path):
    path = tmp_path / "backbone.pth"
    write_official(path, read_manifest("arcface_iresnet50.tsv"), None)
    net = load_official("arcface", path)
    assert isinstance(net, IResNet) and net.depth == 50
    state = torch.load(path, weights_only=True)
    # without the BatchNorm counters (files saved before torch 0.4.1 have none): still loads
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    assert load_official("arcface", path).depth == 50
    # a block missing from layer3: no known depth; a mis-shaped tensor: named
    torch.save({k: v for k, v in state.items() if not k.startswith("layer3.13.")}, path)
    with pytest.raises(CheckpointError, match="match no IResNet depth"):
        load_official("arcface", path)
    torch.save({**state, "fc.weight": torch.zeros(256, 25088)}, path)
    with pytest.raises(CheckpointError, match=r"mis-shaped \['fc.weight"):
        load_official("arcface", path)
    with pytest.raises(CheckpointError, match="not found"):
        load_official("arcface", tmp_path / "missing.pth")


def test_embedder_and_the_benchmarks_identity_option(tmp_path):
    """ArcFaceEmbedder: dlib's landmarks -> five points -> 112² crop -> the backbone (random weights
    here), 512-d; None without a face. benchmark.py identity=arcface needs arcface=PATH, and its
    landmark detector is dlib or face_alignment."""
    from hydra import compose, initialize_config_dir
    from skimage import data

    from stylization.preprocess.faces import ArcFaceEmbedder, LandmarkDetector
    from stylization.metrics.arcface import to_input

    torch.manual_seed(0)
    torch.save(IResNet(50).state_dict(), tmp_path / "backbone.pth")
    embedder = ArcFaceEmbedder(str(tmp_path / "backbone.pth"))
    astronaut = data.astronaut()
    vector = embedder(astronaut)
    assert vector.shape == (512,) and vector.dtype == np.float32 and np.isfinite(vector).all()
    landmarks = LandmarkDetector("dlib")(astronaut).landmarks
    with torch.no_grad():
        expected = embedder._net(to_input(align_face(astronaut, five_points(landmarks))[None]))[0].numpy()
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-5)
    assert embedder(np.zeros((64, 64, 3), np.uint8)) is None

    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        base = ["gen=a", "gt=b", "out=c.json", "metrics=[csim]"]
        cfg = compose("benchmark", overrides=[*base, "identity=arcface", f"arcface={tmp_path / 'backbone.pth'}"])
        unset = compose("benchmark", overrides=[*base, "identity=arcface"])
        bad = compose("benchmark", overrides=["gen=a", "gt=b", "out=c.json", "metrics=[m_lmd]", "landmarks=mediapipe"])
    assert isinstance(bench.Scorers(cfg, ["csim"]).embedder, ArcFaceEmbedder)
    with pytest.raises(ConfigError, match="identity=arcface needs arcface=PATH"):
        bench.Scorers(unset, ["csim"])
    with pytest.raises(ConfigError, match="landmarks must be dlib or face_alignment"):
        bench.Scorers(bad, ["m_lmd"])
