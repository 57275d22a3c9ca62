"""Weight masks on the fabric: fewer cycles and SDDMM weight gradients at 90 % sparsity,
mask changes as data (no recompiles), regrown connections restarting from zero, and one
re-specialization when the density crosses a band."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from acf.isa.disasm import disassemble
from acf.runtime import SessionOptions

from ..frontends.models import MLP, SmallCNN
from .harness import EagerTrainer, FabricTrainer, compare

SGD = {"lr": 0.1, "momentum": 0.9}


def masks_of(model, density: float, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < density for n, p in model.named_parameters()
            if p.dim() >= 2}


def mnemonics(fabric: FabricTrainer) -> list[str]:
    """Instruction mnemonics of the step's compiled program, from the disassembly text."""
    (compiled,) = fabric.session._cache.values()
    text = disassemble(compiled.program.program)
    return re.findall(r"^\s*([a-z_][a-z0-9_.]*)\s", text, re.M)


def one_step(model, x, y, masks=None, target="acf-small"):
    fabric = FabricTrainer(model, (x,), y, options=SGD, masks=masks, target=target)
    eager = EagerTrainer(model, "sgd", SGD, dict(masks or {}))
    compare(fabric.step((x,), y), eager.step((x,), y), 1)
    return fabric


def test_mlp_90_percent_masks_fewer_cycles_and_sddmm() -> None:
    torch.manual_seed(0)
    model = MLP(32, 64, 10)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    masks = masks_of(model, 0.1, seed=1)
    dense = one_step(model, x, y)
    sparse = one_step(model, x, y, masks)
    d, s = dense.reports[0], sparse.reports[0]
    print(f"\nMLP 32-64-10 b64 acf-small: dense {d.total_cycles} cycles, 90 % masked "
          f"{s.total_cycles} cycles")
    assert s.total_cycles < d.total_cycles
    # every weight gradient is a sampled GEMM: sddmm in the assembly, no dense wgrad left
    # (the dense step's sddmm instructions are its ReLU-gated input gradient, not a wgrad)
    assert "wgrad_sddmm" not in d.by_kind and "wgrad_dense" in d.by_kind
    assert mnemonics(sparse).count("sddmm") >= mnemonics(dense).count("sddmm") + len(masks)
    assert "wgrad_sddmm" in s.by_kind and "wgrad_dense" not in s.by_kind
    assert s.by_kind["wgrad_sddmm"]["effectual_macs"] < 0.2 * d.by_kind["wgrad_dense"][
        "effectual_macs"]


def _cnn_pair():
    torch.manual_seed(3)
    model = SmallCNN()
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 5, (2,))
    masks = masks_of(model, 0.1, seed=2)
    return one_step(model, x, y), one_step(model, x, y, masks), masks


def test_cnn_90_percent_masks_linear_wgrad_is_sddmm() -> None:
    dense, sparse, masks = _cnn_pair()
    assert "sddmm" in mnemonics(sparse) and "sddmm" not in mnemonics(dense)
    ops = [op.name for op in sparse.session._cache[next(iter(sparse.session._cache))]
           .func.body.ops]
    assert ops.count("graph.sddmm") == 1  # fc.weight
    # effectual MACs do follow the masks
    d, s = dense.reports[0], sparse.reports[0]
    assert s.by_kind["forward"]["effectual_macs"] < 0.3 * d.by_kind["forward"]["effectual_macs"]


def test_cnn_conv_weight_gradients_are_sddmm() -> None:
    dense, sparse, masks = _cnn_pair()
    assert mnemonics(sparse).count("sddmm") >= len(masks)
    ops = [op for op in sparse.session._cache[next(iter(sparse.session._cache))].func.body.ops]
    sampled = [op for op in ops if op.name == "graph.conv2d_backward_weight"]
    assert sampled and all(len(op.operands) == 3 for op in sampled)  # every conv is masked
    d, s = dense.reports[0], sparse.reports[0]
    assert "wgrad_sddmm" in s.by_kind
    conv_wgrad = s.by_kind["wgrad_sddmm"]["effectual_macs"]
    assert conv_wgrad < 0.3 * d.by_kind["wgrad_dense"]["effectual_macs"]


def test_cnn_90_percent_masks_fewer_cycles() -> None:
    dense, sparse, _ = _cnn_pair()
    d, s = dense.reports[0], sparse.reports[0]
    print(f"\nSmallCNN b2 acf-small: dense {d.total_cycles} cycles, 90 % masked {s.total_cycles}")
    assert s.total_cycles < d.total_cycles
    # the forward convs are where the skipped MACs show
    assert s.by_kind["forward"]["span_cycles"] < d.by_kind["forward"]["span_cycles"]


def test_mask_changes_do_not_recompile() -> None:
    """New masks (density ~0.1, one band) every step: no recompile, gradients and updates
    equal eager PyTorch with that step's mask."""
    torch.manual_seed(5)
    model = MLP(16, 32, 4)
    g = torch.Generator().manual_seed(6)
    data = [(torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g))
            for _ in range(4)]
    masks = masks_of(model, 0.1, seed=10)
    fabric = FabricTrainer(model, (data[0][0],), data[0][1], options=SGD, masks=masks)
    eager = EagerTrainer(model, "sgd", SGD, dict(masks))
    assert fabric.session.compile_count == 1
    for i, (x, y) in enumerate(data, 1):
        if i > 1:
            for name, m in masks_of(model, 0.1, seed=10 + i).items():
                fabric.bind_mask(name, m)
                eager.bind_mask(name, m)
        compare(fabric.step((x,), y), eager.step((x,), y), i)
        rep = fabric.reports[-1]
        assert not rep.compiled and not rep.respecialized
    assert fabric.session.compile_count == 1


