"""IR verifier: structure, SSA dominance and per-op type rules, with located diagnostics.

Checks, for every ``graph.func``: each operand is defined before its use in the same block
or an enclosing one (block arguments included), no value is defined twice, every op
satisfies its registered definition (operand counts, attribute kinds, inferred result
shapes), and the function ends with a ``graph.return`` whose types match the signature.
"""

from __future__ import annotations

from .diagnostics import IRError, SourcePos
from .dialect import VerifyError, check_encoding, verify_op
from .ir import Block, FuncOp, Module, Operation, Value


def op_position(op: Operation) -> SourcePos | None:
    """Where to report a problem with ``op``: its IR text, else its source location."""
    if op.pos is not None:
        return op.pos
    if op.loc is not None:
        return SourcePos(op.loc.file, op.loc.line, op.loc.col)
    return None


def _error(op: Operation, message: str) -> IRError:
    return IRError(message, op_position(op))


def _verify_block(block: Block, visible: set[Value], seen: set[Value]) -> None:
    visible = visible | set(block.args)
    for op in block.ops:
        if op.parent_block is not block:
            raise _error(op, f"'{op.name}' has a broken parent link (internal error)")
        for i, operand in enumerate(op.operands):
            if operand not in visible:
                raise _error(op, f"operand #{i} of '{op.name}' does not dominate this use")
        try:
            verify_op(op)
        except VerifyError as err:
            raise _error(op, str(err)) from None
        for region in op.regions:
            for inner in region.blocks:
                _verify_block(inner, visible, seen)
        for result in op.results:
            if result in seen:
                raise _error(op, f"result of '{op.name}' is defined twice (internal error)")
            seen.add(result)
            visible.add(result)


def verify_func(func: FuncOp) -> None:
    """Raise :class:`IRError` at the first problem in ``func``."""
    for arg in func.arguments:
        try:
            check_encoding(arg.type, f"argument '%{arg.name_hint or arg.index}' of '@{func.sym_name}'")
        except VerifyError as err:
            raise _error(func, str(err)) from None
    _verify_block(func.body, set(), set())
    ret = func.return_op
    if ret is None:
        raise _error(func, f"function '@{func.sym_name}' must end with 'graph.return'")
    for op in func.body.ops[:-1]:
        if op.name == "graph.return":
            raise _error(op, "'graph.return' must be the last op of its function")
    got = [v.type for v in ret.operands]
    if got != func.function_result_types:
        want = ", ".join(map(str, func.function_result_types)) or "nothing"
        raise _error(
            ret,
            f"'graph.return' returns ({', '.join(map(str, got))}) but "
            f"'@{func.sym_name}' declares ({want})",
        )


def verify_module(module: Module) -> None:
    """Verify every function; raises :class:`IRError` with a location."""
    for func in module.funcs:
        verify_func(func)
