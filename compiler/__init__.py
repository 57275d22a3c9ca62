"""acf.compiler: the ACF IR (MLIR-style SSA text), its verifier, passes and interpreter.

Public API::

    from acf.compiler import parse_module, print_module, PassManager, parse_pipeline
    module = parse_module(text, "model.acfir")          # parses and verifies
    PassManager(parse_pipeline("canonicalize,cse,sparsity-propagation")).run(module)
    print(print_module(module))

Modules: ``ir`` (Value, Operation, Block, Region, FuncOp, Module, types), ``sparse_encoding``
(``#sparse<...>`` and format names), ``dialect`` + ``graph_ops``/``graph_nn_ops`` (op
definitions), ``shape_rules``, ``parser``/``printer``/``grammar``, ``verifier``,
``pass_manager`` + ``passes/``, ``interp`` (numpy reference), ``opt`` (the acf-opt CLI).
"""

from .diagnostics import IRError
from .ir import Block, FuncOp, Location, Module, Operation, Region, ScalarType, TensorType, Value
from .parser import parse_module
from .pass_manager import PassManager, parse_pipeline
from .printer import print_module
from .sparse_encoding import SparseEncoding, encoding_to_format, format_to_encoding
from .verifier import verify_module

__all__ = [
    "Block",
    "FuncOp",
    "IRError",
    "Location",
    "Module",
    "Operation",
    "PassManager",
    "Region",
    "ScalarType",
    "SparseEncoding",
    "TensorType",
    "Value",
    "encoding_to_format",
    "format_to_encoding",
    "parse_module",
    "parse_pipeline",
    "print_module",
    "verify_module",
]
