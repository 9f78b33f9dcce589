"""Decision-focused learning of shortest paths: Fenchel-Young through ``l2o.LPLayer`` against
two-stage least squares.

The setting of Elmachtoub & Grigas, "Smart 'Predict, then Optimize'" (Management Science 2022),
section 6.1: a 5 x 5 grid whose 40 edges point right or down, a path from the top-left to the
bottom-right corner, and edge costs that depend on p = 5 features through a degree-4 polynomial,
with multiplicative noise (their generator, divided by 3.5^deg as PyEPO's is, which keeps the
costs near 1 and changes neither the shortest paths nor the normalized regret):

    B in {0, 1}^(40 x 5) ~ Bernoulli(1/2) (fixed),  x_i ~ N(0, I_5),
    c_ij = [((B x_i)_j / sqrt(5) + 3)^deg + 1] / 3.5^deg * e_ij,   e_ij ~ U[1 - noise, 1 + noise].

The shortest path is the LP  min c^T x  s.t.  flow conservation (one unit leaves the source and
reaches the sink), 0 <= x <= 1, whose optimum is a path (the incidence matrix is totally
unimodular).  A linear model c_hat = W x + b learns the costs from the features, two ways:

* two-stage: least squares on the costs (MSE), then solve with the prediction;
* Fenchel-Young: the loss of the perturbed shortest path (Berthet et al. 2020), whose gradient
  x_true - x_eps(c_hat) needs only the true paths and one batched solve of the perturbed LPs
  (``l2o.fenchel_young_loss`` through an ``LPLayer(mode="perturbed")``).

Both start from the same model (zero weights, the mean training cost as bias: one fixed path)
and are scored by the normalized regret on the test instances,
sum_i (c_i^T x*(c_hat_i) - c_i^T x*(c_i)) / sum_i c_i^T x*(c_i), after every epoch.

    python examples/shortest_path_dfl.py [--device cuda] [--epochs N] [--quick] [--plot PATH]

``--quick``: 200 training and 100 test instances, 3 epochs, 4 perturbation samples (a smoke run;
the default is 5 epochs, 8 samples).

Prints a table of the test regret per epoch and saves the regret-against-epochs plot
(default ``runs/shortest_path_dfl/regret.png``, or ``..._quick``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import networkx as nx
import torch
from _quick import parse_with_quick  # examples/_quick.py

import l2o

# Adam step sizes that work for each method here (the MSE of the costs converges in an epoch
# at 0.05; the Fenchel-Young gradient is a difference of paths, noisier and larger)
DEFAULT_LR = {"two-stage": 0.05, "fenchel-young": 0.01}
# --quick: a smoke run (options given explicitly still win)
QUICK = {"n_train": 200, "n_test": 100, "epochs": 3, "samples": 4}


def grid_shortest_path_lp(size: int = 5) -> tuple[l2o.LinearProgram, list[tuple]]:
    """The shortest path LP of a size x size grid, edges pointing right and down (costs 0 here).

    Rows: flow conservation, out - in = 1 at the top-left corner (the source), 0 at the inner
    nodes; the sink's row is dropped (it is minus the sum of the others).  Columns: the edges,
    0 <= x_e <= 1.  Returns the LP and the edges (u, v) in column order.
    """
    grid = nx.grid_2d_graph(size, size)
    edges = sorted((u, v) if u < v else (v, u) for u, v in grid.edges())  # right / down
    nodes = sorted(grid.nodes())
    row = {node: i for i, node in enumerate(nodes[:-1])}                    # the sink has none
    incidence = torch.zeros(len(row), len(edges), dtype=torch.float64)
    for j, (u, v) in enumerate(edges):
        incidence[row[u], j] = 1.0
        if v in row:
            incidence[row[v], j] = -1.0
    supply = torch.zeros(len(row), dtype=torch.float64)
    supply[row[nodes[0]]] = 1.0
    lp = l2o.LinearProgram.create(torch.zeros(len(edges)), incidence, supply, supply, 0.0, 1.0,
                                  name=f"shortest_path_{size}x{size}")
    return lp, edges


def generate(n: int, B: torch.Tensor, degree: int, noise: float, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """n (features (n, p), costs (n, d)) pairs of Elmachtoub & Grigas's generator (module
    docstring)."""
    d, p = B.shape
    features = torch.randn(n, p, generator=generator, dtype=torch.float64)
    signal = ((features @ B.T / p ** 0.5 + 3) ** degree + 1) / 3.5 ** degree
    factor = 1 - noise + 2 * noise * torch.rand(n, d, generator=generator, dtype=torch.float64)
    return features, signal * factor


class Regret:
    """Normalized regret of predicted costs on fixed instances (true costs and optima)."""

    def __init__(self, solver: l2o.LPLayer, data: tuple, costs: torch.Tensor):
        self.solver, self.data, self.costs = solver, data, costs
        self.paths, self.optimal = solver(costs, *data)

    def __call__(self, predicted: torch.Tensor) -> float:
        with torch.no_grad():
            chosen, _ = self.solver(predicted, *self.data)
        return float(((self.costs * chosen).sum() - self.optimal.sum()) / self.optimal.sum())


def train(method: str, split: dict, lp: l2o.LinearProgram, args) -> dict:
    """Train a linear model with ``method`` ("two-stage" or "fenchel-young"); the test regret
    after each epoch (epoch 0: the initial model)."""
    # both start from the same model: the mean training cost, whatever the features
    model = torch.nn.Linear(split["train_x"].shape[1], split["train_c"].shape[1],
                            dtype=torch.float64)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(split["train_c"].mean(0))
    torch.manual_seed(args.seed)                    # the batches' order and the perturbations
    optimizer = torch.optim.Adam(model.parameters(),
                                 lr=args.lr if args.lr is not None else DEFAULT_LR[method])
    data = l2o.LPLayer.lp_inputs(lp)[1:]            # A values and bounds, shared by the batch
    layer = l2o.LPLayer.from_lp(lp, mode="perturbed", eps=args.eps, samples=args.samples,
                                device=args.device, tol=args.tol)
    regret = split["regret"]
    curve = [regret(model(split["test_x"]).detach())]
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(split["train_x"].shape[0])
        for batch in order.split(args.batch_size):
            predicted = model(split["train_x"][batch])
            if method == "two-stage":
                loss = torch.nn.functional.mse_loss(predicted, split["train_c"][batch])
            else:
                loss = l2o.fenchel_young_loss(predicted, split["train_paths"][batch], layer,
                                              *data)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        curve.append(regret(model(split["test_x"]).detach()))
    return {"method": method, "regret": curve, "train_time": time.perf_counter() - start}


def make_split(lp: l2o.LinearProgram, args) -> dict:
    """Training and test instances, the true paths of the training ones and the test regret."""
    generator = torch.Generator().manual_seed(args.seed)
    B = torch.bernoulli(torch.full((lp.num_cols, args.features), 0.5, dtype=torch.float64),
                        generator=generator)
    train_x, train_c = generate(args.n_train, B, args.degree, args.noise, generator)
    test_x, test_c = generate(args.n_test, B, args.degree, args.noise, generator)
    solver = l2o.LPLayer.from_lp(lp, device=args.device, tol=args.tol)
    data = l2o.LPLayer.lp_inputs(lp)[1:]
    train_paths, _ = solver(train_c, *data)
    return {"train_x": train_x, "train_c": train_c, "train_paths": train_paths,
            "test_x": test_x, "regret": Regret(solver, data, test_c)}


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for run in runs:
        ax.plot(range(len(run["regret"])), run["regret"], marker="o", label=run["method"])
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalized test regret")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="shortest paths on a 5x5 grid: Fenchel-Young (LPLayer) vs two-stage")
    parser.add_argument("--device", default="cpu", help="where the LPs are solved")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: the LPs are tiny, more threads only contend)")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--degree", type=int, default=4, help="of the cost polynomial")
    parser.add_argument("--noise", type=float, default=0.5, help="half-width of the noise")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam's step size (default: per method, DEFAULT_LR)")
    parser.add_argument("--eps", type=float, default=0.2, help="perturbation scale")
    parser.add_argument("--samples", type=int, default=8, help="perturbations per instance")
    parser.add_argument("--tol", type=float, default=1e-4, help="of each LP solve")
    parser.add_argument("--plot", type=Path, default=None,
                        help="default runs/shortest_path_dfl[_quick]/regret.png")
    parser.add_argument("--json", type=Path, default=None, help="write the curves here")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                         for k, v in QUICK.items()))
    args = parse_with_quick(parser, argv, QUICK)
    if args.plot is None:
        args.plot = Path("runs") / f"shortest_path_dfl{'_quick' if args.quick else ''}" / \
            "regret.png"
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    lp, _ = grid_shortest_path_lp()
    split = make_split(lp, args)
    runs = [train(method, split, lp, args) for method in ("two-stage", "fenchel-young")]
    print(f"normalized test regret ({args.n_train} training / {args.n_test} test instances, "
          f"degree {args.degree}, noise {args.noise})")
    print("epoch " + "".join(f"{run['method']:>16}" for run in runs))
    for epoch in range(args.epochs + 1):
        print(f"{epoch:5d} " + "".join(f"{run['regret'][epoch]:16.4f}" for run in runs))
    print("train time " + "".join(f"{run['train_time']:15.1f}s" for run in runs))
    plot(runs, args.plot, f"shortest path 5x5, deg {args.degree}, n = {args.n_train}")
    print(f"plot: {args.plot}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "runs": runs}, indent=1))
    return runs


if __name__ == "__main__":
    main()
