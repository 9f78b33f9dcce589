"""LP instance generators (PageRank, set cover, combinatorial auction, facility location).

``generate(family, **options)`` builds one instance; ``FAMILIES`` maps each family name to its
generator function and ``family_options(family)`` lists its options with their defaults.
``build_dataset`` (:mod:`l2o.datasets.build`) writes labelled instances that ``LPDataset(DIR)``
(:mod:`l2o.datasets.store`) reads back as PyG graphs.
"""

from .auction import combinatorial_auction
from .facility import facility_location
from .generators import FAMILIES, family_option_help, family_options, generate
from .pagerank import barabasi_albert_edges, pagerank
from .setcover import set_cover

__all__ = ["FAMILIES", "generate", "family_options", "family_option_help", "pagerank",
           "barabasi_albert_edges", "set_cover", "combinatorial_auction", "facility_location",
           "LPDataset", "build_dataset"]

_LAZY = {"LPDataset": "store", "build_dataset": "build"}


def __getattr__(name: str):
    # The labelled on-disk datasets (l2o.datasets.store / .build) need torch_geometric and the
    # solver; load them only when asked, so that generating an instance stays a light import.
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