def test_regrown_connections_restart_from_zero_as_in_eager() -> None:
    """Masks pruned, then regrown (as SET/RigL move them): on the fabric and in the eager
    reference alike, a regrown connection starts from a zero weight and a zero momentum
    (acf.algorithms.base's contract), and every step equals eager PyTorch."""
    torch.manual_seed(9)
    model = MLP(16, 32, 4)
    g = torch.Generator().manual_seed(10)
    data = [(torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g))
            for _ in range(4)]
    a = masks_of(model, 0.5, seed=11)["fc1.weight"]
    b = a & (torch.rand(a.shape, generator=g) < 0.5)
    grown = a & ~b
    fabric = FabricTrainer(model, (data[0][0],), data[0][1], options=SGD,
                           masks={"fc1.weight": a})
    eager = EagerTrainer(model, "sgd", SGD, {"fc1.weight": a})
    for i, ((x, y), mask) in enumerate(zip(data, (a, b, a, a)), 1):
        if i > 1:
            fabric.bind_mask("fc1.weight", mask)
            eager.bind_mask("fc1.weight", mask)
        if i == 3:
            state = fabric.session._get(None).state
            param = dict(eager.model.named_parameters())["fc1.weight"]
            assert not state["momentum_buf.fc1.weight"][grown.numpy()].any()
            assert not eager.opt.state[param]["momentum_buffer"][grown].any()
        compare(fabric.step((x,), y), eager.step((x,), y), i)


def test_density_crossing_respecializes_once() -> None:
    """fc1.weight at density 0.8 (dense band) for two steps, then 0.1 (csr band) for three:
    exactly one re-specialization (one compile: the csr program; the verifying rerun of the
    dense one is a cache hit), and results still equal eager PyTorch every step."""
    torch.manual_seed(7)
    model = MLP(16, 32, 4)
    g = torch.Generator().manual_seed(8)
    data = [(torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g))
            for _ in range(5)]
    densities = [0.8, 0.8, 0.1, 0.1, 0.1]
    only = ("fc1.weight",)
    masks = {n: m for n, m in masks_of(model, densities[0], seed=20).items() if n in only}
    fabric = FabricTrainer(model, (data[0][0],), data[0][1], options=SGD, masks=masks,
                           session_options=SessionOptions(respecialize="band"))
    eager = EagerTrainer(model, "sgd", SGD, dict(masks))
    start = fabric.session.compile_count
    for i, ((x, y), dens) in enumerate(zip(data, densities), 1):
        if i > 1:
            m = masks_of(model, dens, seed=20 + i)["fc1.weight"]
            fabric.bind_mask("fc1.weight", m)
            eager.bind_mask("fc1.weight", m)
        compare(fabric.step((x,), y), eager.step((x,), y), i)
    respec = [(r.step, e["param"], e["from"], e["to"]) for r in fabric.reports
              for e in r.respecialized]
    print("\nre-specializations:", respec, [r.formats for r in fabric.reports])
    assert respec == [(3, "fc1.weight", "dense", "csr")]
    assert fabric.session.compile_count - start == 1
    assert [r.compiled for r in fabric.reports] == [False, False, True, False, False]


def test_compressed_storage_trains_like_eager_as_masks_move() -> None:
    """formats="auto" on acf-base: a conv net's linear weight stored CSR with its sampled
    gradient, momentum and mask, its conv kernel's momentum CSR; new masks every step (as
    SET/RigL move them: the grown connections start at zero). Loss, output, gradients and
    updated weights equal eager PyTorch every step, and each mask change is costed apart."""
    torch.manual_seed(11)
    # no batch norm: a bias before one has a gradient that is zero in exact arithmetic,
    # which masks this sparse make likely and no relative tolerance can compare
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 5))
    g = torch.Generator().manual_seed(12)
    data = [(torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 5, (2,), generator=g))
            for _ in range(3)]
    masks = masks_of(model, 0.1, seed=30)
    fabric = FabricTrainer(model, (data[0][0],), data[0][1], options=SGD, masks=masks,
                           target="acf-base", session_options=SessionOptions(formats="auto"))
    eager = EagerTrainer(model, "sgd", SGD, dict(masks))
    # fp64 too: where a gradient nearly cancels (a bias's), eager fp32 is no reference
    eager64 = EagerTrainer(copy.deepcopy(model).double(), "sgd", SGD,
                           {n: m.double() for n, m in masks.items()})
    for i, (x, y) in enumerate(data, 1):
        if i > 1:
            for name, m in masks_of(model, 0.1, seed=30 + i).items():
                fabric.bind_mask(name, m)
                eager.bind_mask(name, m)
                eager64.bind_mask(name, m.double())
        exact = eager64.step((x.double(),), y)
        compare(fabric.step((x,), y), eager.step((x,), y), i, exact=exact)
    first, *later = fabric.reports
    assert set(first.formats.values()) == {"dense", "csr"} and ";states=" in first.variant
    assert not first.mask_update and all(r.mask_update["cycles"] > 0 for r in later)
    assert sorted(later[0].mask_update["params"]) == sorted(masks)
