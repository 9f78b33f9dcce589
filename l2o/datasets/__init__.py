"""LP instance generators (PageRank, set cover, combinatorial auction, facility location).

``generate(family, **options)`` builds one instance; ``FAMILIES`` maps each family name to its
generator function and ``family_options(family)`` lists its options with their defaults.
"""

from .auction import combinatorial_auction
from .facility import facility_location
from .generators import FAMILIES, family_options, generate
from .pagerank import barabasi_albert_edges, pagerank
from .setcover import set_cover

__all__ = ["FAMILIES", "generate", "family_options", "pagerank", "barabasi_albert_edges",
           "set_cover", "combinatorial_auction", "facility_location"]
