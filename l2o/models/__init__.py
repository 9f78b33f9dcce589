"""Pretrained warm-start models shipped with the package: ``l2o/models/NAME.pt``.

Each file is an ordinary training checkpoint of ``l2o train`` (:mod:`l2o.training.checkpoint`),
loaded by :func:`l2o.net.load_model` under the name ``NAME`` (``torch.load(weights_only=True)``).
This module only lists them (a light import: the CLI shows the names in ``l2o solve --help``).

* ``pagerank``: PageRank LPs (:func:`l2o.datasets.pagerank`): a
  :class:`l2o.net.PowerIterationNet` (PageRank's power iteration unrolled for 12 steps with
  learned step sizes; it refuses LPs of another shape); reproduced by
  ``examples/train_pagerank_model.py``, which also prints how it was measured against cold and
  power-iteration starts.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MODELS_DIR", "bundled_models"]

MODELS_DIR = Path(__file__).resolve().parent


def bundled_models() -> dict[str, Path]:
    """Bundled model names -> checkpoint files (``l2o/models/NAME.pt``), sorted by name."""
    return {path.stem: path for path in sorted(MODELS_DIR.glob("*.pt")) if path.is_file()}
