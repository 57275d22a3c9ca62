"""Located codegen errors: ``file:line:col: error: message`` at the offending IR op."""

from __future__ import annotations

from ..diagnostics import IRError
from ..ir import Operation
from ..verifier import op_position


class CodegenError(IRError):
    """A graph op that cannot be compiled for the target (shape too large, unsupported form)."""


def error_at(op: Operation, message: str) -> CodegenError:
    return CodegenError(f"'{op.name}': {message}", op_position(op))
