"""Data-parallel bilevel.solve (bilevel.distributed): batch slicing, the world-size-1 path in
this process, and 2 gloo processes under torchrun (against one process; kill -9 and resume)."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from _bilevel_refs import Ridge
from _distributed_worker import COMPARED, RUN, SOLVE, ridge_problem
from torch.func import grad, jvp, vjp

import bilevel
from bilevel.distributed import DataParallel, DistributedProblem, split_batch

WORKER = Path(__file__).resolve().parent / "_distributed_worker.py"
ROOT = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT_S = 120  # a failing group ends by the workers' 60 s collective timeout


def test_split_batch_contiguous_slices_weighted_by_size():
    X, t = torch.arange(30.0).reshape(15, 2), torch.arange(15.0)
    batch = {"features": X, "pair": (t, 7), "scale": torch.tensor(2.0)}
    parts = [split_batch(batch, r, 4) for r in range(4)]
    assert [len(p["pair"][0]) for p, _ in parts] == [4, 4, 4, 3]  # the first 15 mod 4 get one more
    assert [w for _, w in parts] == [4 / 15, 4 / 15, 4 / 15, 3 / 15]
    assert torch.equal(torch.cat([p["features"] for p, _ in parts]), X)
    assert torch.equal(torch.cat([p["pair"][0] for p, _ in parts]), t)
    assert all(p["pair"][1] == 7 and torch.equal(p["scale"], batch["scale"]) for p, _ in parts)
    # weighted slice means are the global mean
    total = sum(w * p["pair"][0].mean() for p, w in parts)
    assert torch.isclose(total, t.mean())


def test_split_batch_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match=r"share their first dimension.*batch\[0\]: 5.*batch\[1\]: 4"):
        split_batch((torch.zeros(5, 2), torch.zeros(4)), 0, 2)
    with pytest.raises(ValueError, match="3 samples cannot be split over 4 processes"):
        split_batch(torch.zeros(3), 0, 4)
    with pytest.raises(ValueError, match="no tensor with a sample dimension"):
        split_batch({"lr": 0.1}, 0, 2)


def test_distributed_option_is_checked():
    prob = Ridge().problem()
    with pytest.raises(ValueError, match="no torch.distributed process group is initialized"):
        bilevel.solve(prob, distributed=True, progress=False)
    with pytest.raises(TypeError, match="distributed must be None, True or False"):
        bilevel.solve(prob, distributed="yes", progress=False)


@pytest.fixture
def process_group_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1, timeout=datetime.timedelta(seconds=30))
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", [*COMPARED, "borep"])
def test_world_size_one_matches_plain_solve(process_group_of_one, tmp_path, method):
    """distributed=True on one process runs the data-parallel path (all-reduces over one
    process): the same numbers as the plain path; a world of one is not detected."""
    torch.manual_seed(0)
    prob = ridge_problem()
    plain = bilevel.solve(prob, method=method, **SOLVE)
    detected = bilevel.solve(prob, method=method, **SOLVE)  # one process: the plain path
    parallel = bilevel.solve(prob, method=method, distributed=True,
                             checkpoint=tmp_path / "run.pt", **SOLVE)
    assert torch.equal(detected.x, plain.x)
    assert float((parallel.x - plain.x).abs().max()) <= 1e-12 * max(1.0, float(plain.x.abs().max()))
    assert [r["step"] for r in parallel.history] == list(range(SOLVE["outer_steps"]))


def test_objective_derivatives_take_one_all_reduce_per_product(process_group_of_one,
                                                               monkeypatch):
    """Through the process group (one process): the value, grad, Hessian-vector products
    (vjp and jvp of grad), the mixed product and an unrolled step's double backward equal
    the plain ones, and each costs the collectives of the module docstring: one per value
    (outside autograd) and one per derivative product, none per leaf or per node."""
    torch.manual_seed(0)
    plain = ridge_problem()
    batch = plain.first_inner_batch
    parallel = DistributedProblem(plain, DataParallel(0, 1, torch.device("cpu")))
    calls = []
    all_reduce = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: (calls.append(t.numel()),
                                                              all_reduce(t, *a, **k))[1])
    x, y = plain.x0, torch.linspace(-1, 1, plain.y0.numel(), dtype=plain.y0.dtype)
    v = torch.ones_like(y)
    ops = {
        "value": (lambda g: g(x, y), 1),
        "grad_y": (lambda g: grad(g, argnums=1)(x, y), 2),          # value + gradient
        "hvp (vjp of grad)": (lambda g: vjp(lambda z: grad(g, argnums=1)(x, z), y)[1](v)[0],
                              3),                                     # + the product
        "hvp (jvp of grad)": (lambda g: jvp(lambda z: grad(g, argnums=1)(x, z), (y,),
                                            (v,))[1], 3),
        "mixed": (lambda g: vjp(lambda w: grad(g, argnums=1)(w, y), x)[1](v)[0], 3),
    }
    for name, (op, collectives) in ops.items():
        calls.clear()
        expected, got = op(plain.inner_at(batch)), op(parallel.inner_at(batch))
        assert torch.allclose(got, expected, rtol=1e-13, atol=0), name
        assert len(calls) == collectives, (name, calls)
    # an unrolled inner step (ITD): torch.autograd.grad with create_graph, then backward
    results = []
    for problem in (plain, parallel):
        xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        g = problem.inner_at(batch)
        step, = torch.autograd.grad(g(xx, yy), yy, create_graph=True)
        results.append(torch.autograd.grad(problem.outer_at(batch)(xx, yy - 0.1 * step),
                                           (xx, yy)))
    for expected, got in zip(*results):
        assert torch.allclose(got, expected, rtol=1e-13, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL)")
def test_nccl_world_size_one_on_gpu_matches_plain_solve(tmp_path):
    """The NCCL path on one GPU (the README's launch with one process): the same x as the
    plain path, for every compared method, from a checkpointed run."""
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1, timeout=datetime.timedelta(seconds=60))
    try:
        for method in COMPARED:
            torch.manual_seed(0)
            plain_problem = _on(ridge_problem(), device)
            plain = bilevel.solve(plain_problem, method=method, **SOLVE)
            torch.manual_seed(0)
            parallel = bilevel.solve(_on(ridge_problem(), device), method=method,
                                     distributed=True, checkpoint=tmp_path / f"{method}.pt",
                                     **SOLVE)
            assert parallel.x.device.type == "cuda"
            scale = max(1.0, float(plain.x.abs().max()))
            assert float((parallel.x - plain.x).abs().max()) <= 1e-10 * scale, method
    finally:
        dist.destroy_process_group()


def _on(problem: bilevel.BilevelProblem, device: torch.device) -> bilevel.BilevelProblem:
    """The problem with its variables and data (one epoch's batches, as a list) on ``device``."""
    def move(batches):
        return [tuple(t.to(device) for t in batch) for batch in batches]

    return bilevel.BilevelProblem(problem.outer, problem.inner, x0=problem.x0.to(device),
                                  y0=problem.y0.to(device), outer_data=move(problem.outer_data),
                                  inner_data=move(problem.inner_data))


def test_full_batch_problem_runs_whole_on_each_process(process_group_of_one):
    prob = Ridge().problem()
    kw = {"method": "aid-cg", "outer_steps": 5, "inner_steps": 5, "progress": False, "seed": 0}
    assert torch.equal(bilevel.solve(prob, distributed=True, **kw).x, bilevel.solve(prob, **kw).x)


def test_multiblock_problem_runs_whole_under_a_process_group(process_group_of_one, tmp_path):
    """mbbo's MultiBlockProblem has no data to split: it stays what it is (mbbo needs it)."""
    gen = torch.Generator().manual_seed(0)
    data = {"inner": (torch.randn(4, 12, 3, generator=gen, dtype=torch.float64),
                      torch.randn(4, 12, generator=gen, dtype=torch.float64)),
            "outer": (torch.randn(4, 10, 3, generator=gen, dtype=torch.float64),
                      torch.randn(4, 10, generator=gen, dtype=torch.float64))}

    def loss(x, y, batch):
        X, t = batch
        return ((X @ y - t) ** 2).mean() / 2 + (x.exp() * y * y).sum() / 2

    prob = bilevel.MultiBlockProblem(loss, loss, x0=torch.zeros(3, dtype=torch.float64),
                                     y0=torch.zeros(4, 3, dtype=torch.float64), block_data=data)
    kw = {"method": "mbbo", "outer_steps": 4, "blocks_per_step": 2, "progress": False, "seed": 0}
    plain = bilevel.solve(prob, **kw)
    parallel = bilevel.solve(prob, distributed=True, checkpoint=tmp_path / "mb.pt", **kw)
    assert torch.equal(parallel.x, plain.x) and parallel.n_steps == 4


# ---------------------------------------------------------------------------------------
# two processes under torchrun

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER),
            *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}


