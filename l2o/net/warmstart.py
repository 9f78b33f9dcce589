"""Two-stage solving: load a trained PDHG-Net, predict (x, y), warm-start ``l2o.solve_lp``.

    model = l2o.net.load_model("pagerank")          # a bundled name or a checkpoint path
    ws = l2o.net.predict_warm_start(model, lp)      # WarmStart(x, y, prediction_time, ...)
    res = l2o.solve_lp(lp, warm_start=(ws.x, ws.y)) # or warm_start=ws

or, preconditioning once for both stages (the same result, less time):

    res, ws = l2o.net.solve_with_model(model, lp, tol=1e-4, device="cuda")

which is ``prepared = l2o.pdhg.prepare(lp, device)`` (the solver's checks, copy to the device
and preconditioning), ``ws = predict_warm_start(model, prepared)`` (the model's graph built from
that scaled LP on the device) and ``solve_lp(prepared, warm_start=ws)`` (no second setup; the
start handed over on the device).

The prediction is made feasible for the simple constraints before it is handed over:

* x is projected onto the column bounds, x = proj_[l_c, u_c](x^);
* y is projected onto the cone of dual signs of the row types (the shared sign convention of the
  minimization form, :mod:`l2o.lp.kkt`: the Lagrangian is c^T x - y^T A x, so
  y_i pairs with the lower bound l_r,i through y_i^+ and with u_r,i through y_i^-):

      row type            l_r,i      u_r,i      y_i
      equality, ranged    finite     finite     free
      A_i x >= l          finite     +inf       >= 0
      A_i x <= u          -inf       finite     <= 0
      free row            -inf       +inf       = 0

Bundled models are the ``*.pt`` files of the package folder ``l2o/models`` (``pagerank.pt`` is
the name ``"pagerank"``); they are ordinary training checkpoints (:mod:`l2o.training.
checkpoint`), loaded with ``torch.load(weights_only=True)`` like any other.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import HeteroData

from l2o.device import resolve_device
from l2o.lp.kkt import kkt_error as lp_kkt_error
from l2o.lp.kkt import sign_bounds
from l2o.models import MODELS_DIR, bundled_models
from l2o.training.checkpoint import (
    CheckpointError,
    NonFiniteWeightsError,
    check_finite_weights,
    load_checkpoint,
    save_checkpoint,
)

from .graph import lp_to_graph, unscale_solution
from .model import PDHGNet
from .power import PowerIterationNet

# The model classes a checkpoint may hold (its "model_class" key -> the class): each takes a
# graph of an LP and returns (x, y), and has ``config``, ``scaling`` and ``needs_operator_norm``.
MODEL_CLASSES = {f"{cls.__module__}.{cls.__qualname__}": cls
                 for cls in (PDHGNet, PowerIterationNet)}

__all__ = ["MODELS_DIR", "MODEL_CLASSES", "CheckpointError", "ModelNotFoundError", "NonFiniteWeightsError",
           "WarmStart", "bundled_models",
           "inference_graph", "kkt_error", "load_checkpoint_model", "load_model",
           "predict_warm_start", "project_dual_signs", "resolve_model", "save_model",
           "solve_with_model"]


class ModelNotFoundError(FileNotFoundError):
    """``load_model`` got neither an existing checkpoint file nor a bundled model name."""


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint file of a model given by path or by bundled name (a path wins).

    Raises:
        ModelNotFoundError: neither an existing file nor a bundled name (the message lists the
            bundled names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    names = ", ".join(bundled) or "none installed"
    what = "is a directory, not a checkpoint file" if path.is_dir() else \
        "is neither a checkpoint file nor a bundled model name"
    raise ModelNotFoundError(f"model {str(name_or_path)!r} {what} (bundled models: {names})")


def load_model(name_or_path: str | os.PathLike, device: Any = "cpu"):
    """The trained model (a :class:`PDHGNet` or another of :data:`MODEL_CLASSES`, e.g. the
    bundled ``pagerank``'s :class:`~l2o.net.power.PowerIterationNet`) of a bundled name or a
    checkpoint path, in eval mode.

    A path that exists wins over a bundled model of the same name. The checkpoint is read with
    ``torch.load(weights_only=True)``: loading never runs code from the file.

    Args:
        name_or_path: a bundled name (:func:`bundled_models`, e.g. ``"pagerank"``) or the path
            of a checkpoint written by ``l2o train`` (``best.pt`` / ``last.pt``).
        device: where the model goes ("cpu", "auto", "cuda", ...: :func:`l2o.device.
            resolve_device`).

    Raises:
        DeviceUnavailableError (a ValueError): CUDA asked for without CUDA.
        ModelNotFoundError (a FileNotFoundError): no such file and no such bundled name.
        CheckpointError (a ValueError): a corrupted or foreign file, another model class, or
            weights that do not fit the stored configuration; :class:`NonFiniteWeightsError`
            (a CheckpointError) for weights holding nan/inf, naming the file and parameter.
    """
    device = resolve_device(device)  # before reading the file: a wrong device fails fast
    return load_checkpoint_model(resolve_model(name_or_path), device)


def load_checkpoint_model(path: str | os.PathLike, device: Any = "cpu"):
    """The model (of :data:`MODEL_CLASSES`) stored in the training checkpoint ``path`` (no name
    lookup)."""
    device = resolve_device(device)
    checkpoint = load_checkpoint(path)
    cls = MODEL_CLASSES.get(checkpoint.get("model_class"))
    config = checkpoint.get("model_config")
    if cls is None or not isinstance(config, dict):
        raise CheckpointError(f"{path}: holds a {checkpoint.get('model_class')!r}, not a "
                              f"{' or a '.join(MODEL_CLASSES)} with its config")
    if isinstance(checkpoint["model"], dict):
        check_finite_weights(checkpoint["model"], path)
    try:
        model = cls(**config)
        state = checkpoint["model"]
        dtype = next(iter(state.values())).dtype
        model.to(dtype).load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, StopIteration, AttributeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit {cls.__name__}({config}): "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from exc
    return model.to(device).eval()


def save_model(model, path: str | os.PathLike, *, config: dict[str, Any] | None = None,
               history: list[dict[str, Any]] | None = None,
               best: dict[str, Any] | None = None, epoch: int = 0) -> None:
    """Write ``model`` (a :class:`PDHGNet` or another of :data:`MODEL_CLASSES`) as a
    weights-only checkpoint that :func:`load_model` reads (atomically).

    The training checkpoint format without the optimizer and RNG states (empty): what a
    bundled model needs, at a third of the size of ``best.pt`` with Adam's moments. It cannot
    be resumed by ``l2o train --resume``. ``config``, ``history``, ``best`` and ``epoch``
    record how the model was trained (e.g. copied from the training checkpoint).
    """
    name = f"{type(model).__module__}.{type(model).__qualname__}"
    if MODEL_CLASSES.get(name) is not type(model):
        raise TypeError(f"save_model: expected a PDHGNet or another of MODEL_CLASSES, got "
                        f"{type(model).__name__}")
    save_checkpoint({"epoch": int(epoch), "model": model.state_dict(),
                     "model_class": name,
                     "model_config": dict(model.config), "optimizer": {}, "rng": {},
                     "config": dict(config or {}), "history": list(history or []),
                     "best": dict(best or {})}, path)


@dataclass(frozen=True)
class WarmStart:
    """A predicted primal-dual start point of one LP.

    Attributes:
        x: (n,) float64 CPU, inside the column bounds.
        y: (m,) float64 CPU, row duals with the signs the row types allow (module docstring).
        prediction_time: seconds for graph construction + inference (+ the copy back to the
            host), CUDA synchronized: graph_time + inference_time.
        graph_time: seconds to build the (preconditioned) graph and move it to the device
            (from a PreparedLP: the graph from its scaled LP, already on the device).
        inference_time: seconds of the forward pass, unscaling, projection and copying back.
        device: where the model ran.
        x_device, y_device: x and y (the same float64 values) on ``device`` when predicted
            from a PreparedLP (else None): iterating hands these over, so the solve reads the
            start from the device without a host round trip.

    Iterating gives (x, y), so ``solve_lp(lp, warm_start=ws)`` works like ``(ws.x, ws.y)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    prediction_time: float
    graph_time: float
    inference_time: float
    device: str
    x_device: torch.Tensor | None = None
    y_device: torch.Tensor | None = None

    def __iter__(self):
        if self.x_device is not None:
            return iter((self.x_device, self.y_device))
        return iter((self.x, self.y))


def project_dual_signs(lp, y: torch.Tensor) -> torch.Tensor:
    """y projected onto the dual sign cone of ``lp``'s row types (module docstring table).

    Shapes: y (m,) -> (m,) float64 CPU.
    """
    y = torch.as_tensor(y).detach().to("cpu", torch.float64).reshape(-1)
    if y.numel() != lp.num_rows:
        raise ValueError(f"project_dual_signs: y has {y.numel()} entries, the LP has "
                         f"{lp.num_rows} rows")
    # y_i < 0 needs a finite u_r,i, y_i > 0 a finite l_r,i
    return torch.clamp(y, *sign_bounds(lp.row_lower.double().cpu(),
                                       lp.row_upper.double().cpu()))


def inference_graph(lp, *, scaling: bool, operator_norm: bool = True,
                    dtype: torch.dtype = torch.float32, device: Any = "cpu",
                    normalize: tuple[float, float] | None = None) -> HeteroData:
    """The graph a model predicts from: ``lp_to_graph(lp, dtype=dtype, reverse=False,
    scaling=scaling, operator_norm=operator_norm, device=device)`` (no labels, no reversed
    edges), built on ``device``.

    ``lp`` may be a :class:`l2o.pdhg.PreparedLP` (then its device and, with ``scaling``, its
    scaled LP are used as they are). Models with ``PDHGNet(operator_norm="bound")`` pass
    ``operator_norm=False`` (``model.needs_operator_norm``): ``a_norm`` = 1, no power iteration.
    ``normalize``: a model's ``normalize`` (:func:`l2o.net.graph.normalize_graph`).
    """
    return lp_to_graph(lp, dtype=dtype, reverse=False, scaling=scaling,
                       operator_norm=operator_norm, device=device, normalize=normalize)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict_warm_start(model: PDHGNet, lp, device: Any = None) -> WarmStart:
    """Predict a warm start (x, y) of ``lp`` with ``model`` (see :class:`WarmStart`).

    Builds the graph the model expects on ``device`` (:func:`inference_graph`; preconditioned if
    ``model.scaling``), runs the model there (default device: the model's; the model is moved
    to ``device``), maps the prediction back to the LP's own variables (minimization form) and
    projects x onto the column bounds and y onto the dual sign cone of the row types.

    ``lp`` may be a :class:`l2o.pdhg.PreparedLP` (:func:`l2o.pdhg.prepare`, with the default
    preconditioning the model was trained with): the graph is then built from its scaled LP on
    its device, the unscaling and projection run there too (float64), and the WarmStart also
    holds the start on the device (``x_device``, ``y_device``) for ``solve_lp(prepared, ...)``.
    The values are those of the plain path up to the rounding of the preconditioning (the
    solver scales LPs under ``cpu_setup_nnz`` nonzeros on the CPU, the plain path on ``device``).

    Returns:
        A :class:`WarmStart` with x (n,), y (m,) float64 on the CPU.

    Raises:
        ValueError: a PreparedLP on another device than ``device``, or prepared with other
            preconditioning options than the model's graphs had; nan/inf predicted.
    """
    from l2o.pdhg import PreparedLP

    if isinstance(lp, PreparedLP):
        return _predict_prepared(model, lp, device)
    device = next(model.parameters()).device if device is None else resolve_device(device)
    model = model.to(device).eval()
    dtype = next(model.parameters()).dtype
    _sync(device)
    start = time.perf_counter()
    graph = inference_graph(lp, scaling=model.scaling, operator_norm=model.needs_operator_norm,
                            dtype=dtype, device=device, normalize=getattr(model, "normalize", None))
    _sync(device)
    built = time.perf_counter()
    x, y = unscale_solution(graph, *model(graph))
    x, y = x.to("cpu", torch.float64), y.to("cpu", torch.float64)  # synchronizes
    done = time.perf_counter()
    x = torch.clamp(x, lp.col_lower.double().cpu(), lp.col_upper.double().cpu())
    y = project_dual_signs(lp, y)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError(f"predict_warm_start: the model predicted nan/inf for {lp.name!r}")
    return WarmStart(x=x, y=y, prediction_time=done - start, graph_time=built - start,
                     inference_time=done - built, device=str(device))


# The preconditioning of every graph the models were trained on (lp_to_graph -> scale_lp's
# defaults, which are also SolverOptions' defaults).
_GRAPH_SCALING = {"ruiz_iterations": 10, "geometric_mean_passes": 0, "pock_chambolle": True,
                  "bound_objective_rescaling": True}


def _predict_prepared(model: PDHGNet, prepared, device: Any) -> WarmStart:
    """predict_warm_start from a PreparedLP: graph, unscaling and projection on its device."""
    from l2o.pdhg.scaling import same_device

    if device is not None and not same_device(prepared.device, device):
        raise ValueError(f"predict_warm_start: the PreparedLP lives on {prepared.device}, "
                         f"not on {device}")
    if model.scaling:
        differs = {k: getattr(prepared.options, k) for k, v in _GRAPH_SCALING.items()
                   if getattr(prepared.options, k) != v}
        if differs:
            raise ValueError(f"predict_warm_start: the PreparedLP was preconditioned with "
                             f"{differs}; the model's graphs use {_GRAPH_SCALING}")
    lp, device = prepared.lp, prepared.device
    model = model.to(device).eval()
    dtype = next(model.parameters()).dtype
    _sync(device)
    start = time.perf_counter()
    graph = inference_graph(prepared, scaling=model.scaling,
                            operator_norm=model.needs_operator_norm, dtype=dtype,
                            normalize=getattr(model, "normalize", None))
    _sync(device)
    built = time.perf_counter()
    x, y = unscale_solution(graph, *model(graph))
    x, y = _project_on_device(prepared, x.to(torch.float64), y.to(torch.float64))
    finite = torch.isfinite(x).all() & torch.isfinite(y).all()
    x_cpu, y_cpu = x.cpu(), y.cpu()                                   # synchronizes
    done = time.perf_counter()
    if not bool(finite):
        raise ValueError(f"predict_warm_start: the model predicted nan/inf for {lp.name!r}")
    return WarmStart(x=x_cpu, y=y_cpu, prediction_time=done - start, graph_time=built - start,
                     inference_time=done - built, device=str(device), x_device=x, y_device=y)


def _project_on_device(prepared, x: torch.Tensor, y: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """x onto the column bounds, y onto the dual sign cone (as the CPU path), in float64.

    The PreparedLP's original bounds and the termination's dual cone (the same cone as
    :func:`project_dual_signs`) when it is float64; the LP's own bounds otherwise (a float32
    copy of a bound is not the bound).
    """
    p, t = prepared.scaled, prepared.termination
    if prepared.dtype == torch.float64:
        return (torch.clamp(x, p.orig_col_lower, p.orig_col_upper),
                torch.clamp(y, t.dual_rec_lower, t.dual_rec_upper))
    lp = prepared.lp
    f64 = {"device": x.device, "dtype": torch.float64}
    x = torch.clamp(x, lp.col_lower.to(**f64), lp.col_upper.to(**f64))
    return x, torch.clamp(y, *sign_bounds(lp.row_lower.to(**f64), lp.row_upper.to(**f64)))


def solve_with_model(model: PDHGNet, lp, tol: float = 1e-4, device: Any = None,
                     dtype: torch.dtype = torch.float64, **solve_options: Any):
    """Two-stage solve with one shared setup: PDHG-Net's warm start, then ``l2o.solve_lp``.

        prepared = l2o.pdhg.prepare(lp, device, dtype, **preparation options)
        ws = predict_warm_start(model, prepared)        # graph from the prepared scaled LP
        res = solve_lp(prepared, tol=tol, warm_start=ws, **other options)

    The result equals ``solve_lp(lp, tol=tol, device=device, dtype=dtype, warm_start=
    predict_warm_start(model, lp, device), ...)`` up to the rounding of the preconditioning,
    while the LP is copied to the device and preconditioned once instead of twice.

    Times: ``ws.prediction_time`` is the graph and the forward pass (no setup);
    ``res.solve_time`` is the solver's setup (``prepare``) plus its iterations, as for a plain
    solve, so ``ws.prediction_time + res.solve_time`` is the whole two-stage time.

    Args:
        model: a :class:`PDHGNet` (e.g. :func:`load_model`).
        lp: an :class:`l2o.LinearProgram`.
        tol, dtype: as in :func:`l2o.solve_lp`.
        device: where both stages run (default: the model's device; "auto", "cpu", "cuda", ...
            as :func:`l2o.device.resolve_device` reads them).
        **solve_options: other arguments of :func:`l2o.solve_lp` (time_limit, iteration_limit,
            progress, check_every, SolverOptions fields); the preparation's are passed to
            :func:`l2o.pdhg.prepare`, ``profile`` to both.

    Returns:
        (LPResult, WarmStart).
    """
    from l2o.pdhg import prepare, solve_lp
    from l2o.pdhg.options import PREPARE_OPTIONS

    device = next(model.parameters()).device if device is None else resolve_device(device)
    if "warm_start" in solve_options:
        raise TypeError("solve_with_model: the model predicts the warm start; use "
                        "l2o.solve_lp for a given one")
    setup = {k: solve_options[k] for k in (*PREPARE_OPTIONS, "profile") if k in solve_options}
    prepared = prepare(lp, device, dtype, **setup)
    warm = predict_warm_start(model, prepared)
    result = solve_lp(prepared, tol=tol, warm_start=warm, **solve_options)
    return result, warm


def kkt_error(lp, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Relative KKT errors of a point (x, y) of ``lp``: the solver's criteria, float64, CPU
    (:func:`l2o.lp.kkt.kkt_error`, with r = proj_K(c - A^T y) the reduced costs of the signs
    the column bounds allow).  x should lie in its bounds and y have the allowed signs (as a
    :class:`WarmStart`).

    Returns:
        {"rel_primal_residual", "rel_dual_residual", "rel_gap"} as floats.
    """
    return lp_kkt_error(lp, x, y)
