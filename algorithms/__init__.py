"""acf.algorithms: co-designed sparse training algorithms over a torch model and optimizer.

``create(name, model, optimizer, **options)`` builds one of ``NAMES``; every algorithm is a
:class:`SparsityAlgorithm` (``base.py``) and hands its masks to a :class:`MaskBinder`
(``masks.py``), by default the eager PyTorch :class:`EagerBinder`.
"""

from __future__ import annotations

from acf.algorithms.base import MaskUpdate, SparsityAlgorithm, erk_densities, sparsifiable
from acf.algorithms.block import Block
from acf.algorithms.dynamic import SET, RigL
from acf.algorithms.gmp import GradualMagnitude
from acf.algorithms.masks import EagerBinder, MaskBinder
from acf.algorithms.nm import NM, NMSRSTE
from acf.algorithms.static import StaticMagnitude, StaticRandom
from acf.algorithms.vector import Vector

REGISTRY: dict[str, type[SparsityAlgorithm]] = {
    cls.name: cls
    for cls in (
        StaticRandom,
        StaticMagnitude,
        GradualMagnitude,
        SET,
        RigL,
        NM,
        NMSRSTE,
        Block,
        Vector,
    )
}
NAMES = tuple(REGISTRY)


def create(name: str, model, optimizer, **options) -> SparsityAlgorithm:
    """Build the algorithm ``name`` (one of ``NAMES``) over ``model`` and ``optimizer``.

    Options common to all: ``density`` (float or {param: float}), ``distribution``
    (``uniform`` | ``erk``), ``params``, ``exclude_first_conv``, ``exclude_last_linear``,
    ``delta_t``, ``t_start``, ``t_end``, ``seed``, ``binder``. Algorithm-specific ones are
    documented on each class. Raises ValueError for unknown names or impossible options.

    The schedule options ``delta_t``, ``t_start``, ``t_end`` only matter to algorithms that
    update masks on a schedule (``gmp``, ``set``, ``rigl``, ``block``/``vector`` with
    ``schedule="gmp"``). The others (``static-*``, ``nm``, ``nm-srste``, which remasks every
    step, and ``schedule="static"``) accept and ignore them, so one set of options fits every
    algorithm; ``algorithm.ignored_options`` names those given and ignored.
    """
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown sparsity algorithm {name!r}; choose one of {', '.join(NAMES)}"
        ) from None
    return cls(model, optimizer, **options)


__all__ = [
    "NAMES",
    "NM",
    "NMSRSTE",
    "REGISTRY",
    "SET",
    "Block",
    "EagerBinder",
    "GradualMagnitude",
    "MaskBinder",
    "MaskUpdate",
    "RigL",
    "SparsityAlgorithm",
    "StaticMagnitude",
    "StaticRandom",
    "Vector",
    "create",
    "erk_densities",
    "sparsifiable",
]
