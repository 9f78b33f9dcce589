"""``PhaseTimer``: an optional wall-clock breakdown of one solve ("where did my time go").

``solve_lp(lp, profile=True)`` fills ``LPResult.timings`` with seconds per phase, e.g.

    validate       input checks and the warm start on the host
    to_device      the LP's arrays copied to the solve's device
    scaling        Ruiz + Pock-Chambolle + bound/objective rescaling
    operator       the scaled CSR matrix and its CSR transpose
    norm           ||A~||_2 (0 with the Pock-Chambolle bound)
    move           the scaled LP moved to the device (small LPs are scaled on the CPU)
    termination    the constant vectors of the termination checks
    state          the scaled warm start and the iteration buffers
    fused_plan     the Triton plan (row statistics; the kernels compiled once per process)
    first_check    the first iteration and its check (one host sync)
    cold_probe     a warm-started solve's iteration and check from the cold start
    graph_capture  recording the chunk of iterations + check as a CUDA graph
    iterations     every later chunk and check
    result         vectors copied back to the host
    total          the whole call (= LPResult.solve_time)

A mark synchronizes the device first (so the time of queued kernels lands in the phase that
queued them); without ``profile`` the timer does nothing, and the solve keeps its few syncs.

From the shell: ``python -m l2o.pdhg LP... --device cuda`` prints the phases (l2o/pdhg/__main__.py).
"""

from __future__ import annotations

import time

import torch

__all__ = ["PhaseTimer"]


class PhaseTimer:
    """Accumulates seconds per phase between successive :meth:`mark` calls.

    Args:
        enabled: record anything at all (False: every method is a no-op).
        device: synchronized before each mark when it is a CUDA device.
        start: ``time.perf_counter()`` of the call's start (the first phase begins there).
    """

    def __init__(self, enabled: bool, device: torch.device | None = None,
                 start: float | None = None):
        self.enabled = enabled
        self.device = device
        self.last = time.perf_counter() if start is None else start
        self.timings: dict[str, float] = {}

    def set_device(self, device: torch.device) -> None:
        self.device = device

    def mark(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase`` (summed over repeated marks)."""
        if not self.enabled:
            return
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + (now - self.last)
        self.last = now

