"""``acfc opt in.acfir -p PIPELINE [options]``: the compiler's pass driver (see acf.compiler.opt)."""

from __future__ import annotations

import argparse

ADD_HELP = False  # ``acfc opt --help`` is the pass driver's help



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the pass driver")


def run(args: argparse.Namespace) -> int:
    from acf.compiler.opt import main

    return main(list(args.args))
