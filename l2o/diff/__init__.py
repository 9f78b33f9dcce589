"""Gradients through linear programs: a differentiable LP layer and the Fenchel-Young loss.

* :class:`LPLayer` (``lp_layer``): an ``nn.Module`` over a fixed sparsity pattern whose forward
  solves a batch of LPs in one batched solve and returns their solutions and optimal values;
  two ways to differentiate, chosen by ``mode``:

  - ``"value"``: the optimal value's exact sensitivities (the envelope theorem: x*, y*, r*)
    with respect to every input (``value``);
  - ``"perturbed"``: the perturbed optimizer of Berthet et al. (2020), a smoothed solution
    whose Jacobian with respect to the cost comes from the same samples (``perturbed``);

* :func:`fenchel_young_loss` (``fenchel_young``): the loss of that perturbed optimizer, whose
  gradient is the difference of the smoothed and the target solution;
* :class:`LPNotOptimalError`: an LP of the batch that did not end OPTIMAL (its gradient would
  be meaningless).

The names load on first use (:mod:`l2o._lazy`): ``import l2o`` does not import torch.
"""

from l2o._lazy import make_lazy

# public name -> the module that defines it
_EXPORTS = {
    "LPLayer": "lp_layer", "LPNotOptimalError": "lp_layer",
    "fenchel_young_loss": "fenchel_young",
}

__all__ = list(_EXPORTS)
make_lazy(__name__, exports=_EXPORTS)
