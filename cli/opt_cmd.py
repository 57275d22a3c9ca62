"""``acfc opt in.acfir -p PIPELINE [options]``: the compiler's pass driver (see acf.compiler.opt)."""

from __future__ import annotations

import argparse

#: ``acfc`` hands every argument to the pass driver (``acfc opt --help`` is its help), so
#: this command adds none to acfc's parser
ADD_HELP = False


def run(args: argparse.Namespace) -> int:
    import sys

    from acf.cli import UserError
    from acf.compiler.opt import main

    try:
        _refuse_same_files(list(args.args))
    except UserError as exc:  # this command runs outside acfc's handler of user errors
        print(str(exc), file=sys.stderr)
        return 1
    return main(list(args.args), prog="acfc opt")


class _Unparsed(Exception):
    """The arguments do not parse: the pass driver says why, in its own words."""


def _refuse_same_files(argv: list[str]) -> None:
    """``-o`` or ``--reproducer`` naming the input, or each other, is refused before the
    driver reads anything (it would replace the IR it was made from)."""
    from acf.cli import refuse_same_files
    from acf.compiler.opt import build_arg_parser

    if "-h" in argv or "--help" in argv:
        return
    parser = build_arg_parser()

    def error(message: str) -> None:
        raise _Unparsed(message)

    parser.error = error  # type: ignore[method-assign]
    try:
        ns = parser.parse_args(argv)
    except _Unparsed:
        return
    refuse_same_files([("-o", ns.output), ("--reproducer", ns.reproducer)], [("input", ns.input)])
