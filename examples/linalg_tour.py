"""A tour of bilevel.linalg on a real problem: the Hessian of L2-regularized logistic
regression on ijcnn1-like synthetic data, solved matrix-free with CG, MINRES and a
Neumann series, checked against a dense solve.

    python examples/linalg_tour.py [--device cuda] [--quick]

``--quick``: 4,000 samples and 100 features instead of 20,000 and 300.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from _quick import parse_with_quick  # examples/_quick.py

from bilevel.linalg import LinearOperator, cg, minres, neumann, power_iteration


# --quick: a smaller problem (options given explicitly still win)
QUICK = {"samples": 4000, "features": 100}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--quick", action="store_true",
                        help="a small problem: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()))
    args = parse_with_quick(parser, argv, QUICK)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(args.samples, args.features, generator=g, dtype=torch.float64).to(args.device)
    w_true = torch.randn(args.features, generator=g, dtype=torch.float64).to(args.device)
    y = torch.sign(X @ w_true + 0.5 * torch.randn(args.samples, generator=g, dtype=torch.float64)
                   .to(args.device))

    def loss(w):
        return F.softplus(-y * (X @ w)).mean() + 1e-3 * (w * w).sum()

    w = torch.zeros(args.features, dtype=torch.float64, device=args.device)
    H = LinearOperator.from_hvp(loss, w)
    b = torch.randn(args.features, generator=g, dtype=torch.float64).to(args.device)
    lam = power_iteration(H)
    dense = torch.func.hessian(loss)(w)
    exact = torch.linalg.solve(dense, b)
    print(f"Hessian of logistic loss: n={args.features}, lambda_max ~ {lam:.4g}, "
          f"lambda_min = {float(torch.linalg.eigvalsh(dense)[0]):.4g}")
    print(f"{'solver':8s} {'iters':>6s} {'rel.resid':>10s} {'rel.error':>10s} {'time ms':>8s}  status")
    for name, solve in [("cg", cg), ("minres", minres), ("neumann", neumann)]:
        kwargs = {"maxiter": 5000} if name == "neumann" else {}
        t0 = time.perf_counter()
        x, info = solve(H, b, tol=1e-8, **kwargs)
        ms = (time.perf_counter() - t0) * 1e3
        err = float(torch.linalg.norm(x - exact) / torch.linalg.norm(exact))
        print(f"{name:8s} {info.iterations:6d} {info.residual:10.2e} {err:10.2e} {ms:8.1f}  "
              f"{info.reason}")


if __name__ == "__main__":
    main()
