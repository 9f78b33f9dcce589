"""End-to-end curves for every ``bilevel.solve`` method on both bundled tasks.

Runs ``examples/data_cleaning.py`` (MNIST hyper-cleaning: validation loss, test accuracy
and F1 of the flagged examples against wall time) and ``examples/hyperparameter_tuning.py``
(ijcnn1 per-feature L2: validation and test loss against wall time, true hypergradient
norm at the end) with all methods, and writes each one's table, JSON and PNG to --out (default ``benchmarks/out/bilevel_curves``).

    python benchmarks/bilevel_curves.py --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paths import default_out  # noqa: E402

ALL = "aid-cg,aid-minres,aid-neumann,itd,borep,penalty"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--methods", default=ALL)
    parser.add_argument("--tasks", default="cleaning,tuning")
    parser.add_argument("--cleaning-steps", type=int, default=100)
    parser.add_argument("--tuning-steps", type=int, default=300)
    parser.add_argument("--tuning-methods", default=None, help="default: --methods")
    parser.add_argument("--tuning-lr-decay", type=float, default=None,
                        help="default: the example's per-method schedule")
    parser.add_argument("--cleaning-hidden", type=int, default=None,
                        help="MNIST cleaning with a 2-layer MLP of this width (default: linear)")
    parser.add_argument("--out", default=str(default_out("bilevel_curves")))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--methods", args.methods, "--quiet"]
    if "cleaning" in args.tasks:
        hidden = [] if args.cleaning_hidden is None else ["--hidden", str(args.cleaning_hidden)]
        _load("data_cleaning").main(common + hidden + [
            "--steps", str(args.cleaning_steps), "--plot", str(out / "curves_cleaning.png"),
            "--json", str(out / "curves_cleaning.json")])
    if "tuning" in args.tasks:
        methods = args.tuning_methods or args.methods
        decay = [] if args.tuning_lr_decay is None else ["--lr-decay", str(args.tuning_lr_decay)]
        _load("hyperparameter_tuning").main([
            "--device", args.device, "--methods", methods, "--quiet",
            "--steps", str(args.tuning_steps), *decay,
            "--plot", str(out / "curves_tuning.png"), "--json", str(out / "curves_tuning.json")])


if __name__ == "__main__":
    main()
