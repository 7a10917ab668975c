"""The official implementations and ours, side by side: seconds per image, interleaved, same weights.

    python scripts/bench_official.py official_src=DIR [cases=[stylegan2,dualstylegan,vtoonify_d,style_a_frame,pirender]]
        [size=1024] [frames=4] [repeats=3] [threads=N] [bf16=auto|true|false] [official_tuned=true|false]

DIR holds clones of https://github.com/williamyang1991/VToonify (StyleGAN2, DualStyleGAN,
VToonify-D) and https://github.com/RenYurui/PIRender (PIRenderer, and the motion generator of the
Style-A frame) as ``DIR/VToonify`` and ``DIR/PIRender``; nothing is fetched. The official code
runs with the pure-PyTorch ops it ships (VToonify's ``op_cpu``, put in place of the compiled
``op`` as its README says), each side in its own process (its own allocator and peak memory);
see :mod:`stylization.bench.cases` for what each case computes and
:mod:`stylization.bench.side_by_side` for how it is timed. One line per case, then, last, one
JSON object {case: {ours_s, official_s, ratio, max_abs_diff, ...}}: seconds per image (median
over ``repeats``), ``ratio`` = official_s / ours_s (above 1: ours is faster), ``max_abs_diff``
the largest difference of our fp32 output from the official one.
"""

import json
import os
import platform
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench(cfg: DictConfig) -> dict:
    import torch

    from stylization.bench.cases import CASES, Setup
    from stylization.bench.official import repo_root
    from stylization.bench.side_by_side import compare_case
    from stylization.engine.distributed import cpu_threads
    from stylization.errors import ConfigError
    from stylization.numerics import native_bf16

    cases = list(cfg.cases)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ConfigError(f"cases: unknown {unknown}; known: {list(CASES)}")
    src = os.path.abspath(str(cfg.official_src))
    needs = {"VToonify": any(c != "pirender" for c in cases),
             "PIRender": any(c in ("pirender", "style_a_frame") for c in cases)}
    for repo in [r for r, needed in needs.items() if needed]:
        repo_root(src, repo)  # a one-line error now rather than in a worker
    bf16 = str(cfg.bf16).lower()
    if bf16 not in ("auto", "true", "false"):
        raise ConfigError(f"bf16 must be auto, true or false, got {cfg.bf16!r}")
    use_bf16 = bf16 == "true" or (bf16 == "auto" and native_bf16(torch.device("cpu")))
    sides = ("official",) + (("official_tuned",) if cfg.official_tuned else ()) + ("ours",) \
        + (("ours_bf16",) if use_bf16 else ())
    threads = int(cfg.threads) if cfg.threads is not None else cpu_threads()
    setup = Setup(size=int(cfg.size), frames=int(cfg.frames), pirender_size=int(cfg.pirender_size),
                  degree=float(cfg.degree), seed=int(cfg.seed))
    print(f"{platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
          f"sides {', '.join(sides)}, size {setup.size}")
    results = {}
    for case in cases:
        r = compare_case(case, setup, src, int(cfg.repeats), threads, sides)
        results[case] = r
        extra = f", bf16 {r['ours_bf16_s']:.3f} s (x{r['ratio_bf16']})" if "ours_bf16_s" in r else ""
        same = f", same allocator x{r['ratio_same_allocator']}" if "ratio_same_allocator" in r else ""
        print(f"{case}: official {r['official_s']:.3f} s, ours {r['ours_s']:.3f} s per image: x{r['ratio']}"
              f"{same}{extra}; max |diff| {r['max_abs_diff']:.2e}")
    return results


@hydra.main(version_base="1.3", config_path="../configs", config_name="bench_official")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(bench(cfg))))


if __name__ == "__main__":
    main()
