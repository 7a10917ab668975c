"""Images per second of the StyleGAN2 and DualStyleGAN generators (the Style-A backbone).

    python scripts/bench_generator.py [--sizes 256 512 1024] [--batch 1] [--repeats 3]

Random weights at the official configuration (style dim 512, 8 mapping layers, channel
multiplier 2), stored noise; DualStyleGAN with an extrinsic W+ code and weights 0.75 / 1.
CPU in fp32 (and bf16 autocast where the CPU has native bf16 kernels); CUDA, when present, in
fp32 and bf16 autocast. glibc's allocator is tuned as in every entry point. The last line is a JSON object
{model: {device: {precision: {size: images_per_second}}}}.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def images_per_second(model: str, size: int, device: str, precision: str, batch: int, repeats: int) -> float:
    import contextlib

    import torch

    from stylization.style_a.dualstylegan import DualStyleGAN
    from stylization.style_a.stylegan2 import Generator

    torch.manual_seed(0)
    z = torch.randn(batch, 512, device=device)
    if model == "stylegan2":
        net = Generator(size).to(device).eval()
        g = net
    else:
        net = DualStyleGAN(size).to(device).eval()
        ex = torch.randn(batch, net.n_latent, 512, device=device)
        weights = [0.75] * 7 + [1.0] * (net.n_latent - 7)
        g = lambda codes: net(codes, ex, interp_weights=weights)  # noqa: E731
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    amp = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    times = []
    with torch.inference_mode(), amp:
        for i in range(repeats + 1):
            sync()
            t0 = time.perf_counter()
            g(z)
            sync()
            if i:  # the first call warms up
                times.append(time.perf_counter() - t0)
    return round(batch / statistics.median(times), 3)


def main() -> None:
    import torch

    from stylization.allocator import tune_allocator

    tune_allocator()  # as every entry point does (stylization/allocator.py)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from stylization.numerics import native_bf16

    runs = [("cpu", "fp32")] + ([("cpu", "bf16")] if native_bf16(torch.device("cpu")) else [])
    if torch.cuda.is_available():
        runs += [("cuda", "fp32"), ("cuda", "bf16")]
    result: dict = {}
    for model in ("stylegan2", "dualstylegan"):
        for device, precision in runs:
            for size in args.sizes:
                ips = images_per_second(model, size, device, precision, args.batch, args.repeats)
                result.setdefault(model, {}).setdefault(device, {}).setdefault(precision, {})[str(size)] = ips
                print(f"{model} {device} {precision} {size}px: {ips} images/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