def _run(*args: str) -> None:
    done = subprocess.run(_torchrun(*args), env=_env(), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _single(method: str, **kw):
    torch.manual_seed(0)  # the DataLoader's first batch, as in the workers
    return bilevel.solve(ridge_problem(), method=method, **{**SOLVE, **kw})


def test_two_processes_match_one_process(tmp_path):
    """Each of 2 gloo processes computes on its slice (8 + 7 rows of 15-row batches); after
    20 outer steps x agrees with one process on the whole batches to 1e-10 (float64).  A
    problem that differs between the processes is refused on both."""
    out = tmp_path / "compare.pt"
    _run("compare", str(out))
    results = torch.load(out, weights_only=True)
    for method in COMPARED:
        reference = _single(method)
        x, y, history = results[method]
        scale = max(1.0, float(reference.x.abs().max()))
        assert float((x - reference.x).abs().max()) / scale <= 1e-10, method
        assert float((reference.x - ridge_problem().x0).abs().max()) > 0.1  # x moved
        assert float((y - reference.y).abs().max()) <= 1e-10 * max(1.0, float(y.abs().max()))
        assert [r["step"] for r in history] == list(range(SOLVE["outer_steps"]))
        for a, b in zip(history, reference.history):
            assert abs(a["outer_loss"] - b["outer_loss"]) <= 1e-10 * abs(b["outer_loss"])
    # every process raised an error for a y0 or data that differ between them (no hang)
    data_differs = "(here: f(x0, y0) on the first batch: other data)"
    for name, here in (("y0", "(here: y0)"), ("data", data_differs)):
        first, second = results[f"refusals {name}"]
        assert "process(es) [1] were given another problem than process 0" in first
        assert here in second and "torch.manual_seed" in second


def test_kill_9_and_resume_under_torchrun(tmp_path):
    """Both processes and torchrun are killed with SIGKILL after the checkpoint of step 8
    (in the callback of step 9); the relaunched group resumes from it and ends exactly where
    an uninterrupted 2-process run ends."""
    out, checkpoint = tmp_path / "run.pt", tmp_path / "checkpoint.pt"
    pid_files = [Path(f"{out}.pid{rank}") for rank in range(2)]
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 (closed below)
    group = subprocess.Popen(_torchrun("run", str(out), "--checkpoint", str(checkpoint),
                                       "--hang-after", "9"),
                             env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while not all(p.exists() and p.read_text() for p in pid_files):
            assert group.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the workers did not reach step 9"
            time.sleep(0.1)
    finally:
        # the launcher first (it must not react), then every worker that wrote its pid (the
        # workers run in sessions of their own: killing the launcher does not end them)
        workers = [int(p.read_text()) for p in pid_files if p.exists() and p.read_text()]
        for pid in [group.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        group.wait(timeout=30)
        log.close()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 8 and saved["status"] is None
    _run("run", str(out), "--checkpoint", str(checkpoint))
    results = torch.load(out, weights_only=True)
    (x, y, history, n_steps), (x_full, y_full, history_full, n_full) = (results["resumed"],
                                                                         results["fresh"])
    assert n_steps == n_full == RUN["outer_steps"]
    assert torch.equal(x, x_full) and torch.equal(y, y_full)
    for a, b in zip(history, history_full, strict=True):
        assert {k: v for k, v in a.items() if k != "wall_time"} == \
            {k: v for k, v in b.items() if k != "wall_time"}
    reference = _single("aid-cg", outer_steps=RUN["outer_steps"])
    assert float((x - reference.x).abs().max()) <= 1e-10 * max(1.0, float(reference.x.abs().max()))
