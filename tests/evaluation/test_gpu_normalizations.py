"""The GPU baselines' normalizations: rooflines move real tensors (no im2col matrix), the
node scaling is one family of Stillmaker & Baas fits (high-performance), and a bf16-amp
step that ran no faster than the TF32 one says its iso-peak line overstates ACF."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from acf.evaluation import baselines, gpu_tables, report
from acf.evaluation.workloads import Workload, model_layers

from .test_report_points import fake_row

H200_TF32, H200_BW = 494.5e12, 4.8e12


def _layer(model: str, name: str):
    return next(ly for ly in model_layers(model) if ly.name == name)


def _gemm_rows(model: str, sparsity: float = 0.0) -> list[dict]:
    """A step's GEMMs as result rows record them."""
    return [{"key": g.key, "role": g.role, "m": g.m, "n": g.n, "k": g.k, "count": g.count}
            for g in Workload.build(model, sparsity).gemms]


# ---- 1: rooflines count the tensors a convolution reads, not its im2col matrix ---------------


def test_convolution_input_is_the_activation_tensor_not_im2col() -> None:
    # ResNet-18 layer1 3x3 conv, batch 128 at 32x32, 64 -> 64 channels: X is 128x64x32x32
    # (8.4 M elements); its im2col matrix is 131072 x 576 (75.5 M, 9x as many)
    conv = _layer("resnet18-cifar", "layer1.conv")
    assert (conv.m, conv.k) == (131072, 576)
    assert baselines.input_elems_read(conv) == 128 * 64 * 32 * 32
    # stride 2 3x3 (layer2.0.conv1): reads all of its 32x32 input, 4 x 9 / 4 less than im2col
    down = _layer("resnet18-cifar", "layer2.0.conv1")
    assert baselines.input_elems_read(down) == 128 * 64 * 32 * 32
    # a strided 1x1 shortcut reads only the pixels it samples: its im2col matrix itself
    short = _layer("resnet18-cifar", "layer2.0.shortcut")
    assert baselines.input_elems_read(short) == short.m * short.k == 128 * 16 * 16 * 64
    # ResNet-50's 7x7/2 stem reads the 64x3x224x224 image, not 802816 x 147
    stem = _layer("resnet50-imagenet", "conv1")
    assert baselines.input_elems_read(stem) == 64 * 3 * 224 * 224
    # a linear layer's input is its M x K matrix
    fc = _layer("mlp", "fc2")
    assert baselines.input_elems_read(fc) == fc.m * fc.k


def test_the_workloads_record_each_convolutions_geometry() -> None:
    """The roofline reads kernel and stride from the layers the sweep runs; a layer that is
    not a convolution has none."""
    assert baselines.conv_geometry(_layer("resnet18-cifar", "layer2.0.shortcut")) == (1, 2)
    assert baselines.conv_geometry(_layer("resnet50-imagenet", "layer3.0.conv2")) == (3, 2)
    assert baselines.conv_geometry(_layer("resnet50-imagenet", "layer3.0.conv1")) == (1, 1)
    assert baselines.conv_geometry(_layer("vgg16-cifar", "conv5")) == (3, 1)
    assert baselines.conv_geometry(_layer("mlp", "fc2")) is None
    ly = SimpleNamespace(name="anything", m=1000, n=8, k=27, kind="weight", kernel=3, stride=2)
    assert baselines.input_elems_read(ly) == 1000 * 4 * 3


def test_each_training_gemm_counts_the_real_x_once() -> None:
    conv = _layer("resnet18-cifar", "layer1.conv")
    x = 128 * 64 * 32 * 32
    w, y = 64 * 576, 131072 * 64
    by_role = {g["key"].split(".")[-1]: g for g in _gemm_rows("resnet18-cifar")
               if g["key"].startswith("layer1.conv.")}
    # fwd reads X and W, writes Y; bwd_data reads dY and W, writes dX; wgrad reads dY and X, writes dW
    for role in ("fwd", "bwd_data", "wgrad"):
        assert baselines.training_gemm_elems(by_role[role], conv, x) == x + w + y


