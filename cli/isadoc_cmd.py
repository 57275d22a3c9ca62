"""``acfc isa-doc [-o docs/isa.md]``: regenerate the ISA reference from the table."""

from __future__ import annotations

import argparse

from acf.cli import write_output
from acf.isa.docs import isa_markdown


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="-")


def run(args: argparse.Namespace) -> int:
    write_output(args.output, isa_markdown())
    return 0
