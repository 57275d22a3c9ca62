"""Baselines and the normalizations every comparison states.

* **Measured GPU** (:func:`load_anchors`): the H200 numbers in ``evaluation/anchors/*.json`` (a copy of the shared measurement file);
  every derived value carries the file's ``what`` / ``device`` / ``torch`` provenance.
* **Roofline GPUs** (:data:`GPUS`, :func:`roofline_gemm`, :func:`step_roofline`): A100 / H100 /
  H200 from NVIDIA datasheet figures (dense peaks; the datasheets' "with sparsity" figures are
  2x these), each GEMM moving its layer's real tensors (no im2col matrix).
* **Local CPU** (:func:`cpu_gemm`): a GEMM timed live with torch.
* **Normalization** (:func:`iso_peak_time`, :func:`iso_power_time`, :func:`iso_area_time`):
  iso-peak MAC/s *for a named dtype*, iso-power, iso-area; the fabric's on-chip energies
  and areas scaled to the compared chip's node by Stillmaker & Baas 2017
  (:func:`scale_energy`), its DRAM energy (an HBM interface figure) and DRAM PHY area not
  (docs/energy.md).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The measured H200 anchors ship with the package (a verbatim copy of the shared file).
ANCHORS_DIR = Path(__file__).resolve().parent / "anchors"
DEFAULT_ANCHORS = ANCHORS_DIR / "gpu_h200_2026-11-27.json"


# ---- datasheet GPUs -----------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    """Dense peak FLOP/s per dtype, memory bandwidth, TDP, process node, die area; ``source``."""

    name: str
    peak_flops: dict[str, float]
    mem_bytes_per_s: float
    tdp_w: float
    node_nm: int  # nearest node of the Stillmaker & Baas tables (4N/N4 -> 7, the smallest)
    process: str
    die_mm2: float
    source: str


GPUS: dict[str, GpuSpec] = {
    # NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB, 2021): FP32 19.5 TFLOPS, TF32 156
    # (312 with sparsity), BF16 312 (624 with sparsity), HBM2e 2,039 GB/s, max TDP 400 W.
    # Die: 826 mm^2, TSMC N7 (NVIDIA A100 Tensor Core GPU Architecture whitepaper, 2020).
    "A100": GpuSpec("A100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12}, 2039e9, 400.0, 7,
                    "TSMC N7", 826.0, "NVIDIA A100 datasheet (SXM4 80GB) and A100 architecture whitepaper"),
    # NVIDIA H100 Tensor Core GPU datasheet (SXM5): FP32 67 TFLOPS, TF32 989 with sparsity
    # (494.5 dense), BF16 1,979 with sparsity (989.5 dense), HBM3 3.35 TB/s, TDP up to 700 W.
    # Die: 814 mm^2, TSMC 4N (NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022).
    "H100": GpuSpec("H100", {"fp32": 67e12, "tf32": 494.5e12, "bf16": 989.5e12}, 3.35e12, 700.0, 7,
                    "TSMC 4N", 814.0, "NVIDIA H100 datasheet (SXM5) and Hopper whitepaper"),
    # NVIDIA H200 Tensor Core GPU datasheet (SXM): FP32 67 TFLOPS, TF32 989 with sparsity,
    # BF16 1,979 with sparsity, 141 GB HBM3e at 4.8 TB/s, TDP up to 700 W (same GH100 die).
    "H200": GpuSpec("H200", {"fp32": 67e12, "tf32": 494.5e12, "bf16": 989.5e12}, 4.8e12, 700.0, 7,
                    "TSMC 4N", 814.0, "NVIDIA H200 datasheet (SXM) and Hopper whitepaper"),
}

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2}


def gpu(name: str) -> GpuSpec:
    try:
        return GPUS[name]
    except KeyError:
        raise ValueError(f"unknown GPU {name!r}; choose one of {', '.join(GPUS)}") from None


def roofline_gemm(gpu_name: str, m: int, n: int, k: int, dtype: str = "bf16",
                  elems_moved: int | None = None) -> dict[str, Any]:
    """Roofline time of a dense ``m x n x k`` GEMM: max(FLOPs / peak, bytes / bandwidth), each
    tensor moved once (perfect on-chip reuse). ``elems_moved``: the elements of the tensors
    the GEMM really reads and writes (:func:`training_gemm_elems`: a convolution's activation
    tensor, not its im2col matrix); by default its three operands, ``m k + k n + m n``.
    Energy = TDP x time (an upper bound)."""
    g = gpu(gpu_name)
    if dtype not in g.peak_flops:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(g.peak_flops)}")
    flops = 2.0 * m * n * k
    elems = m * k + k * n + m * n if elems_moved is None else elems_moved
    nbytes = DTYPE_BYTES[dtype] * elems
    t_compute = flops / g.peak_flops[dtype]
    t_memory = nbytes / g.mem_bytes_per_s
    t = max(t_compute, t_memory)
    return {"gpu": g.name, "dtype": dtype, "flops": flops, "bytes": nbytes, "time_s": t,
            "bound": "compute" if t_compute >= t_memory else "memory",
            "energy_j_upper": t * g.tdp_w, "source": g.source,
            "normalization": f"roofline at datasheet dense {dtype} peak"}


# ---- the tensors a training-step GEMM moves ------------------------------------------------
#
# A convolution is a GEMM over its im2col matrix (M x K = batch*H_out*W_out x C_in*kh*kw), but
# the GPU's convolution kernels never write that matrix to memory: cuDNN's implicit GEMM
# "expresses the convolution as a matrix product without actually explicitly forming the
# matrix that holds the input tensor data" (cuDNN API reference, cudnnConvolutionFwdAlgo_t,
# CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM), forming its tiles "on the fly as data are loaded
# from global memory into Shared Memory" (NVIDIA CUTLASS documentation, "Implicit GEMM
# Convolution"), whereas an explicit im2col "replicates each activation element by a factor
# equal to the filter size, consuming additional storage capacity and memory bandwidth" (ibid.).
# A roofline that counts M x K bytes overstates a 3x3 convolution's input traffic up to 9x. What
# DRAM sees is the activation tensor (batch x C_in x H_in x W_in), the weight (C_out x C_in x
# kh x kw = N x K) and the output (batch x C_out x H_out x W_out = M x N), and for the backward
# GEMMs the same tensors' gradients.

def conv_geometry(layer: Any) -> tuple[int, int] | None:
    """``(kernel, stride)`` of a convolution layer (:class:`acf.evaluation.workloads.Layer`
    records both), None for a linear layer or an attention product."""
    kernel = int(getattr(layer, "kernel", 0) or 0)
    return (kernel, int(getattr(layer, "stride", 1) or 1)) if kernel else None


def input_elems_read(layer: Any) -> int:
    """Elements of the layer's input activation X one pass reads: the whole tensor
    (batch x C_in x H_in x W_in with H_in = H_out x stride, 'same' padding), but no more than
    its im2col matrix, M x K, holds: a strided 1x1 convolution reads only the pixels it
    samples. A layer without convolution geometry reads its M x K input as it is."""
    im2col = layer.m * layer.k
    geometry = conv_geometry(layer)
    if geometry is None:
        return im2col
    kernel, stride = geometry
    c_in = layer.k // (kernel * kernel)
    return min(layer.m * stride * stride * c_in, im2col)


def training_gemm_elems(gemm: Mapping[str, Any], layer: Any, x_elems: int) -> int:
    """Elements a training-step GEMM of ``layer`` moves once each: its three operands, with the
    layer's im2col matrix (M x K: the forward's input, the backward-data's result dX, the
    weight gradient's input) counted as the ``x_elems`` of the real activation tensor. A GEMM
    whose shape is not the layer's (or an activation-by-activation product) is counted as is."""
    m, n, k = gemm["m"], gemm["n"], gemm["k"]
    operands = m * k + k * n + m * n
    same_shape = sorted((m, n, k)) == sorted((layer.m, layer.n, layer.k))
    if getattr(layer, "kind", "weight") != "weight" or not same_shape:
        return operands
    # fwd (M,N,K): m*k; bwd_data (M,K,N): m*n; wgrad (N,K,M): k*n -- each the M x K matrix once
    return operands - layer.m * layer.k + x_elems