def test_layer1_forward_roofline_is_compute_bound_once_im2col_is_gone() -> None:
    """The old count (M x K + N x K + M x N, 336 MB in TF32) made this GEMM memory-bound at
    69.9 us on the H200; its real tensors (67 MB) leave it compute-bound at 19.5 us."""
    g = next(g for g in _gemm_rows("resnet18-cifar") if g["key"] == "layer1.conv.fwd")
    x = 128 * 64 * 32 * 32
    elems = baselines.training_gemm_elems(g, _layer("resnet18-cifar", "layer1.conv"), x)
    r = baselines.roofline_gemm("H200", g["m"], g["n"], g["k"], "tf32", elems)
    assert r["bytes"] == 4 * (2 * x + 64 * 576)
    assert r["bound"] == "compute"
    assert r["time_s"] == pytest.approx(2 * 131072 * 64 * 576 / H200_TF32, rel=1e-12)  # 19.54 us
    old = baselines.roofline_gemm("H200", g["m"], g["n"], g["k"], "tf32")
    assert old["time_s"] == pytest.approx(4 * (131072 * 576 + 64 * 576 + 131072 * 64) / H200_BW)  # 69.9 us


def test_resnet18_step_roofline_on_h200() -> None:
    """The whole dense step in TF32: 0.895 ms, not the 1.671 ms the im2col count gave (the
    audit's torch-shape estimate, which also counts conv1's input gradient that the step
    does not compute: 0.903 ms)."""
    gemms = _gemm_rows("resnet18-cifar")
    r = baselines.step_roofline("H200", "resnet18-cifar", gemms, "tf32")
    assert r["unresolved"] == []
    # Independent derivation from the CIFAR ResNet-18 architecture (batch 128, 32x32 input):
    # (name, C_in, C_out, H_in, H_out, kernel, count, has input gradient). Each conv is a GEMM
    # of B*H_out^2*C_out*C_in*kernel^2 MACs; fwd, bwd_data and wgrad each move X (the
    # activation, B*C_in*H_in^2; a strided 1x1 shortcut reads only the B*C_in*H_out^2 pixels
    # it samples), W (C_out*C_in*kernel^2) and Y (B*C_out*H_out^2) once, 4 bytes each in TF32.
    # conv1 reads the data, so it has no input-gradient GEMM. H200 datasheet: TF32 494.5
    # TFLOP/s dense, HBM3e 4.8 TB/s; a GEMM takes max(FLOPs / peak, bytes / bandwidth).
    batch = 128
    arch = [("conv1", 3, 64, 32, 32, 3, 1, False),
            ("layer1.conv", 64, 64, 32, 32, 3, 4, True),
            ("layer2.0.conv1", 64, 128, 32, 16, 3, 1, True),
            ("layer2.conv", 128, 128, 16, 16, 3, 3, True),
            ("layer2.0.shortcut", 64, 128, 32, 16, 1, 1, True),
            ("layer3.0.conv1", 128, 256, 16, 8, 3, 1, True),
            ("layer3.conv", 256, 256, 8, 8, 3, 3, True),
            ("layer3.0.shortcut", 128, 256, 16, 8, 1, 1, True),
            ("layer4.0.conv1", 256, 512, 8, 4, 3, 1, True),
            ("layer4.conv", 512, 512, 4, 4, 3, 3, True),
            ("layer4.0.shortcut", 256, 512, 8, 4, 1, 1, True),
            ("fc", 512, 10, 1, 1, 1, 1, True)]  # a linear layer: a 1x1 "conv" on 1x1 pixels
    want_time = want_bytes = 0.0
    for _, c_in, c_out, h_in, h_out, kern, count, grad in arch:
        x_pixels = h_out * h_out if kern == 1 else h_in * h_in
        x, w, y = batch * c_in * x_pixels, c_out * c_in * kern * kern, batch * c_out * h_out ** 2
        flops = 2 * batch * h_out ** 2 * c_out * c_in * kern * kern
        nbytes = 4 * (x + w + y)
        per_gemm = max(flops / H200_TF32, nbytes / H200_BW)
        gemms_per_layer = 3 if grad else 2  # fwd, (bwd_data,) wgrad
        want_time += gemms_per_layer * count * per_gemm
        want_bytes += gemms_per_layer * count * nbytes
    assert sorted({g["key"].rsplit(".", 1)[0] for g in gemms}) == sorted(a[0] for a in arch)
    assert len(gemms) == sum(3 if a[7] else 2 for a in arch)
    assert r["bytes"] == want_bytes
    assert r["time_s"] == pytest.approx(want_time, rel=1e-12)
    assert r["time_s"] == pytest.approx(0.895e-3, rel=1e-3)  # the figure the docstring quotes
    im2col = sum(baselines.roofline_gemm("H200", g["m"], g["n"], g["k"], "tf32")["time_s"] * g["count"]
                 for g in gemms)
    assert im2col == pytest.approx(1.671e-3, rel=1e-3)
    # BERT's layers are linear: nothing changes there
    bert = _gemm_rows("bert-base-layer")
    operands = sum(baselines.roofline_gemm("H200", g["m"], g["n"], g["k"], "bf16")["time_s"] * g["count"]
                   for g in bert)
    assert baselines.step_roofline("H200", "bert-base-layer", bert, "bf16")["time_s"] == pytest.approx(operands)


