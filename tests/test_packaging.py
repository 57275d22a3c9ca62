"""Every package folder is listed in pyproject.toml, so a normal (non-editable) install
ships it; the editable install would otherwise hide a missing entry."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("isa", "cli", "compiler", "emulator", "runtime", "frontends", "algorithms", "debugger", "evaluation")


def test_all_packages_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"acf"}
    for top in TOP:
        if not (ROOT / top).is_dir():
            continue
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add("acf." + ".".join(rel.parts))
    assert found == listed, f"missing: {sorted(found - listed)}, stale: {sorted(listed - found)}"