def _layer_name(gemm: Mapping[str, Any]) -> str:
    """The layer of a GEMM row (its key is ``<layer>.<role>``; a layer name has dots too)."""
    return gemm["key"].rsplit(".", 1)[0]


def step_roofline(gpu_name: str, model: str, gemms: list[Mapping[str, Any]], dtype: str,
                  batch: int | None = None) -> dict[str, Any]:
    """The roofline time of a training step's GEMMs (result rows' ``gemms``: ``key``, ``m``,
    ``n``, ``k``, ``count``) on a datasheet GPU, each GEMM moving the real tensors of its
    layer (:func:`training_gemm_elems`) of ``model`` at ``batch``. ``unresolved``: GEMMs whose
    layer is not in the model (counted with their operands as they are)."""
    from acf.evaluation.workloads import WorkloadError, model_layers

    try:
        layers = {ly.name: ly for ly in model_layers(model, batch)}
    except WorkloadError:
        layers = {}
    time_s = nbytes = 0.0
    unresolved = []
    for g in gemms:
        layer = layers.get(_layer_name(g))
        if layer is None:
            unresolved.append(g["key"])
            elems = None
        else:
            elems = training_gemm_elems(g, layer, input_elems_read(layer))
        r = roofline_gemm(gpu_name, g["m"], g["n"], g["k"], dtype, elems)
        time_s += r["time_s"] * g["count"]
        nbytes += r["bytes"] * g["count"]
    return {"gpu": gpu_name, "dtype": dtype, "time_s": time_s, "bytes": nbytes, "unresolved": unresolved,
            "normalization": f"roofline at datasheet dense {dtype} peak, each GEMM moving its layer's "
                             "activation, weight and output tensors once (no im2col matrix)"}


