"""Triton kernels for the vector work of one CG iteration on CUDA.

Given the product A p, an iteration of :func:`bilevel.linalg.solvers.cg` is

    pAp = p^T A p
    active <- active and not (pAp <= 0)          (a nan pAp keeps it: the nan reaches rs)
    alpha = rs / pAp if active else 0            (0 freezes x and r)
    x <- x + alpha p,   r <- r - alpha A p,   rr = r^T r
    p <- r + (rr / rs) p
    done <- done + active,   active <- active and rr > threshold,   rs <- max(rr, tiny)

which torch runs as 14 small kernels (two dot products, three updates, nine on scalars).
A small or medium solve is bound by their launches, even replayed in a CUDA graph (a few
microseconds each), so here the same math runs in one or three Triton kernels, on the
state's flat buffers (one contiguous vector per x, r, p; the leaves of a tree are views):

* one program (``n <= ONE_PROGRAM_MAX``): the whole iteration in one kernel, the vectors
  held in registers (one load and one store each);
* many programs: ``curvature`` (per-program partial sums of p^T A p), ``step`` (alpha from
  the summed partials, x and r updated, partial sums of r^T r) and ``direction`` (beta, p
  updated; program 0 does the scalar bookkeeping).  No grid-wide barrier exists within a
  kernel, hence three.  The partial sums are added in a fixed order (no atomics: the result
  does not depend on scheduling).  Every program of ``direction`` reads rs, which program 0
  overwrites, so ``step``'s program 0 first copies it to the scratch ``rs_old`` (which
  ``step`` never reads) and ``direction`` reads that instead.

Measured on the H200 (``benchmarks/cg_fused_micro.py``, float32, us per iteration of a
replayed graph, the product a diagonal scaling): torch 23-26 us at every n <= 32,768;
one program 2.4 us at n = 23 but 12.4 us at n = 7,850 (one SM streams the vectors); three
kernels 5.6 us at n = 23, 7.0 at 7,850, 6.5 at 32,768, 8.2 at 101,770, 13.2 at 10^6.  A
program that loops over tiles (no register-resident vectors) was slower than three kernels
at 7,850 and 32,768 entries, so there is none.

Scalars stay on the device (rs, the threshold and tiny, active as uint8, done as int64), so
the kernels need no host synchronization and are recorded into CUDA graphs like torch's.
The torch iteration (:func:`bilevel.linalg.solvers.cg_iteration` off CUDA) is the reference;
both add in different orders, so they agree to rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from . import tree as T
from .operators import LinearOperator
from .tree import Tree

try:  # Triton ships with CUDA builds of torch; CPU-only installs and CI have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

__all__ = ["ONE_PROGRAM_MAX", "available", "cg_parts", "supports"]

# Vectors up to this length are updated by one program holding them in registers (one
# kernel per iteration); longer ones by three kernels of many programs (module docstring).
ONE_PROGRAM_MAX = 2048
# The one program's tile is at least this long: every short vector shares one compiled kernel.
MIN_TILE = 1024
# The tile of each of the many programs.
PROGRAM_TILE = 1024
# Programs of the many-program kernels (each loops over every MAX_PROGRAMS-th tile).
MAX_PROGRAMS = 512
DTYPES = (torch.float32, torch.float64)
# (length, dtype, device, thresholds) -> whether the kernels compiled
_COMPILED: dict[tuple, bool] = {}


def available(device: torch.device | str) -> bool:
    """True when the fused kernels can run on ``device`` (CUDA and an importable Triton)."""
    return triton is not None and torch.device(device).type == "cuda"


def supports(b: Tree) -> bool:
    """Whether CG on vectors like ``b`` runs the fused kernels: on CUDA with Triton, every
    leaf float32 or every leaf float64, not empty, and the kernels compiled for this size
    (compiled here on first use; a failure is warned about once and CG stays in torch)."""
    parts = T.leaves(b)
    dtype, device = parts[0].dtype, parts[0].device
    return (available(device) and dtype in DTYPES and T.numel(b) > 0
            and all(t.dtype == dtype and t.device == device for t in parts)
            and _compiled(T.numel(b), dtype, device))


def cg_parts(x: Tree, r: Tree, rs: torch.Tensor, threshold: torch.Tensor
             ) -> tuple[dict, Callable[[LinearOperator, dict], dict], Callable[[dict], Tree]]:
    """CG's initial state, one iteration and the solution map, for the fused kernels.

    Args:
        x, r: the initial iterate and residual b - A x (trees of one dtype; copied into the
            state's flat buffers, p = r).
        rs: r^T r, clamped >= tiny (0-dim); threshold: (tol ||b||)^2, >= tiny (0-dim).

    Returns:
        (state, body, solution) as :class:`bilevel.linalg.solvers.Iteration` takes them:
        the state holds flat "x", "r", "p" (n,), "rs", "active", "done" and the kernels'
        scratch; ``body(op, state)`` updates it in place; ``solution(state)`` is x as a tree.
    """
    flat_r, unflatten = T.flatten(r)
    n, dtype, device = flat_r.numel(), flat_r.dtype, flat_r.device
    tiny = torch.finfo(dtype).tiny
    state = {"x": T.flatten(x)[0], "r": flat_r, "p": flat_r.clone(), "rs": rs.to(dtype),
             "active": rs > threshold,
             "done": torch.zeros((), dtype=torch.int64, device=device),
             "limits": _limits(threshold.to(dtype), tiny)}
    many = n > ONE_PROGRAM_MAX
    if many:
        programs = min(triton.cdiv(n, PROGRAM_TILE), MAX_PROGRAMS)
        state.update(pap_parts=torch.zeros(programs, dtype=dtype, device=device),
                     rr_parts=torch.zeros(programs, dtype=dtype, device=device),
                     rs_old=torch.zeros((), dtype=dtype, device=device))
    if len(T.leaves(r)) > 1:
        state["ap"] = torch.empty_like(flat_r)  # the product's leaves, gathered

    def body(op: LinearOperator, s: dict) -> dict:
        ap = op(unflatten(s["p"]))
        if "ap" in s:
            torch.cat([t.reshape(-1) for t in T.leaves(ap)], out=s["ap"])
            ap = s["ap"]
        else:
            ap = ap.reshape(-1)
        (update_many if many else update_one)(s, ap)
        return s

    return state, body, lambda s: unflatten(s["x"])


def _limits(threshold: torch.Tensor, tiny: float) -> torch.Tensor:
    """(threshold, tiny) as one device vector of the vectors' dtype (float64's tiny is no
    float32 kernel argument), made on the device: no host-to-device copy, which would
    synchronize (and is an error while a hypergradient is being captured)."""
    limits = torch.full((2,), tiny, dtype=threshold.dtype, device=threshold.device)
    limits[0] = threshold
    return limits


def update_one(s: dict, ap: torch.Tensor) -> None:
    """One CG iteration's vector work on ``s`` (given ap = A p), one program."""
    n = s["p"].numel()
    block = max(MIN_TILE, triton.next_power_of_2(n))
    _cg_one_program[(1,)](s["x"], s["r"], s["p"], ap, s["rs"], s["limits"],
                          s["active"].view(torch.uint8), s["done"], n, BLOCK=block,
                          num_warps=max(4, min(16, block // 256)))


def update_many(s: dict, ap: torch.Tensor) -> None:
    """One CG iteration's vector work on ``s`` (given ap = A p), three many-program kernels."""
    n, programs = s["p"].numel(), s["pap_parts"].numel()
    parts = triton.next_power_of_2(MAX_PROGRAMS)  # one compiled kernel for every n
    active = s["active"].view(torch.uint8)
    _cg_curvature[(programs,)](s["p"], ap, s["pap_parts"], n, BLOCK=PROGRAM_TILE, num_warps=4)
    _cg_step[(programs,)](s["x"], s["r"], s["p"], ap, s["rs"], s["rs_old"], active,
                          s["pap_parts"], s["rr_parts"], n, BLOCK=PROGRAM_TILE, PARTS=parts,
                          num_warps=4)
    _cg_direction[(programs,)](s["r"], s["p"], s["rs"], s["rs_old"], s["limits"], active,
                               s["done"], s["pap_parts"], s["rr_parts"], n,
                               BLOCK=PROGRAM_TILE, PARTS=parts, num_warps=4)


def _compiled(n: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Compile (or load from Triton's disk cache) the kernels of this length once per process,
    on throwaway buffers (inactive: nothing changes), so that none is compiled inside a CUDA
    graph capture or in the middle of a timed solve.  False (warned once) when that fails:
    CG then runs in torch."""
    many = n > ONE_PROGRAM_MAX
    # per compiled variant: the one program's tile, or the many programs
    key = (max(MIN_TILE, triton.next_power_of_2(n)) if not many else "many", dtype, device,
           ONE_PROGRAM_MAX, MAX_PROGRAMS)
    if key in _COMPILED:
        return _COMPILED[key]
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return False  # no compiling (nor a throwaway launch) inside a capture: torch this time
    zeros = torch.zeros(n, dtype=dtype, device=device)
    one = torch.ones((), dtype=dtype, device=device)
    dummy = {"x": zeros.clone(), "r": zeros.clone(), "p": zeros.clone(), "rs": one,
             "active": torch.zeros((), dtype=torch.bool, device=device),
             "done": torch.zeros((), dtype=torch.int64, device=device),
             "limits": _limits(one, 1.0)}
    if many:
        programs = min(triton.cdiv(n, PROGRAM_TILE), MAX_PROGRAMS)
        dummy.update(pap_parts=torch.zeros(programs, dtype=dtype, device=device),
                     rr_parts=torch.zeros(programs, dtype=dtype, device=device),
                     rs_old=one.clone())
    try:
        (update_many if many else update_one)(dummy, zeros)
        _COMPILED[key] = True
    except Exception as err:  # noqa: BLE001 - any failure means: stay with torch
        warnings.warn(f"bilevel.linalg.fused: the CG kernels did not compile ({err}); CG "
                      "runs its torch form", RuntimeWarning, stacklevel=3)
        _COMPILED[key] = False
    return _COMPILED[key]


if triton is not None:
    @triton.jit(do_not_specialize=["n"])
    def _cg_one_program(x_ptr, r_ptr, p_ptr, ap_ptr, rs_ptr, limits_ptr, active_ptr, done_ptr,
                        n, BLOCK: tl.constexpr):
        # every scalar is read before any is written (the reductions below synchronize the
        # program's threads; the stores at the end come after them)
        rs = tl.load(rs_ptr)
        threshold = tl.load(limits_ptr)
        tiny = tl.load(limits_ptr + 1)
        was_active = tl.load(active_ptr) != 0
        done = tl.load(done_ptr)
        offs = tl.arange(0, BLOCK)
        mask = offs < n
        p = tl.load(p_ptr + offs, mask=mask, other=0.0)
        ap = tl.load(ap_ptr + offs, mask=mask, other=0.0)
        pap = tl.sum(p * ap, axis=0)
        active = was_active & ((pap <= 0.0) == 0)  # a nan pAp keeps it active
        alpha = tl.where(active, rs / pap, 0.0)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0) + alpha * p
        r = tl.load(r_ptr + offs, mask=mask, other=0.0) - alpha * ap
        rr = tl.sum(r * r, axis=0)
        tl.store(x_ptr + offs, x, mask=mask)
        tl.store(r_ptr + offs, r, mask=mask)
        tl.store(p_ptr + offs, r + (rr / rs) * p, mask=mask)
        tl.store(rs_ptr, tl.where(rr < tiny, tiny, rr))  # (nan stays nan)
        tl.store(active_ptr, (active & (rr > threshold)).to(tl.uint8))
        tl.store(done_ptr, done + active.to(tl.int64))

    @triton.jit(do_not_specialize=["n"])
    def _cg_curvature(p_ptr, ap_ptr, pap_parts_ptr, n, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        acc = tl.zeros([BLOCK], dtype=p_ptr.dtype.element_ty)
        for start in range(pid * BLOCK, n, tl.num_programs(0) * BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < n
            acc += (tl.load(p_ptr + offs, mask=mask, other=0.0)
                    * tl.load(ap_ptr + offs, mask=mask, other=0.0))
        tl.store(pap_parts_ptr + pid, tl.sum(acc, axis=0))

    @triton.jit(do_not_specialize=["n"])
    def _cg_step(x_ptr, r_ptr, p_ptr, ap_ptr, rs_ptr, rs_old_ptr, active_ptr, pap_parts_ptr,
                 rr_parts_ptr, n, BLOCK: tl.constexpr, PARTS: tl.constexpr):
        pid = tl.program_id(0)
        programs = tl.num_programs(0)
        parts = tl.arange(0, PARTS)
        pap = tl.sum(tl.load(pap_parts_ptr + parts, mask=parts < programs, other=0.0), axis=0)
        rs = tl.load(rs_ptr)
        active = (tl.load(active_ptr) != 0) & ((pap <= 0.0) == 0)
        alpha = tl.where(active, rs / pap, 0.0)
        acc = tl.zeros([BLOCK], dtype=p_ptr.dtype.element_ty)
        for start in range(pid * BLOCK, n, programs * BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < n
            p = tl.load(p_ptr + offs, mask=mask, other=0.0)
            x = tl.load(x_ptr + offs, mask=mask, other=0.0) + alpha * p
            r = (tl.load(r_ptr + offs, mask=mask, other=0.0)
                 - alpha * tl.load(ap_ptr + offs, mask=mask, other=0.0))
            tl.store(x_ptr + offs, x, mask=mask)
            tl.store(r_ptr + offs, r, mask=mask)
            acc += r * r
        tl.store(rr_parts_ptr + pid, tl.sum(acc, axis=0))
        if pid == 0:  # for direction, whose program 0 overwrites rs while the others read
            tl.store(rs_old_ptr, rs)

    @triton.jit(do_not_specialize=["n"])
    def _cg_direction(r_ptr, p_ptr, rs_ptr, rs_old_ptr, limits_ptr, active_ptr, done_ptr,
                      pap_parts_ptr, rr_parts_ptr, n, BLOCK: tl.constexpr, PARTS: tl.constexpr):
        pid = tl.program_id(0)
        programs = tl.num_programs(0)
        parts = tl.arange(0, PARTS)
        # program 0's scalars, read before the reduction below synchronizes its threads
        was_active = tl.load(active_ptr) != 0
        done = tl.load(done_ptr)
        rr = tl.sum(tl.load(rr_parts_ptr + parts, mask=parts < programs, other=0.0), axis=0)
        beta = rr / tl.load(rs_old_ptr)
        for start in range(pid * BLOCK, n, programs * BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < n
            p = tl.load(p_ptr + offs, mask=mask, other=0.0)
            r = tl.load(r_ptr + offs, mask=mask, other=0.0)
            tl.store(p_ptr + offs, r + beta * p, mask=mask)
        if pid == 0:  # the scalar bookkeeping (no other program reads these here)
            pap = tl.sum(tl.load(pap_parts_ptr + parts, mask=parts < programs, other=0.0),
                         axis=0)
            active = was_active & ((pap <= 0.0) == 0)
            tiny = tl.load(limits_ptr + 1)
            tl.store(rs_ptr, tl.where(rr < tiny, tiny, rr))  # (nan stays nan)
            tl.store(active_ptr, (active & (rr > tl.load(limits_ptr))).to(tl.uint8))
            tl.store(done_ptr, done + active.to(tl.int64))
