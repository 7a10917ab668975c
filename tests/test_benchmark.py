"""scripts/benchmark.py on a folder of videos against itself, with one unreadable video and one
without a counterpart: perfect scores where they are defined, and nothing left out silently."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from stylization.data.corpus import Corpus
    from stylization.data.synthetic.build import CorpusSpec, build_corpus

    base = tmp_path_factory.mktemp("bench")
    build_corpus(CorpusSpec(out=str(base / "corpus"), speakers=1, clips=1, seconds=0.6, resolution=256, workers=1,
                            emotions=("happy",), levels=(1,), styles=("cel",), art_references=1, test_speakers=0,
                            phonemes=False))
    corpus = Corpus(base / "corpus")
    gen, gt = base / "gen", base / "gt"
    gen.mkdir()
    gt.mkdir()
    for rec in corpus.records:
        shutil.copy(corpus.path(rec, "video"), gt / f"{rec.id}.mp4")
        shutil.copy(corpus.path(rec, "video"), gen / f"{rec.id}.mp4")
    (gen / "broken.mp4").write_bytes(b"not a video")
    shutil.copy(corpus.path(corpus.records[0], "video"), gt / "broken.mp4")
    shutil.copy(corpus.path(corpus.records[0], "video"), gt / "never_generated.mp4")
    return gen, gt, corpus


def test_a_folder_against_itself(folders, tmp_path):
    from stylization.data.video import read_video
    from stylization.metrics import cpbd

    import torch
    from test_fid import random_inception_state

    gen, gt, corpus = folders
    out = tmp_path / "result.json"
    torch.save(random_inception_state(), tmp_path / "inception.pth")  # FID's weights come from a file
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), f"gen={gen}", f"gt={gt}", f"out={out}",
                          "metrics=[ssim,psnr,fid,cpbd,m_lmd,f_lmd,d_a,sld]",
                          f"inception={tmp_path / 'inception.pth'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    agg = result["aggregate"]
    # identical frames: PSNR is infinite; piq (the ViCo definition) reports 80 dB (its 1e-8 in the error)
    assert agg["ssim"] == pytest.approx(1.0) and agg["psnr"] == pytest.approx(80.0)
    assert agg["m_lmd"] == 0.0 and agg["f_lmd"] == 0.0
    assert agg["d_a"] == 0.0 and agg["sld"] == 0.0  # each window matches itself (the style metrics' wiring)
    assert abs(agg["fid"]) < 1e-3  # the same frames on both sides
    assert result["clips"] == len(corpus.records) and not result["undefined"]
    assert all(row["lmd_frames"] == row["frames"] for row in result["per_clip"].values())  # dlib found every face
    rec = corpus.records[0]
    frames = read_video(corpus.path(rec, "video"))
    assert result["per_clip"][rec.id]["cpbd"] == pytest.approx(float(cpbd(frames).mean()), abs=1e-6)
    missing = {m["clip"]: m["reason"] for m in result["missing"]}
    assert missing.keys() == {"broken", "never_generated"}
    assert "not a readable video" in missing["broken"] or "broken.mp4" in missing["broken"]
    assert missing["never_generated"] == "no generated video"
    last = json.loads(run.stdout.strip().splitlines()[-1])
    assert last["clips"] == len(corpus.records) and last["missing"] == 2


def _benchmark_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_still_video_scores_below_the_truth(folders, tmp_path):
    """The *still* baseline (the first frame repeated) is worse than the video itself; an unknown
    metric is a one-line configuration error."""
    from hydra import compose, initialize_config_dir

    from stylization.data.video import read_video, write_video
    from stylization.errors import ConfigError

    gen, gt, corpus = folders
    still = tmp_path / "still"
    still.mkdir()
    for rec in corpus.records:
        frames = read_video(corpus.path(rec, "video"))
        write_video(still / f"{rec.id}.mp4", np.repeat(frames[:1], len(frames), 0))
    bench = _benchmark_module()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("benchmark", overrides=[f"gen={still}", f"gt={gt}", f"out={tmp_path / 'still.json'}",
                                              "metrics=[ssim,psnr]", "ssim_definition=skimage"])
        bad = compose("benchmark", overrides=[f"gen={still}", f"gt={gt}", f"out={tmp_path / 'x.json'}",
                                              "metrics=[ssim,fvd]"])
    agg = bench.run(cfg)
    assert 0.3 < agg["ssim"] < 0.999 and 10 < agg["psnr"] < 100 and agg["missing"] == 2
    with pytest.raises(ConfigError, match=r"unknown metrics \['fvd'\]"):
        bench.run(bad)
    assert not (tmp_path / "x.json").exists()


def test_lse_reads_the_official_file_and_the_ground_truth_sound(tmp_path):
    """metrics=[lse]: SyncNet from its official file (random weights here), on the generated frames
    with the ground truth's sound; without syncnet= it is a one-line configuration error."""
    import torch
    from hydra import compose, initialize_config_dir

    from stylization.errors import ConfigError
    from stylization.syncnet.model import SyncNet

    torch.manual_seed(0)
    torch.save(SyncNet(1024).state_dict(), tmp_path / "syncnet_v2.model")
    bench = _benchmark_module()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (7, 64, 64, 3), dtype=np.uint8)
    wav = (0.1 * rng.standard_normal(7 * 640)).astype(np.float32)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("benchmark", overrides=["gen=a", "gt=b", "out=c.json", "metrics=[lse]",
                                              f"syncnet={tmp_path / 'syncnet_v2.model'}"])
        unset = compose("benchmark", overrides=["gen=a", "gt=b", "out=c.json", "metrics=[lse]"])
    row = bench.score_clip(frames, frames, wav, ["lse"], cfg, bench.Scorers(cfg, ["lse"]))
    assert set(row) == {"frames", "lse_d", "lse_c", "sync_offset"}
    assert np.isfinite(row["lse_d"]) and row["lse_c"] >= 0 and abs(row["sync_offset"]) <= 15
    with pytest.raises(ConfigError, match="metric lse needs syncnet=PATH"):
        bench.Scorers(unset, ["lse"])


