"""Bilevel outer loops: AID (cg / minres / neumann), ITD, BO-REP, the penalty method and
MBBO (multi-block).

Each is an :class:`~bilevel.algorithms.common.Algorithm` with ``init_state`` and
``step``; :func:`bilevel.solve` drives them (records, checkpoints, stopping).
"""

from .aid import AIDAlgorithm
from .borep import BOREPAlgorithm
from .common import Algorithm, BatchStream, OuterOptimizer
from .itd import ITDAlgorithm
from .mbbo import MBBOAlgorithm
from .penalty import PenaltyAlgorithm

__all__ = ["AIDAlgorithm", "Algorithm", "BOREPAlgorithm", "BatchStream", "ITDAlgorithm",
           "MBBOAlgorithm", "OuterOptimizer", "PenaltyAlgorithm"]
