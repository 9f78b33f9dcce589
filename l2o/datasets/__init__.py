"""LP instance generators (PageRank, set cover, combinatorial auction, facility location).

``generate(family, **options)`` builds one instance; ``FAMILIES`` maps each family name to its
generator function and ``family_options(family)`` lists its options with their defaults.
``build_dataset`` (:mod:`l2o.datasets.build`) writes labelled instances that ``LPDataset(DIR)``
(:mod:`l2o.datasets.store`) reads back as PyG graphs.

The names load on first use (:mod:`l2o._lazy`): the generators need numpy, scipy and torch,
the labelled datasets also torch_geometric and the solver, while :mod:`l2o.datasets.families`
(the families' names and options, for the command line's help) needs none of them.
"""

from l2o._lazy import make_lazy

# public name -> the module that defines it
_EXPORTS = {
    "FAMILIES": "generators", "generate": "generators",
    "family_options": "families", "family_option_help": "families",
    "pagerank": "pagerank", "barabasi_albert_edges": "pagerank",
    "set_cover": "setcover", "combinatorial_auction": "auction",
    "facility_location": "facility",
    "LPDataset": "store", "build_dataset": "build",
}

__all__ = list(_EXPORTS)
make_lazy(__name__, exports=_EXPORTS)