# ---- measured anchors ---------------------------------------------------------------------


@dataclass
class Anchors:
    """The measured GPU file, its provenance, and look-ups by workload name."""

    path: Path
    data: dict[str, Any]

    @property
    def provenance(self) -> dict[str, str]:
        return {"anchor_file": self.path.name, "device": str(self.data.get("device", "")),
                "torch": str(self.data.get("torch", "")), "what": str(self.data.get("what", ""))}

    def rows(self) -> list[dict[str, Any]]:
        return list(self.data.get("gemm_and_training", []))

    def find(self, name: str) -> dict[str, Any]:
        for r in self.rows():
            if r["name"] == name:
                return {**r, "provenance": self.provenance}
        raise KeyError(f"no anchor row {name!r} in {self.path.name}")

    def training_step(self, model: str, precision: str = "fp32") -> dict[str, Any] | None:
        """The measured whole training step (time_s, energy_j) for an evaluation model name."""
        names = {"resnet18-cifar": "train resnet18-cifar bs=128", "vgg16-cifar": "train vgg16-cifar bs=128",
                 "resnet50-imagenet": "train resnet50-imagenet bs=64",
                 "bert-base-layer": "train bert-base seq128 bs=32"}
        if model not in names:
            return None
        try:
            row = self.find(f"{names[model]} {precision}")
        except KeyError:
            return None
        if model == "bert-base-layer":
            # the anchor is all of BERT-base (12 encoder layers + embeddings + head): one layer
            # is approximated as 1/12 of it; the row says so
            row = {**row, "time_s": row["time_s"] / 12, "energy_j": row["energy_j"] / 12,
                   "note": "whole-model BERT-base step / 12 layers (approximation)"}
        return row

    def gemm(self, kind: str, dtype: str, shape: str, sparsity: float = 0.0) -> dict[str, Any]:
        """``kind``: dense | csr | 2:4; ``shape``: e.g. ``4096x4096x4096``."""
        if kind == "dense":
            return self.find(f"dense {dtype} {shape}")
        if kind == "2:4":
            return self.find(f"2:4 {dtype} {shape}")
        return self.find(f"csr {dtype} {shape} sp={sparsity:g}")

    def sparse_step_ratio(self, sparsity: float, dtype: str = "float32") -> dict[str, Any] | None:
        """Measured cuSPARSE (SpMM + SDDMM) linear-layer training step over the dense step,
        averaged over the shapes measured at ``sparsity`` (None where it was not measured)."""
        sec = self.data.get("sparse_training_step_linear", {})
        key = f"sparse_step_ms_sp{sparsity:g}"
        ratios = [r[key] / r["dense_step_ms"] for r in sec.get("rows", [])
                  if r.get("dtype") == dtype and key in r]
        if not ratios:
            return None
        return {"ratio": sum(ratios) / len(ratios), "n_shapes": len(ratios), "dtype": dtype,
                "what": sec.get("what", ""), "provenance": self.provenance}


def default_anchors() -> Path:
    """``$ACF_ANCHORS``, else the anchors shipped with the package."""
    env = os.environ.get("ACF_ANCHORS")
    return Path(env) if env else DEFAULT_ANCHORS


def load_anchors(path: Path | str | None = None) -> Anchors:
    p = Path(path) if path else default_anchors()
    if not p.exists():
        raise FileNotFoundError(f"anchors file {p} not found")
    data = json.loads(p.read_text())
    if "what" not in data:
        raise ValueError(f"{p}: anchors need a 'what' provenance field")
    return Anchors(p, data)


# ---- local CPU ------------------------------------------------------------------------------


