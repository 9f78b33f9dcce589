"""Atomic checkpoints of a :func:`bilevel.solve` run.

The file holds one dict: the algorithm's state (x, y, v / z / momentum, outer optimizer
state, inner step size), the outer step, the batch streams' positions, the RNG states,
the history, the elapsed wall time, how the run ended (None while it runs), and the
fingerprint of the run (:func:`fingerprint`): a checkpoint resumes only the run that
wrote it.  It is written atomically (:mod:`bilevel.persist`),
so a crash mid-write leaves the previous checkpoint intact.  Everything in it is tensors,
numbers, strings, lists and dicts, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from .persist import atomic_save, rng_state, safe_load, set_rng_state

__all__ = ["check_fingerprint", "fingerprint", "load_checkpoint", "rng_state", "save_checkpoint",
           "set_rng_state"]

FORMAT = "bilevel-solve-v3"
# relative tolerance on f(x0, y0), g(x0, y0): reductions on a GPU may differ in the last bits
_VALUE_RTOL = 1e-5


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically."""
    atomic_save({"format": FORMAT, **payload}, path)


def load_checkpoint(path: str | os.PathLike,
                    map_location: torch.device | str | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ValueError: the file is not a readable bilevel solve checkpoint (names the path and
            what is wrong).
    """
    try:
        payload = safe_load(path, "bilevel.solve checkpoint", map_location=map_location)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from err
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        raise ValueError(f"{os.fspath(path)}: not a checkpoint of this bilevel.solve "
                         f"(format {found!r}, expected {FORMAT!r})")
    return payload


def fingerprint(problem: Any, method: str, options: Mapping[str, Any]) -> dict:
    """What identifies a run: the variables' structure, shapes and dtypes, f(x0, y0) and
    g(x0, y0) on the first batches (edited data or objectives change them), the method and
    its options (numbers and strings as they are, callables by name)."""
    def variables(tree: Any, prefix: str) -> dict:
        if isinstance(tree, Mapping):
            return {k: v for key in tree for k, v in variables(tree[key], f"{prefix}[{key!r}]")
                    .items()}
        return {prefix: [list(tree.shape), str(tree.dtype)]}

    return {"variables": {**variables(problem.x0, "x0"), **variables(problem.y0, "y0")},
            "values": list(problem.initial_values), "method": method,
            "options": {k: _describe(v) for k, v in sorted(options.items())}}


def check_fingerprint(path: str | os.PathLike, saved: Mapping, current: Mapping) -> None:
    """Raise a ValueError naming every difference between the run that wrote the
    checkpoint at ``path`` (``saved``) and this one (``current``)."""
    differences = []
    if saved["method"] != current["method"]:
        differences.append(f"method {saved['method']!r}, not {current['method']!r}")
    for name in sorted(set(saved["variables"]) | set(current["variables"])):
        old, new = saved["variables"].get(name), current["variables"].get(name)
        if old != new:
            differences.append(f"{name}: {_variable(old)} there, {_variable(new)} here")
    for label, old, new in zip(("f(x0, y0)", "g(x0, y0)"), saved["values"], current["values"]):
        if not math.isclose(old, new, rel_tol=_VALUE_RTOL, abs_tol=1e-12):
            differences.append(f"{label} = {old:.9g} there, {new:.9g} here (other data or "
                               "objectives)")
    for name in sorted(set(saved["options"]) | set(current["options"])):
        old, new = saved["options"].get(name), current["options"].get(name)
        if old != new:
            differences.append(f"option {name} = {old!r} there, {new!r} here")
    if differences:
        raise ValueError(f"solve: checkpoint {os.fspath(path)!r} was written by another run: "
                         + "; ".join(differences)
                         + ". Delete it, or pass another checkpoint path")


def _variable(entry: list | None) -> str:
    return "absent" if entry is None else f"shape {tuple(entry[0])} {entry[1]}"


def _describe(value: Any) -> Any:
    """A value as it identifies a run: plain data as is, anything else by name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _describe(v) for k, v in sorted(value.items())}
    func = getattr(value, "func", None)  # functools.partial
    if func is not None and hasattr(value, "keywords"):
        return {"callable": _describe(func), "keywords": _describe(value.keywords)}
    if hasattr(value, "function") and hasattr(value, "options"):  # a LinearSolver
        return {"solver": value.name, "options": _describe(value.options)}
    name = getattr(value, "__qualname__", None) or type(value).__qualname__
    return f"{getattr(value, '__module__', '') or ''}.{name}"
