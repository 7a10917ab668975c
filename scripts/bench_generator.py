"""Images per second of the StyleGAN2 generator (the Style-A backbone) at 256, 512 and 1024.

    python scripts/bench_generator.py [--sizes 256 512 1024] [--batch 1] [--repeats 3]

Random weights at the official configuration (style dim 512, 8 mapping layers, channel
multiplier 2), stored noise. CPU in fp32; CUDA, when present, in fp32 and bf16 autocast.
The last line is a JSON object {device: {precision: {size: images_per_second}}}.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def images_per_second(size: int, device: str, precision: str, batch: int, repeats: int) -> float:
    import contextlib

    import torch

    from stylization.style_a.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(size).to(device).eval()
    z = torch.randn(batch, 512, device=device)
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

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = [("cpu", "fp32")]
    if torch.cuda.is_available():
        runs += [("cuda", "fp32"), ("cuda", "bf16")]
    result: dict = {}
    for device, precision in runs:
        for size in args.sizes:
            ips = images_per_second(size, device, precision, args.batch, args.repeats)
            result.setdefault(device, {}).setdefault(precision, {})[str(size)] = ips
            print(f"{device} {precision} {size}px: {ips} images/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