def test_summary_roofline_table_uses_real_tensor_bytes() -> None:
    rows = [fake_row("acf-base", 2.0, model="resnet18-cifar", sparsity=sp) for sp in (0.0, 0.9)]
    for r in rows:
        r["gemms"] = _gemm_rows("resnet18-cifar", r["sparsity"])
    text = "\n".join(gpu_tables.md_gpu_baselines(baselines.load_anchors(), rows))
    line = next(x for x in text.splitlines() if x.startswith("| resnet18-cifar | H200 | tf32 |"))
    assert line.startswith("| resnet18-cifar | H200 | tf32 | 0.895 |")
    assert "not a convolution's im2col matrix" in text


# ---- 2: one family of Stillmaker & Baas fits ----------------------------------------------------


def test_node_scaling_uses_the_high_performance_fits() -> None:
    """45 nm -> 7 nm with the HP fits at both ends (nodeScale.py 'HP45', 'HP7') and the
    nominal supplies 1.0 V and 0.7 V: 0.0555 (the LP 45 nm fit gave 0.0470)."""
    f45 = 1.018 * 1.0 ** 2 - 0.3107 * 1.0 + 0.1539
    f32 = 0.8367 * 0.9 ** 2 - 0.4341 * 0.9 + 0.1701
    f7 = 0.1776 * 0.7 ** 2 - 0.09097 * 0.7 + 0.02447
    assert baselines.energy_factor(45, 7) == pytest.approx(f7 / f45, rel=1e-12)
    assert baselines.energy_factor(45, 7) == pytest.approx(0.05552, abs=5e-5)
    assert baselines.energy_factor(32, 7) == pytest.approx(f7 / f32, rel=1e-12)
    # the iso-power line scales the fabric's power by the same factor
    scaled = baselines.iso_power_time(1.0, 10.0, "H200", 45)
    assert scaled["acf_power_w"] == pytest.approx(10.0 * 0.05552, abs=5e-4)
    assert "high-performance" in baselines.scale_energy(1.0, 45, 7)["method"]


def test_gpu_comparison_scales_the_on_chip_energy_only() -> None:
    """The DRAM energy of a row is HBM interface energy (3.9 pJ/bit), which a logic node does
    not change: only the rest (on-chip dynamic and leakage) is scaled 45->7 nm. Scaling all of
    it made ResNet-18's 90 % step (half of it DRAM) 51.7x below the H200's energy, not 5.4x."""
    f = baselines.energy_factor(45, 7)
    row = {**_acf(), "energy_j": 1.0, "energy_dram_j": 0.5, "energy_mac_arrays_j": 0.4,
           "energy_leakage_clusters_j": 0.1}
    anchors = baselines.load_anchors()
    g = gpu_tables.gpu_comparison(row, anchors, "resnet18-cifar")[0]
    assert g["acf_energy_j_scaled"] == pytest.approx(0.5 * f + 0.5)
    assert g["acf_energy_dram_j"] == 0.5
    assert g["energy_reduction_scaled"] == pytest.approx(g["gpu_energy_j"] / (0.5 * f + 0.5))
    assert g["energy_scaling"].startswith("on-chip x0.0555 45->7 nm, DRAM (HBM interface) unscaled")
    assert "DRAM (HBM interface) unscaled" in g["iso_power"]
    power = baselines.iso_power_time(2.0, 1.0, "H200", 45, acf_dram_j=0.5)
    assert power["acf_power_w"] == pytest.approx((0.5 * f + 0.5) / 2.0)
    scaled = baselines.scale_energy(1.0, 45, 7, dram_j=0.5)
    assert (scaled["energy_j"], scaled["dram_j"]) == (pytest.approx(0.5 * f + 0.5), 0.5)
    # iso-area keeps the DRAM PHY's area (8 channels x 1.25 mm2 on acf-base) as it is
    area = row["area_mm2"]
    assert row["hardware"]["dram_phy_mm2"] == 10.0
    assert g["speedup_iso_area"] == pytest.approx(
        g["gpu_time_s"] / (row["seconds"] * ((area - 10.0) * 0.059 + 10.0) / 814.0))


