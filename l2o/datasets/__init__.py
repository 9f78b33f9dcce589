"""LP instance generators (PageRank, set cover, combinatorial auction, facility location).

``generate(family, **options)`` builds one instance; ``FAMILIES`` maps each family name to its
generator function and ``family_options(family)`` lists its options with their defaults.
``build_dataset(DIR, family, count, ...)`` writes labelled graphs that ``LPDataset(DIR)`` reads.
"""

from .auction import combinatorial_auction
from .facility import facility_location
from .generators import FAMILIES, family_options, generate
from .pagerank import barabasi_albert_edges, pagerank
from .setcover import set_cover

__all__ = ["FAMILIES", "generate", "family_options", "pagerank", "barabasi_albert_edges",
           "set_cover", "combinatorial_auction", "facility_location", "LPDataset", "build_dataset",
           "label_lp"]


def __getattr__(name: str):
    # The on-disk dataset needs torch_geometric; load it only when asked, so that generating an
    # instance (``l2o generate``) stays a light import.
    if name in ("LPDataset", "build_dataset", "label_lp"):
        from . import dataset
        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
