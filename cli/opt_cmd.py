"""``acfc opt in.acfir -p PIPELINE [options]``: the compiler's pass driver (see acf.compiler.opt)."""

from __future__ import annotations

import argparse

#: ``acfc`` hands every argument to the pass driver (``acfc opt --help`` is its help), so
#: this command adds none to acfc's parser
ADD_HELP = False


def run(args: argparse.Namespace) -> int:
    from acf.compiler.opt import main

    return main(list(args.args))