def cpu_gemm(m: int, n: int, k: int, dtype: str = "fp32", min_time_s: float = 0.2) -> dict[str, Any]:
    """Time a dense GEMM on this machine's CPU with torch (mean over >= ``min_time_s``)."""
    import platform

    import torch

    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(m, k, dtype=tdt), torch.randn(k, n, dtype=tdt)
    torch.matmul(a, b)
    calls, t0 = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        calls += 1
        el = time.perf_counter() - t0
        if el >= min_time_s:
            break
    t = el / calls
    return {"device": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "dtype": dtype, "m": m, "n": n, "k": k, "time_s": t, "gflops": 2 * m * n * k / t / 1e9,
            "torch": torch.__version__, "normalization": "measured live, no normalization"}


# ---- a GPU measured live, when this machine has one ------------------------------------------


def gpu_live(sparsities: tuple[float, ...] = (0.5, 0.9, 0.99), shape: tuple[int, int, int] = (4096, 4096, 4096),
             min_time_s: float = 1.0) -> dict[str, Any]:
    """The anchors' GEMM rows measured on this machine's CUDA device, in the anchor file's
    shape (dense fp32/tf32/bf16, cuSPARSE CSR fp32 at ``sparsities``, 2:4 bf16 through
    cuSPARSELt): ``time_s`` per call by CUDA events over ``min_time_s`` of back-to-back calls,
    ``energy_j`` from NVML's energy counter when pynvml is installed. Without CUDA:
    ``{"skipped": reason}``."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine: the measured H200 anchors stand in"}
    m, n, k = shape
    dev = torch.device("cuda")
    rows = []
    cases: list[tuple[str, str, float]] = [("dense", "fp32", 0.0), ("dense", "tf32", 0.0),
                                           ("dense", "bf16", 0.0), ("2:4", "bf16", 0.5)]
    cases += [("csr", "fp32", s) for s in sparsities]
    for kind, dtype, sp in cases:
        try:
            rows.append(_gpu_gemm(kind, dtype, sp, m, n, k, dev, min_time_s))
        except (RuntimeError, NotImplementedError) as exc:  # a kernel this device lacks
            rows.append({"name": _gpu_row_name(kind, dtype, sp, shape), "error": repr(exc)})
    return {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__,
            "what": gpu_live.__doc__.split("\n\n")[0] if gpu_live.__doc__ else "",
            "gemm": rows}


def _gpu_row_name(kind: str, dtype: str, sp: float, shape: tuple[int, int, int]) -> str:
    s = "x".join(map(str, shape))
    return f"{kind} {dtype} {s}" + (f" sp={sp:g}" if kind == "csr" else "")


def _gpu_gemm(kind: str, dtype: str, sp: float, m: int, n: int, k: int, dev, min_time_s: float
              ) -> dict[str, Any]:
    import torch

    tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    a = torch.randn(m, k, dtype=tdt, device=dev)
    b = torch.randn(k, n, dtype=tdt, device=dev)
    if kind == "csr":
        a = (a * (torch.rand(m, k, device=dev) >= sp)).to_sparse_csr()
    elif kind == "2:4":
        from torch.sparse import to_sparse_semi_structured

        a = to_sparse_semi_structured(a * torch.tensor([1, 1, 0, 0], dtype=tdt, device=dev).repeat(m, k // 4))

    def call() -> None:
        torch.matmul(a, b)

    call()
    torch.cuda.synchronize(dev)
    energy = _nvml_energy_mj(dev)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    calls, t0 = 0, time.perf_counter()
    start.record()
    while time.perf_counter() - t0 < min_time_s:
        for _ in range(10):
            call()
        calls += 10
        torch.cuda.synchronize(dev)
    end.record()
    torch.cuda.synchronize(dev)
    t = start.elapsed_time(end) / 1e3 / calls
    e1 = _nvml_energy_mj(dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"name": _gpu_row_name(kind, dtype, sp, (m, n, k)), "time_s": t,
            "energy_j": None if energy is None or e1 is None else (e1 - energy) / 1e3 / calls,
            "dense_tflops_equiv": 2 * m * n * k / t / 1e12, "sparsity": sp}


def _nvml_energy_mj(dev) -> float | None:
    try:
        import pynvml  # optional: nvidia-ml-py
    except ImportError:
        return None
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(dev.index or 0)
    return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))


# ---- technology scaling: the shared implementation lives in acf.isa.tech ----------------------
from acf.isa.tech import (  # noqa: E402
    SCALING_CITATION,
    area_factor,
    check_node,
    energy_factor,
)


def scale_energy(joules: float, from_nm: float, to_nm: float, dram_j: float = 0.0) -> dict[str, Any]:
    """``joules`` of the fabric at ``to_nm``: its on-chip part (``joules - dram_j``, leakage
    included) scaled by Stillmaker & Baas, its DRAM part ``dram_j`` as it is (an HBM
    interface energy per bit is set by the memory, not by the fabric's node). Both nodes
    must be tabulated (:func:`acf.isa.tech.check_node`)."""
    a, b = check_node(from_nm), check_node(to_nm)
    f = energy_factor(a, b)
    on_chip = joules - dram_j
    return {"energy_j": on_chip * f + dram_j, "on_chip_j": on_chip * f, "dram_j": dram_j,
            "factor": f, "from_nm": a, "to_nm": b,
            "text": f"on-chip x{f:.4f} {a}->{b} nm, DRAM (HBM interface) unscaled",
            "method": SCALING_CITATION}


# ---- normalizations -------------------------------------------------------------------------


def iso_peak_time(acf_seconds: float, acf_peak_macs_per_s: float, gpu_name: str, dtype: str
                  ) -> dict[str, Any]:
    """ACF time scaled to the GPU's dense peak MAC/s for ``dtype`` (a fabric with the same
    efficiency and ``gpu_peak / acf_peak`` x the MACs): t x acf_peak / gpu_peak."""
    g = gpu(gpu_name)
    gpu_macs = g.peak_flops[dtype] / 2
    return {"time_s": acf_seconds * acf_peak_macs_per_s / gpu_macs, "factor": acf_peak_macs_per_s / gpu_macs,
            "normalization": f"iso-peak {dtype} MAC/s ({g.name} dense {dtype} {gpu_macs / 1e12:.1f} TMAC/s, "
                             f"{g.source}); assumes linear scaling of the fabric"}


def iso_power_time(acf_seconds: float, acf_energy_j: float, gpu_name: str,
                   acf_node_nm: float | None = None, acf_dram_j: float = 0.0) -> dict[str, Any]:
    """ACF time if replicated up to the GPU's TDP (power-proportional replication). With
    ``acf_node_nm`` the fabric's power is first scaled to the GPU's node, as its energy and
    area are in the same comparison (:func:`scale_energy`: the on-chip part of
    ``acf_energy_j``, not its DRAM part ``acf_dram_j``); without, it is taken at its own
    node."""
    g = gpu(gpu_name)
    energy = acf_energy_j
    at = "at its own node"
    if acf_node_nm is not None:
        scaled = scale_energy(acf_energy_j, acf_node_nm, g.node_nm, acf_dram_j)
        energy = scaled["energy_j"]
        at = (f"scaled {scaled['from_nm']}->{scaled['to_nm']} nm (on-chip x{scaled['factor']:.4f}, "
              f"DRAM (HBM interface) unscaled) by {SCALING_CITATION}")
    p = energy / max(acf_seconds, 1e-30)
    return {"time_s": acf_seconds * p / g.tdp_w, "acf_power_w": p,
            "normalization": f"iso-power at {g.name} TDP {g.tdp_w:.0f} W ({g.source}); ACF "
                             f"power {p:.3g} W, {at}"}


def iso_area_time(acf_seconds: float, acf_area_mm2: float, acf_node_nm: float, gpu_name: str,
                  acf_phy_mm2: float = 0.0) -> dict[str, Any]:
    """ACF time if its area, scaled to the GPU's node, were replicated to the GPU's die area.
    ``acf_phy_mm2``: the DRAM PHY part of ``acf_area_mm2``, kept as it is (a PHY's analog
    and I/O area barely shrinks with the node, as in the emulator's report)."""
    g = gpu(gpu_name)
    f = area_factor(acf_node_nm, g.node_nm)
    area = (acf_area_mm2 - acf_phy_mm2) * f + acf_phy_mm2
    phy = " (DRAM PHY area unscaled)" if acf_phy_mm2 else ""
    return {"time_s": acf_seconds * area / g.die_mm2, "acf_area_scaled_mm2": area,
            "normalization": f"iso-area: {g.name} die {g.die_mm2:.0f} mm2 ({g.process}); ACF area "
                             f"scaled {acf_node_nm:g}->{g.node_nm} nm{phy} by {SCALING_CITATION}"}


def shape_of(name: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)x(\d+)x(\d+)", name)
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


__all__ = ["Anchors", "GPUS", "GpuSpec", "area_factor", "conv_geometry", "cpu_gemm",
           "energy_factor", "gpu_live", "input_elems_read", "iso_area_time", "iso_peak_time", "iso_power_time",
           "load_anchors", "roofline_gemm", "scale_energy", "step_roofline", "training_gemm_elems"]
