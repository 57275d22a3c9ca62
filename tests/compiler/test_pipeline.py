"""The textual pipeline from the graph level to acf IR: ``acf-opt --print-ir-after-all``
prints every stage, each printed stage parses back to itself and the rest of the pipeline
continues from it to the same result, and the final acf IR is the program ``compile_module``
builds for the same tile side and placement, byte for byte (binary container), also
through ``acfc compile``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from acf.cli import main as acfc
from acf.compiler.codegen import CompileOptions, compile_module
from acf.compiler.codegen.placement import round_robin
from acf.compiler.dialects.acf import to_program
from acf.compiler.opt import main as acf_opt
from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import PassManager, parse_pipeline
from acf.compiler.printer import print_module
from acf.isa.container import write
from acf.isa.target import load_target
from codegen.test_codegen import MLP  # tests/compiler is on sys.path (rootdir-relative)
from test_acf_interp import conv_layer

PASSES = [
    "sparsity-propagation",
    "select-formats{target=acf-small}",
    "tile{m=%d,n=%d,k=%d,target=acf-small}",
    "place{policy=%s}",
    "schedule",
    "lower-to-acf{target=acf-small}",
]
DUMP = re.compile(r"^// -----// IR Dump After (\S+) //----- //\n", re.MULTILINE)


def stages(path: Path, passes: list[str], capsys) -> list[tuple[str, str]]:
    """(pass, IR printed after it) for every pass of one ``acf-opt`` run."""
    assert acf_opt([str(path), "-p", ",".join(passes), "--print-ir-after-all"]) == 0
    err = capsys.readouterr().err
    parts = DUMP.split(err)[1:]
    return list(zip(parts[0::2], parts[1::2]))


def strip_locs(text: str) -> str:
    return re.sub(r' loc\("[^"]*":\d+:\d+\)', "", text)


CASES = {
    "mlp": MLP.replace("%w: tensor<40x64xf32, #csr>", "%w: tensor<40x64xf32, #csr> {density = 0.2}"),
    "conv": conv_layer()[0],
}


@pytest.mark.parametrize("tile,policy", [(0, "round-robin"), (16, "round-robin"),
                                         (16, "balanced"), ((16, 24, 32), "round-robin")])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_stage_prints_replays_and_ends_at_compile_module(
        case: str, tile: int, policy: str, tmp_path: Path, capsys) -> None:
    passes = list(PASSES)
    passes[2] = passes[2] % (tile if isinstance(tile, tuple) else (tile,) * 3)
    passes[3] = passes[3] % policy
    src = tmp_path / "in.acfir"
    src.write_text(CASES[case])
    dumps = stages(src, passes, capsys)
    assert [name for name, _ in dumps] == [parse_pipeline(p)[0].describe() for p in passes]
    final = dumps[-1][1]
    for i, (_, text) in enumerate(dumps):
        module = parse_module(text, f"stage{i}.acfir")
        assert print_module(module) == text, f"stage {i} is not a print/parse fixed point"
        PassManager(parse_pipeline(",".join(passes[i + 1:]))).run(module)
        if i >= 2:  # from `tile` on, every op carries its input position as a loc(...)
            assert print_module(module) == final, f"replaying from stage {i} diverges"
        else:  # before it, unlocated ops are positioned in the stage's own text
            assert strip_locs(print_module(module)) == strip_locs(final), f"stage {i} diverges"
    if policy != "round-robin":
        return  # compile_module has no op loads to balance; test_acf_interp checks its results
    # the same input through the graph-level passes, compiled the monolithic way
    graph = parse_module(src.read_text(), str(src))
    PassManager(parse_pipeline(",".join(passes[:2]))).run(graph)
    want = compile_module(graph, load_target("acf-small"),
                          CompileOptions(tile=tile, placement=round_robin)).program
    got = to_program(parse_module(final))
    assert write(got) == write(want)
    lowered = tmp_path / "lowered.acfir"
    lowered.write_text(final)
    assert acfc(["compile", str(lowered), "-o", str(tmp_path / "out.acfbin")]) == 0
    assert (tmp_path / "out.acfbin").read_bytes() == write(want)


def test_annotations_are_visible_at_the_tiled_level(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.acfir"
    src.write_text(CASES["mlp"])
    passes = [p % ((32,) * 3 if "m=" in p else ("balanced",)) if "%" in p else p
              for p in PASSES]
    text = dict(stages(src, passes, capsys))["schedule"]
    assert ('%h = graph.linear %x, %w {sparsity = "dense", acf_tile = [32, 32, 32], '
            'acf_place = "balanced", '
            'acf_sync = "none", acf_deps = []}') in text
    assert 'acf_sync = "barrier", acf_deps = [0]}' in text
