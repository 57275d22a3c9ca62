"""``acfc targets [NAME] [--set SECTION.FIELD=VALUE ...] [--json]``."""

from __future__ import annotations

import argparse
import json

from acf.cli import UserError, target_error
from acf.isa.target import Cost, TargetError, available_targets, load_target, parse_set_args
from acf.isa.target_schema import SCHEMA


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="target name or TOML file")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    try:
        if not args.name:
            rows = []
            for name in available_targets():
                t = load_target(name)
                rows.append((name, f"{t.peak_macs_per_s / 1e12:.2f}", t.target.description))
            if args.json:
                print(json.dumps([{"name": n, "peak_tmac_per_s": float(p), "description": d} for n, p, d in rows]))
            else:
                width = max(len(r[0]) for r in rows)
                print(f"{'target':{width}}  TMAC/s  description")
                for n, p, d in rows:
                    print(f"{n:{width}}  {p:>6}  {d}")
            return 0
        t = load_target(args.name, parse_set_args(args.set))
    except TargetError as exc:
        raise UserError(target_error(exc)) from None
    if args.json:
        print(json.dumps({"name": t.name, "config": t.as_dict(), "derived": t.derived(),
                          "hash": t.config_hash()}, indent=1))
        return 0
    print(f"# {t.name}  ({t.source}, config hash {t.config_hash()})")
    for section, values in t.as_dict().items():
        print(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, dict):
                print(f"  {key:24} {value['value']:>10g} {value['unit']:4}  # {value['source']}")
            else:
                unit = SCHEMA.get(section, {}).get(key)
                print(f"  {key:24} {value!s:>10} {unit.unit if unit else ''}")
    print("[derived]")
    for key, value in t.derived().items():
        print(f"  {key:24} {value:>10.4g}" if isinstance(value, float) else f"  {key:24} {value:>10}")
    print("[area_mm2]")
    for key, value in t.area_breakdown_mm2().items():
        print(f"  {key:24} {value:>10.3f}")
    return 0


__all__ = ["Cost"]
