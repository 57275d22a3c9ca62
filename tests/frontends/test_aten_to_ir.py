"""Converter coverage edges: unsupported ops name the ATen op and the user's source line;
every op carries a location with its layer; the captured IR is a print/parse fixed point."""

from __future__ import annotations

import inspect

import pytest
import torch
from acf.compiler.parser import parse_module
from acf.compiler.printer import print_module
from acf.frontends.aten_to_ir import UnsupportedOpError, source_location
from acf.frontends.training_step import capture_training_step
from torch import nn

from . import models
from .models import ResNet18, SmallCNN


def _line_of(marker: str, obj: object) -> int:
    lines, start = inspect.getsourcelines(obj)
    return start + next(i for i, text in enumerate(lines) if marker in text)


class SortNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return torch.sort(h, dim=1).values  # sort-here


class CumsumNet(SortNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x), dim=1)  # cumsum-here


@pytest.mark.parametrize("model, op, marker", [
    (SortNet, "aten.sort.default", "sort-here"),
    (CumsumNet, "aten.cumsum.default", "cumsum-here"),
])
def test_unsupported_op_names_the_aten_op_and_the_user_line(model, op, marker) -> None:
    with pytest.raises(UnsupportedOpError) as err:
        capture_training_step(model(), (torch.randn(3, 4),), labels=torch.tensor([0, 1, 2]))
    line = _line_of(marker, model.forward)
    text = str(err.value)
    assert err.value.op == op and err.value.loc.line == line
    assert text.startswith(f"{__file__}:{line}:") and f"unsupported ATen op '{op}'" in text
    assert marker in text  # the offending source line is quoted


def test_every_op_is_located_in_user_code_with_its_layer() -> None:
    torch.manual_seed(0)
    step = capture_training_step(SmallCNN(), (torch.randn(2, 3, 8, 8),),
                                 labels=torch.tensor([1, 2]))
    ops = [op for op in step.func.body.ops if op.name != "graph.return"]
    assert all(op.loc is not None for op in ops)
    conv_line = _line_of("self.conv1(x)", models.SmallCNN.forward)
    conv1 = {op.name: op.loc for op in ops if op.loc.layer == "conv1"}
    assert {"graph.conv2d", "graph.conv2d_backward_weight"} <= set(conv1)  # fwd and bwd
    assert {(loc.file, loc.line) for name, loc in conv1.items()
            if name not in ("graph.sgd_update", "graph.constant")} == {(models.__file__, conv_line)}
    assert conv1["graph.sgd_update"].file == __file__  # the optimizer: the capture call
    bn1 = {op.name for op in ops if op.loc.layer == "bn1"}
    assert {"graph.batch_norm", "graph.batch_norm_backward"} <= bn1


def test_nested_layers_are_module_paths() -> None:
    step = capture_training_step(ResNet18(width=4), (torch.randn(2, 3, 8, 8),),
                                 labels=torch.tensor([1, 2]))
    layers = {op.loc.layer for op in step.func.body.ops if op.loc is not None}
    assert {"conv1", "layer1.0.conv1", "layer2.0.shortcut.0", "layer4.1.bn2", "fc"} <= layers


def test_print_parse_print_is_a_fixed_point() -> None:
    step = capture_training_step(SmallCNN(), (torch.randn(2, 3, 8, 8),),
                                 labels=torch.tensor([0, 4]), optimizer="adam")
    text = print_module(step.module)
    again = print_module(parse_module(text, "step.acfir"))
    assert again == text
    assert print_module(parse_module(again, "step.acfir")) == again


def test_source_location_takes_the_last_user_frame_and_its_column() -> None:
    trace = (f'  File "{__file__}", line 1, in f\n    outer()\n    ^^^^^^^\n'
             f'  File "{torch.__file__}", line 7, in g\n    inner()\n')
    loc = source_location(trace, "blk")
    assert (loc.file, loc.line, loc.col, loc.layer) == (__file__, 1, 1, "blk")