def test_rows_without_a_recorded_phy_area_take_it_from_their_target() -> None:
    row = _acf()
    row["hardware"] = {k: v for k, v in row["hardware"].items() if k != "dram_phy_mm2"}
    assert gpu_tables.dram_phy_mm2(row) == 10.0
    assert gpu_tables.dram_phy_mm2({**row, "config_hash": "000000000000"}) == 0.0  # another config


# ---- 3: a bf16-amp step no faster than TF32 is not bound by the bf16 peak -------------------------


def _acf() -> dict:
    return fake_row("acf-base", 1e-3, model="resnet18-cifar")


def test_bf16_iso_peak_line_is_flagged_where_bf16_ran_slower() -> None:
    """ResNet-18's H200 step took 8.33 ms in bf16-amp and 7.07 ms in TF32: the bf16 iso-peak
    line (at the dense bf16 peak, 989.5 / 494.5 = 2.001x the TF32 one) gives ACF
    2.001 x 1.178 = 2.36x the TF32 line's speedup."""
    lines = gpu_tables.gpu_comparison(_acf(), baselines.load_anchors(), "resnet18-cifar")
    tf32, bf16 = lines
    assert bf16["gpu_row"] == "train resnet18-cifar bs=128 bf16-amp"
    assert bf16["bf16_amp_not_faster_than_tf32"] is True
    assert bf16["bf16_amp_over_tf32_time"] == pytest.approx(8.32787 / 7.07011, rel=1e-5)
    assert bf16["speedup_iso_peak"] / tf32["speedup_iso_peak"] == pytest.approx(2.35699, rel=1e-5)
    assert bf16["iso_peak_caveat"] == (
        "the GPU step did not run faster in bf16-amp (8.33 ms) than in TF32 (7.07 ms): "
        "it is not bound by the bf16 peak, so this iso-peak overstates ACF (2.36x the TF32 line's "
        "speedup); quote the TF32 row")
    assert tf32["bf16_amp_not_faster_than_tf32"] is False and tf32["iso_peak_caveat"] == ""


def test_bf16_iso_peak_line_is_not_flagged_where_bf16_ran_faster() -> None:
    """ResNet-50's bf16-amp step (28.47 ms) beat its TF32 one (32.06 ms): no caveat."""
    acf = fake_row("acf-base", 1e-3, model="resnet50-imagenet")
    bf16 = gpu_tables.gpu_comparison(acf, baselines.load_anchors(), "resnet50-imagenet")[1]
    assert bf16["bf16_amp_not_faster_than_tf32"] is False
    assert bf16["bf16_amp_over_tf32_time"] == pytest.approx(0.88798, rel=1e-4)
    assert bf16["iso_peak_caveat"] == "" and "caution" not in bf16["iso_peak"]


def test_summary_and_comparison_json_carry_the_bf16_caveat(tmp_path) -> None:
    rows = [fake_row(t, s, model="resnet18-cifar") for t, s in (("acf-base", 1e-3), ("acf-dense", 2e-3))]
    text = report.write_report(rows, tmp_path, anchors=baselines.load_anchors()).read_text()
    assert ("\n\nCaution on the H200 `train resnet18-cifar bs=128 bf16-amp` iso-peak line: the GPU step did "
            "not run faster in bf16-amp (8.33 ms) than in TF32 (7.07 ms)") in text
    gpu = json.loads((tmp_path / "comparison.json").read_text())["comparisons"][0]["gpu"]
    assert [g["bf16_amp_not_faster_than_tf32"] for g in gpu] == [False, True]
