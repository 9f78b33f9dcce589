"""Where l2o computes: one reading of the ``device`` argument for the whole package.

Every function of l2o that takes ``device`` (``solve_lp``, ``prepare``, ``solve_with_model``,
``load_model``, ``build_dataset``, ``train``) reads it with :func:`resolve_device`:

    "auto" (or None)    CUDA when this machine has a usable GPU, else the CPU
    "cpu"               the CPU
    "cuda", "cuda:N"    the (N-th) GPU; a clear ValueError when CUDA is not available
    torch.device        as given (checked like its string)

Without the check torch fails later, deep inside the first ``.to(device)``, with a bare
``AssertionError: Torch not compiled with CUDA enabled`` that does not say what to pass instead.

:func:`fixed_order_algorithms` is how a GPU computes the same bits in every run
(``solve_lp(..., reproducible=True)``): torch's deterministic algorithms for a block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["DeviceUnavailableError", "fixed_order_algorithms", "resolve_device"]


class DeviceUnavailableError(ValueError):
    """A device was asked for that this machine does not have (e.g. CUDA on a CPU machine)."""


def resolve_device(device: Any = "auto") -> torch.device:
    """The ``torch.device`` meant by ``device`` (see the module docstring).

    Args:
        device: "auto", None (the same), "cpu", "cuda", "cuda:N", a ``torch.device``, or an
            int N (torch's shorthand for "cuda:N").

    Returns:
        ``torch.device("cuda")`` or ``torch.device("cpu")`` for "auto"; otherwise the device
        named (``"cuda"`` keeps index None: the current CUDA device).

    Raises:
        DeviceUnavailableError (a ValueError): CUDA asked for without CUDA, or a GPU index
            this machine does not have; the message names ``device="cpu"`` / ``"auto"``.
        ValueError: a string that names no device at all.
        TypeError: neither a string, an int, None nor a ``torch.device``.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got "
                        f"{type(device).__name__} {device!r}")
    if isinstance(device, int):
        device = f"cuda:{device}"  # torch.device(N) means the N-th accelerator
    try:
        resolved = torch.device(device)
    except RuntimeError as error:  # torch's "Expected one of cpu, cuda, ... device type"
        raise ValueError(f"device={str(device)!r} is not a device: use 'auto', 'cpu', 'cuda' or "
                         f"'cuda:N' ({str(error).splitlines()[0]})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise DeviceUnavailableError(
                f"device={str(device)!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}, {why}); use device=\"cpu\", or device=\"auto\" to take a "
                f"GPU only when there is one")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise DeviceUnavailableError(
                f"device={str(device)!r}: this machine has {count} CUDA device(s) (cuda:0 to "
                f"cuda:{count - 1}); use one of them, device=\"auto\" or device=\"cpu\"")
    return resolved


@contextmanager
def fixed_order_algorithms() -> Iterator[None]:
    """torch's deterministic algorithms for the block, the previous setting restored after.

    On CUDA, ``index_add_`` and ``scatter_reduce`` sums add by atomics in an order that varies
    from run to run (the last bits of a float64 sum with it); in this mode torch adds them in a
    fixed order (sorted first: slower).  ``warn_only=True``: an op without a deterministic
    implementation warns instead of raising, so the warning says where the bits may still
    vary.  The setting is process-wide while the block runs (not for concurrent threads).
    """
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
