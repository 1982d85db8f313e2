"""Checkpoint averaging for the self-forcing stage (``TrainConfig.sf_average_from``).

Self-forcing through long rollouts of an unstable world trains on clipped, noisy gradients,
and the weights it ends on are one draw from a wide spread: on CartPole the share of
development starts timed within +-3 steps moved between 68 and 88 % from one checkpoint of a
run to the next (BENCHMARKS.md, "Starts: random starts and averaged weights reach 94 %"). Averaging the
weights of the checkpoints along the end of the run (stochastic weight averaging, Izmailov
et al. 2018) gives one model from the middle of that spread instead.

The average is a float64 running sum over the trained parameters at every checkpoint step
from ``sf_average_from`` on (``ckpt_every`` apart, the stage's last step included), kept
beside the checkpoint in ``average.safetensors`` with the last step it holds, so a resumed
run adds only later checkpoints (a run killed between writing the sum and its checkpoint
repeats that step's weights, which the seeded batches make the same, and does not add them
twice). At the stage's end the parameters are replaced by sum / count.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class WeightAverage:
    """A float64 running sum of named parameters, saved and resumed beside a checkpoint."""

    def __init__(self, params: dict[str, nn.Parameter], path: Path) -> None:
        self.params = params
        self.path = path
        self.sum = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
        self.count = 0
        self.step = -1  # the last step whose weights are in the sum
        if path.is_file():
            stored = load_file(path)
            meta = json.loads(stored["meta"].numpy().tobytes().decode())  # written by `save`
            if set(stored) - {"meta"} != set(self.sum):
                raise ValueError(f"{path} averages other parameters than this stage trains; delete it or use a new --out folder")
            self.sum = {k: stored[k] for k in self.sum}
            self.count, self.step = int(meta["count"]), int(meta["step"])

    def add(self, step: int) -> bool:
        """Add the parameters' current values as the weights of ``step``; False if that step is in already."""
        if step <= self.step:
            return False
        with torch.no_grad():
            for k, p in self.params.items():
                self.sum[k] += p.detach().double()
        self.count += 1
        self.step = step
        return True

    def save(self) -> None:
        """Write the sum atomically (the checkpoint is written after it)."""
        meta = json.dumps({"count": self.count, "step": self.step}).encode()
        tmp = self.path.with_suffix(".partial")
        save_file({**{k: v.contiguous() for k, v in self.sum.items()}, "meta": torch.frombuffer(bytearray(meta), dtype=torch.uint8)}, tmp)
        os.replace(tmp, self.path)

    def apply(self) -> None:
        """Set every parameter to the average of the weights added so far."""
        if not self.count:
            raise ValueError("no checkpoint was averaged: sf_average_from is past the stage's last step")
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_((self.sum[k] / self.count).to(p.dtype))
