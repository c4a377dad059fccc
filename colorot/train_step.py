"""One step of the training loop on fixed input buffers, replayed as a CUDA graph on a GPU.

A step on the default 4 096-pixel batch is a few hundred small kernels (forward, backward and
Adam's update).  Launched one by one from Python they keep an H200 waiting: ≈ 5 ms a step
whatever the batch (bench/EXPERIMENTS.md, E60).  So on a CUDA device, after
:data:`GRAPH_WARMUP_STEPS` ordinary steps on a side stream, the step is captured once as a CUDA
graph and every later step replays it with one launch: the step's draws are copied into the same
input buffers, the learning rate into the same tensor (Adam with ``capturable=True``), and the
graph reruns the forward pass, the backward pass and the update in place.  On the CPU, and for
the moment loss (its target moments are copied from the host each step, which a graph cannot
hold), the same step runs eagerly.  Either way every step sees exactly the draws it sees today.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch

#: Ordinary steps, on a side stream, before the step is captured (CUDA's lazy set-up and Adam's
#: state must exist before capture, as in torch's whole-network capture recipe).
GRAPH_WARMUP_STEPS = 3

_side_streams = threading.local()


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """This thread's side stream on ``device``, made once and reused by every fit.

    cuBLAS keeps a workspace for each stream it has run on until the process ends (two 32 MiB blocks
    on an H200), so a fresh stream for each fit would hold 64 MiB more after every fit.  One stream
    per thread, not per process, so that fits in two threads never capture each other's work.
    """
    streams = _side_streams.__dict__.setdefault("by_device", {})
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in streams:
        streams[index] = torch.cuda.Stream(device=index)
    return streams[index]


class TrainingStep:
    """forward → loss → backward → Adam's update of ``optimiser``'s parameters, the batch read from
    fixed buffers: rows ``idx`` of ``data`` plus ``noise``, and ``directions`` bank columns.

    ``load(idx, noise, columns)`` copies one step's draws (CPU tensors) into the buffers;
    ``run()`` takes the step and returns the batch's loss, a tensor on the device that the next
    ``run()`` may overwrite (copy it to keep it).  ``compute_loss(x, columns)`` is the objective
    on the batch ``x`` with the sliced term's bank columns ``columns`` (None without that term).
    """

    def __init__(self, optimiser: torch.optim.Optimizer, data: torch.Tensor, batch: int, directions: int | None,
                 compute_loss: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                 graphed: bool) -> None:
        device = data.device
        self.optimiser, self.data, self.compute_loss = optimiser, data, compute_loss
        self.idx = torch.zeros(batch, dtype=torch.long, device=device)
        self.noise = torch.zeros(batch, data.shape[1], dtype=data.dtype, device=device)
        self.columns = None if directions is None else torch.zeros(directions, dtype=torch.long, device=device)
        self.graphed = graphed
        # One side stream for the warm-up steps and the capture: memory freed there is reused only by
        # work queued behind the default stream's (run() makes it wait), and the capture finds the
        # stream's lazily made state (cuBLAS's workspace) already made.
        self.side_stream = side_stream(device) if graphed else None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None
        self.steps_taken = 0

    def load(self, idx: torch.Tensor, noise: torch.Tensor, columns: torch.Tensor | None) -> None:
        """Copy one step's draws into the buffers (queued behind the previous step on a GPU)."""
        self.idx.copy_(idx, non_blocking=True)
        self.noise.copy_(noise, non_blocking=True)
        if self.columns is not None:
            self.columns.copy_(columns, non_blocking=True)

    def run(self) -> torch.Tensor:
        """Take one step (eagerly, or by replaying the captured graph) and return its loss."""
        self.steps_taken += 1
        if not self.graphed:
            return self._eager_step()
        if self.steps_taken <= GRAPH_WARMUP_STEPS:
            self.side_stream.wait_stream(torch.cuda.current_stream())  # after this step's draws are loaded
            with torch.cuda.stream(self.side_stream):
                loss = self._eager_step()
            torch.cuda.current_stream().wait_stream(self.side_stream)
            return loss
        if self.graph is None:
            self.optimiser.zero_grad(set_to_none=True)  # the gradients are then allocated in the graph's pool
            self.graph = torch.cuda.CUDAGraph()
            # Captured on the warm-up's stream, whose cuBLAS workspace the warm-up has already set up.
            with torch.cuda.graph(self.graph, stream=self.side_stream):  # records the step without running it
                self.loss = self._eager_step()
        self.graph.replay()
        return self.loss

    def release(self) -> None:
        """Drop the graph and the gradients, so the graph's memory pool can be freed."""
        self.optimiser.zero_grad(set_to_none=True)
        self.graph = self.loss = None

    def _eager_step(self) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        loss = self.compute_loss(self.data[self.idx] + self.noise, self.columns)
        loss.backward()
        self.optimiser.step()
        return loss.detach()
