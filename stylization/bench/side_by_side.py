"""Time the official code and ours on the same computation, interleaved, and compare the outputs.

For each case a worker process (:mod:`stylization.bench.worker`) builds each side:
``official`` (glibc's default allocator: the official code as its users run it), ``official_tuned``
(the official code under our allocator setting, so the allocator's share is visible), ``ours``
(fp32, the allocator setting of our entry points) and, where asked, ``ours_bf16`` (the same under
bf16 autocast, for CPUs with native bf16 kernels). The first official process draws the
weights; the others load them. One untimed call each warms up and gives the outputs compared;
then every repeat calls each side once, in an order that rotates, so that a change in the
machine's load falls on all sides alike. Seconds are per image (per frame for ``style_a_frame``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile

import torch

from stylization.errors import UserError

# side name -> (implementation, allocator tuned, precision)
SIDES = {"official": ("official", False, "fp32"), "official_tuned": ("official", True, "fp32"),
         "ours": ("ours", True, "fp32"), "ours_bf16": ("ours", True, "bf16")}


class Worker:
    """A worker process; ``call`` sends one message and returns the reply."""

    def __init__(self, name: str):
        self.name = name
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "stylization.bench.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

    def call(self, msg: dict) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise UserError(f"the {self.name} worker exited (code {self.proc.wait()}) during {msg['op']}")
        reply = json.loads(line)
        if "error" in reply:
            raise UserError(f"{self.name} side, {msg['op']}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def compare_case(case: str, setup, official_src: str, repeats: int, threads: int,
                 sides: tuple[str, ...] = ("official", "official_tuned", "ours")) -> dict:
    """One case, every side in ``sides`` (of :data:`SIDES`; ``official`` and ``ours`` at least):
    seconds per image (median and min over ``repeats``), each process's peak memory, and the
    largest output difference of each of our sides from the official output.
    ``ratio`` = official_s / ours_s (above 1: ours is faster); ``ratio_same_allocator`` =
    official_tuned_s / ours_s; ``ratio_bf16`` = official_s / ours_bf16_s."""
    setup_dict = dataclasses.asdict(setup)
    workers = {s: Worker(s) for s in sides}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-official-") as tmp:
            state = os.path.join(tmp, "official_state.pt")
            outs = {s: os.path.join(tmp, f"{s}_out.pt") for s in sides}
            images = 1
            for s in sides:  # "official" first: it draws the weights the others load
                impl, tuned, precision = SIDES[s]
                msg = {"op": "build", "case": case, "setup": setup_dict, "official_src": official_src,
                       "threads": threads, "side": impl, "tuned": tuned, "precision": precision}
                msg.update({"state_out": state} if s == "official" else {"state_in": state})
                images = workers[s].call(msg)["images"]
            for s in sides:  # warm-up; its outputs are the ones compared
                workers[s].call({"op": "run", "out": outs[s]})
            times = {s: [] for s in sides}
            for r in range(repeats):
                order = sides[r % len(sides):] + sides[:r % len(sides)]
                for s in order:
                    times[s].append(workers[s].call({"op": "run"})["seconds"] / images)
            result = {"case": case, "images_per_call": images}
            for s in sides:
                result[f"{s}_s"] = round(statistics.median(times[s]), 4)
                result[f"{s}_min_s"] = round(min(times[s]), 4)
                result[f"{s}_peak_rss_mb"] = round(workers[s].call({"op": "stats"})["peak_rss_mb"], 1)
            result["ratio"] = round(result["official_s"] / result["ours_s"], 3)
            if "official_tuned" in sides:
                result["ratio_same_allocator"] = round(result["official_tuned_s"] / result["ours_s"], 3)
            if "ours_bf16" in sides:
                result["ratio_bf16"] = round(result["official_s"] / result["ours_bf16_s"], 3)
            official = torch.load(outs["official"])
            for s in sides:
                if SIDES[s][0] == "ours":
                    out = torch.load(outs[s])
                    key = "max_abs_diff" if s == "ours" else f"max_abs_diff_{s.split('_', 1)[1]}"
                    result[key] = float((out - official).abs().max()) if out.shape == official.shape else float("inf")
            result["official_output_max_abs"] = float(official.abs().max())
            return result
    finally:
        for w in workers.values():
            w.close()
