"""Check that an official checkpoint file loads strictly into this project's module.

    python scripts/check_checkpoint.py --kind KIND PATH

Prints the parameter count and a last line starting with ``OK``, exit 0; or one line saying
why not (missing file, truncated or not a checkpoint, wrong kind, missing / unexpected /
mis-shaped keys by name), exit 1. Kinds: see ``stylization.loading.SOURCES``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from stylization.loading import SOURCES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", required=True, help=f"which official file this is: {', '.join(sorted(SOURCES))}")
    parser.add_argument("path", help="the checkpoint file")
    args = parser.parse_args()

    def check():
        from stylization.loading import load_official

        module = load_official(args.kind, args.path)
        n_params = sum(p.numel() for p in module.parameters())
        print(f"{args.kind}: {n_params:,} parameters, {len(module.state_dict())} tensors")
        print(f"OK {args.path} loads strictly as {args.kind}")

    from stylization.cli import run_cli

    run_cli(check)


if __name__ == "__main__":
    main()