def test_fid_needs_its_weights_file(tmp_path):
    """metrics=[fid] without inception= (or with a missing file) is a one-line error, not a download."""
    out = tmp_path / "r.json"
    for extra, message in (([], "inception=PATH"), ([f"inception={tmp_path / 'none.pth'}"], "not found")):
        run = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), f"gen={tmp_path}",
                              f"gt={tmp_path}", f"out={out}", "metrics=[fid]", *extra], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode != 0 and message in run.stderr and "Traceback" not in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_table_puts_our_rows_beside_the_papers(tmp_path):
    """scripts/benchmark_table.py: the paper's columns in its order, its published rows, then one row
    per result (named by config.method, else the file stem), as markdown and CSV."""
    ours = {"aggregate": {"ssim": 0.5, "psnr": 20.0, "m_lmd": 2.25, "f_lmd": 3.5, "sync_conf": 1.25},
            "config": {"method": "style2talker_cpu"}}
    still = {"aggregate": {"ssim": 0.4, "m_lmd": 4.0}, "config": {}}
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    (tmp_path / "still.json").write_text(json.dumps(still))
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_table.py"), str(tmp_path / "ours.json"),
                          str(tmp_path / "still.json"), "--paper", "style2talker", "--dataset", "hdtf"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    assert header == "| method | SSIM ↑ | FID ↓ | M-LMD ↓ | F-LMD ↓ | Sync_conf ↑ |"
    assert "| Style²Talker (paper) | 0.718 | 23.330 | 3.046 | 2.791 | 2.734 |" in lines  # Table 1, HDTF
    assert "| style2talker_cpu | 0.500 | – | 2.250 | 3.500 | 1.250 |" in lines
    assert "| still | 0.400 | – | 4.000 | – | – |" in lines
    assert "method,source,ssim,fid,m_lmd,f_lmd,sync_conf" in lines
    assert "style2talker_cpu,ours,0.5,,2.25,3.5,1.25" in lines
    (tmp_path / "bad.json").write_text("{}")
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark_table.py"), str(tmp_path / "bad.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "bad.json" in bad.stderr and "aggregate" in bad.stderr
    assert "Traceback" not in bad.stderr
