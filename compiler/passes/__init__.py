"""The pass registry: every pass by its pipeline name, and named default pipelines.

Adding a pass: write ``passes/my_pass.py`` (a :class:`ModulePass` subclass with a docstring
example), add one line to ``PASSES`` below, and add ``tests/compiler/my-pass.acfir``.
"""

from __future__ import annotations

from .base import ModulePass, PassOption
from .canonicalize import Canonicalize
from .cse import CommonSubexpressionElimination
from .dce import DeadCodeElimination
from .fuse_activations import FuseActivations
from .lower_to_acf import LowerToAcf
from .place import Place
from .schedule import Schedule
from .select_formats import SelectFormats
from .sparsity_propagation import SparsityPropagation
from .split_groups import SplitGroups
from .tile import Tile

PASSES: dict[str, type[ModulePass]] = {
    Canonicalize.name: Canonicalize,
    CommonSubexpressionElimination.name: CommonSubexpressionElimination,
    DeadCodeElimination.name: DeadCodeElimination,
    FuseActivations.name: FuseActivations,
    SplitGroups.name: SplitGroups,
    SparsityPropagation.name: SparsityPropagation,
    SelectFormats.name: SelectFormats,
    Tile.name: Tile,
    Place.name: Place,
    Schedule.name: Schedule,
    LowerToAcf.name: LowerToAcf,
}

PIPELINES: dict[str, str] = {
    "default": "split-groups,canonicalize,cse,dce",
    "sparse-training": "split-groups,canonicalize,cse,sparsity-propagation,dce,fuse-activations",
    # the short name the pipelines of the literature use for the propagation of zero patterns
    "sparsify": "sparsity-propagation",
}

__all__ = ["PASSES", "PIPELINES", "ModulePass", "PassOption"]
