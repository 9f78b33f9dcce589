"""Ready-made bilevel problems on bundled data.

* :func:`hyperparameter_tuning`: one L2 weight per feature of a logistic regression
  (example data: ijcnn1, :func:`load_ijcnn1`).
* :func:`data_cleaning`: per-example weights that learn to ignore corrupted labels in a
  multinomial logistic regression, or a 2-layer MLP (``hidden=``) (example data: MNIST
  with half the labels replaced, :func:`load_mnist`).
* :func:`multiblock_tuning`: m logistic regressions on shards of the data sharing
  per-feature L2 weights (a :class:`bilevel.MultiBlockProblem`; ijcnn1 in 256 shards).

Each builder takes data arrays and returns a :class:`bilevel.BilevelProblem`; pass
``return_task=True`` to also get the task object (data, test-set metrics).
:mod:`bilevel.tasks.reference` holds the exact float64 references (inner optimum,
dense-Hessian hypergradient, grid search, oracle) the examples and tests check against.
"""

from __future__ import annotations

from .data_cleaning import DataCleaningTask, MLPCleaningTask, data_cleaning, flag_scores
from .datasets import Split, load_ijcnn1, load_mnist, read_svmlight
from .hyperparameter_tuning import LogisticRegressionTask, hyperparameter_tuning
from .multiblock import multiblock_tuning

__all__ = [
           "DataCleaningTask",
           "LogisticRegressionTask",
           "MLPCleaningTask",
           "Split",
           "data_cleaning",
           "flag_scores",
           "hyperparameter_tuning",
           "load_ijcnn1",
           "load_mnist",
           "multiblock_tuning",
           "read_svmlight",
]
