"""One side of a side-by-side case, in its own process: ``python -m stylization.bench.worker``.

A process per side keeps each side's allocator and peak memory its own: the official code runs
under glibc's default ``malloc`` (as its users run it) or under ours, ours under the setting that
our entry points apply (:func:`stylization.allocator.tune_allocator`). The driver
(:mod:`stylization.bench.side_by_side`) speaks to it in JSON lines on stdin / a private copy of
stdout (anything the official code prints goes to stderr):

* ``{"op": "build", "case", "side", "setup": {...}, "official_src", "precision", "threads",
  "tuned": bool, "state_in": path | null, "state_out": path | null}`` -> ``{"ok": true}``;
* ``{"op": "run", "out": path | null}`` -> ``{"seconds": s}`` for one call (outputs saved as
  float32 when ``out``);
* ``{"op": "stats"}`` -> ``{"peak_rss_mb": ...}`` (the process's peak resident memory);
* end of input: the worker exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time


def main() -> None:
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # the official code's prints must not reach the protocol
    built, precision = None, "fp32"
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            reply = handle(msg, built, precision)
        except Exception as exc:  # the driver reports it (one line) and stops the case
            reply = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        if msg["op"] == "build" and "error" not in reply:
            built, precision = reply.pop("built"), msg.get("precision", "fp32")
        channel.write(json.dumps(reply) + "\n")


def handle(msg: dict, built, precision: str) -> dict:
    import torch

    if msg["op"] == "build":
        if msg.get("tuned"):
            from stylization.allocator import tune_allocator

            tune_allocator()
        torch.set_num_threads(int(msg["threads"]))
        from stylization.bench.cases import Setup, build_official, build_ours

        setup = Setup(**msg["setup"])
        if msg["side"] == "official":
            b = build_official(msg["case"], setup, msg["official_src"])
            if msg.get("state_in"):  # the same weights as the first official process drew
                b.module.load_state_dict(torch.load(msg["state_in"], weights_only=True))
        else:
            b = build_ours(msg["case"], setup, torch.load(msg["state_in"], weights_only=True))
        if msg.get("state_out"):
            torch.save(b.module.state_dict(), msg["state_out"])
        return {"ok": True, "built": b, "images": b.images}
    if msg["op"] == "run":
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), amp:
            t0 = time.perf_counter()
            out = built.run()
            seconds = time.perf_counter() - t0
        if msg.get("out"):
            torch.save(out.float().contiguous(), msg["out"])
        return {"seconds": seconds}
    if msg["op"] == "stats":
        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    raise ValueError(f"unknown op {msg['op']!r}")


if __name__ == "__main__":
    main()
