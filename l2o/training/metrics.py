"""Training metrics on disk: a CSV table, a PNG loss plot and (if installed) TensorBoard.

The CSV and the plot are rewritten from the whole history after every epoch (atomically), so
after a resume they hold exactly the epochs of the checkpoint the run continued from.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from bilevel.persist import atomic_write

__all__ = ["COLUMNS", "TensorBoard", "plot_losses", "write_csv"]

COLUMNS = ("epoch", "train_loss", "train_primal", "train_dual", "train_kkt", "val_loss",
           "val_primal", "val_dual", "val_kkt", "lr", "epoch_time", "elapsed")


def write_csv(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """One row per epoch with :data:`COLUMNS` (empty cells for missing validation)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
    data = text.getvalue().encode()
    atomic_write(path, lambda handle: handle.write(data))


def plot_losses(history: list[dict[str, Any]], path: str | os.PathLike) -> bool:
    """Train and validation loss per epoch (log scale) as a PNG; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    path = Path(path)
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [math.nan if v is None else v for v in values], marker="o",
                    markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (relative squared error, per instance)")
    positive = [row[k] for row in history for k in ("train_loss", "val_loss")
                if row.get(k) is not None and row[k] > 0]
    if positive:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"))
    plt.close(fig)
    return True


class TensorBoard:
    """Scalars per epoch under ``log_dir`` when the ``tensorboard`` package is installed;
    otherwise every method is a no-op. ``purge_step`` drops events of epochs a resumed run
    repeats."""

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key in COLUMNS[1:]:
            if row.get(key) is not None:
                self.writer.add_scalar(key, row[key], row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
