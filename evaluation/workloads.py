"""GEMM-level training-step workloads of the models the proposal names.

A model is a list of :class:`Layer` s (a linear layer, a convolution as its im2col GEMM, or
an activation x activation product such as attention scores). A training step of a weight
layer is three GEMMs (:func:`training_gemms`)::

    forward      Y[M,N]  = X[M,K]  . W[N,K]^T         W masked (CSR), X ReLU-sparse
    backward     dX[M,K] = dY[M,N] . W[N,K]           dY ReLU-masked where a ReLU follows
    weight grad  dW[N,K] = dY^T[N,M] . X[M,K]          an SDDMM sampled at W's mask

(the first layer's input is data: it has no gradient, so that layer has no backward
GEMM, as in torch).

with ``M`` = batch x output pixels (tokens), ``K`` = C_in x kh x kw and ``N`` = C_out for a
convolution. Weight masks come from the algorithms package's mask constructors
(:mod:`acf.algorithms.structure`: top-k magnitude, N:M) or a seeded random draw; activation
zeros come from ReLU (a fraction ``act_density`` of inputs are non-zero; the first layer's
input, BERT's GELU activations and attention operands are dense; an input after a max pool
of ``w`` ReLU outputs is non-zero unless all ``w`` are, ``1 - (1 - act_density)^w``, and one
after an average pool is dense). A layer's output gradient dY is ReLU-masked only where a
ReLU reads the layer's output directly (the MLPs): in the convolutional models a batch norm
sits between the convolution and its ReLU, and its backward makes dY dense.

Each GEMM is written as graph-dialect IR (:func:`gemm_ir`) for ``compile_module``. A GEMM too
large to emulate is *sampled* (:func:`sample_plan`): a block of whole output tiles (at least
one wave over all clusters) and a bounded number of k-chunks is emulated and scaled; the
fraction of the MACs emulated is carried into every result (``sampled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

CSR = "#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>\n"

MASK_KINDS = ("random", "magnitude", "nm", "block")


class WorkloadError(ValueError):
    """An unknown model / mask kind or an impossible density."""


@dataclass(frozen=True)
class Layer:
    """One GEMM-shaped layer: ``M x K`` inputs, ``N x K`` weights (``count`` identical copies).

    ``kind``: ``weight`` (has a sparsifiable weight) or ``act`` (activation x activation,
    dense, e.g. attention scores/context; backward is two GEMMs of the same size).
    """

    name: str
    m: int
    n: int
    k: int
    count: int = 1
    kind: str = "weight"
    relu_input: bool = True  # the input X is the output of a ReLU (zeros skippable)
    relu_output: bool = True  # dY is masked by this layer's ReLU derivative
    #: ReLU outputs a max pool folds into each input (1: no pool): the input is zero only
    #: where all of them are
    input_window: int = 1
    input_grad: bool = True  # False for the first layer: its input is data, no gradient
    kernel: int = 0  # a convolution's kernel side (0: not a convolution); rooflines use it
    stride: int = 1  # a convolution's stride: its input is (stride x) larger than its output

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k


@dataclass(frozen=True)
class Gemm:
    """One GEMM of a training step. ``op``: ``matmul`` or ``sddmm``. Operand A is ``m x k``
    (stored transposed, ``k x m``, when ``ta``), B is ``k x n`` (stored ``n x k`` when ``tb``).
    ``w_operand``: which operand (``a``/``b``/``mask``) is the weight, or ``""`` (an
    activation-by-activation product such as attention's)."""

    layer: str
    role: str  # fwd | bwd_data | wgrad
    op: str
    m: int
    n: int
    k: int
    ta: bool = False
    tb: bool = False
    a_density: float = 1.0
    b_density: float = 1.0
    w_density: float = 1.0
    sparse_b: bool = False  # B is the (CSR) weight
    count: int = 1
    w_operand: str = ""
    sparse_a: bool = False  # A is the (CSR) weight (a swapped GEMM)

    @property
    def dense_macs(self) -> int:
        return self.m * self.n * self.k

    def swapped(self) -> Gemm:
        """The same product with the operands' roles exchanged, ``C^T = B^T A^T``: the same
        MACs and stored arrays (the arguments in the other order, each read transposed the
        other way). A design that skips the zeros of its ``a`` operand only (a weight-only
        one, such as Procrustes) gets its weight there."""
        if self.op != "matmul":
            raise ValueError(f"only a matmul swaps its operands, not {self.op}")
        return replace(self, m=self.n, n=self.m, ta=not self.tb, tb=not self.ta,
                       a_density=self.b_density, b_density=self.a_density,
                       sparse_a=self.sparse_b, sparse_b=self.sparse_a,
                       w_operand={"a": "b", "b": "a"}.get(self.w_operand, self.w_operand))

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.role}"


# ---- model zoo -------------------------------------------------------------------------


def _conv(name: str, batch: int, cin: int, cout: int, ksz: int, out_hw: int, count: int = 1,
          relu_input: bool = True, input_window: int = 1, input_grad: bool = True,
          stride: int = 1) -> Layer:
    """A convolution followed by batch norm (so its dY is dense) as its im2col GEMM."""
    return Layer(name, batch * out_hw * out_hw, cout, cin * ksz * ksz, count, "weight", relu_input,
                 relu_output=False, input_window=input_window, input_grad=input_grad,
                 kernel=ksz, stride=stride)


def tiny_mlp(batch: int = 32) -> list[Layer]:
    """A CI-sized MLP (64-64-16): small enough to emulate every tile in well under a second."""
    return [Layer("fc1", batch, 64, 64, relu_input=False, input_grad=False),
            Layer("fc2", batch, 16, 64, relu_output=False)]


def mlp(batch: int = 128) -> list[Layer]:
    """LeNet-300-100 on MNIST (784-300-100-10)."""
    return [Layer("fc1", batch, 300, 784, relu_input=False, input_grad=False), Layer("fc2", batch, 100, 300),
            Layer("fc3", batch, 10, 100, relu_output=False)]


def resnet18_cifar(batch: int = 128) -> list[Layer]:
    """ResNet-18 for CIFAR (3x3 stem, no max-pool; He et al. 2016 as in the usual CIFAR port;
    the classifier reads the average pool: dense)."""
    b = batch
    layers = [_conv("conv1", b, 3, 64, 3, 32, relu_input=False, input_grad=False),
              _conv("layer1.conv", b, 64, 64, 3, 32, count=4)]
    cin = 64
    for i, (c, hw) in enumerate(((128, 16), (256, 8), (512, 4)), start=2):
        layers += [_conv(f"layer{i}.0.conv1", b, cin, c, 3, hw, stride=2),
                   _conv(f"layer{i}.conv", b, c, c, 3, hw, count=3),
                   _conv(f"layer{i}.0.shortcut", b, cin, c, 1, hw, stride=2)]
        cin = c
    layers.append(Layer("fc", b, 10, 512, relu_input=False, relu_output=False))
    return layers


def vgg16_cifar(batch: int = 128) -> list[Layer]:
    """VGG-16 for CIFAR with batch norm (13 3x3 convs, one 512->10 classifier); a 2x2 max
    pool halves the resolution before conv3, conv5, conv8, conv11 and the classifier."""
    cfg = [(64, 32), (64, 32), (128, 16), (128, 16), (256, 8), (256, 8), (256, 8),
           (512, 4), (512, 4), (512, 4), (512, 2), (512, 2), (512, 2)]
    layers, cin, hw_in = [], 3, 32
    for i, (c, hw) in enumerate(cfg):
        layers.append(_conv(f"conv{i + 1}", batch, cin, c, 3, hw, relu_input=i > 0,
                            input_window=4 if hw < hw_in else 1, input_grad=i > 0))
        cin, hw_in = c, hw
    layers.append(Layer("fc", batch, 10, 512, relu_output=False, input_window=4))
    return layers


def resnet50_imagenet(batch: int = 64) -> list[Layer]:
    """ResNet-50 at 224x224 (torchvision v1.5: stride on the 3x3 of each bottleneck)."""
    b = batch
    layers = [_conv("conv1", b, 3, 64, 7, 112, relu_input=False, input_grad=False, stride=2)]
    cin = 64
    for i, (w, blocks, hw) in enumerate(((64, 3, 56), (128, 4, 28), (256, 6, 14), (512, 3, 7)), start=1):
        out = 4 * w
        after_pool = 9 if i == 1 else 1  # layer1 reads the stem's 3x3 max pool
        down = 1 if i == 1 else 2  # from layer2 on the first 3x3 and the downsample halve
        layers += [
            _conv(f"layer{i}.0.conv1", b, cin, w, 1, hw if i == 1 else 2 * hw, input_window=after_pool),
            _conv(f"layer{i}.0.conv2", b, w, w, 3, hw, stride=down),
            _conv(f"layer{i}.0.conv3", b, w, out, 1, hw),
            _conv(f"layer{i}.0.downsample", b, cin, out, 1, hw, input_window=after_pool, stride=down),
        ]
        if blocks > 1:
            layers += [_conv(f"layer{i}.conv1", b, out, w, 1, hw, count=blocks - 1),
                       _conv(f"layer{i}.conv2", b, w, w, 3, hw, count=blocks - 1),
                       _conv(f"layer{i}.conv3", b, w, out, 1, hw, count=blocks - 1)]
        cin = out
    layers.append(Layer("fc", b, 1000, 2048, relu_input=False, relu_output=False))  # after avg pool
    return layers


def bert_base_layer(batch: int = 32, seq: int = 128) -> list[Layer]:
    """One BERT-base encoder layer (hidden 768, 12 heads, FFN 3072), GELU: no ReLU zeros."""
    t, h, heads = batch * seq, 768, 12
    dh = h // heads
    return [
        Layer("qkv", t, 3 * h, h, relu_input=False, relu_output=False),
        Layer("attn.scores", seq, seq, dh, count=batch * heads, kind="act", relu_input=False, relu_output=False),
        Layer("attn.context", seq, dh, seq, count=batch * heads, kind="act", relu_input=False, relu_output=False),
        Layer("attn.out", t, h, h, relu_input=False, relu_output=False),
        Layer("ffn1", t, 4 * h, h, relu_input=False, relu_output=False),
        Layer("ffn2", t, h, 4 * h, relu_input=False, relu_output=False),
    ]


MODELS = {
    "tiny-mlp": tiny_mlp,
    "mlp": mlp,
    "resnet18-cifar": resnet18_cifar,
    "vgg16-cifar": vgg16_cifar,
    "resnet50-imagenet": resnet50_imagenet,
    "bert-base-layer": bert_base_layer,
}


def model_layers(name: str, batch: int | None = None) -> list[Layer]:
    try:
        fn = MODELS[name]
    except KeyError:
        raise WorkloadError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return fn() if batch is None else fn(batch)


def check_density(sparsity: float) -> float:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise WorkloadError(f"impossible sparsity {sparsity!r}: must be in [0, 1) (density > 0)")
    return 1.0 - float(sparsity)


def training_gemms(layers: list[Layer], sparsity: float, act_density: float = 0.5) -> list[Gemm]:
    """The three GEMMs of every layer's training step at weight ``sparsity``."""
    dw = check_density(sparsity)
    if not 0.0 < act_density <= 1.0:
        raise WorkloadError(f"impossible activation density {act_density!r}: must be in (0, 1]")
    out: list[Gemm] = []
    for ly in layers:
        dx = 1.0 - (1.0 - act_density) ** ly.input_window if ly.relu_input else 1.0
        dy = act_density if ly.relu_output else 1.0
        if ly.kind == "act":
            out += [Gemm(ly.name, "fwd", "matmul", ly.m, ly.n, ly.k, tb=True, count=ly.count),
                    Gemm(ly.name, "bwd_data", "matmul", ly.m, ly.k, ly.n, count=ly.count),
                    Gemm(ly.name, "bwd_other", "matmul", ly.n, ly.k, ly.m, ta=True, count=ly.count)]
            continue
        sparse = dw < 1.0
        out.append(Gemm(ly.name, "fwd", "matmul", ly.m, ly.n, ly.k, tb=True, a_density=dx,
                        b_density=dw, w_density=dw, sparse_b=sparse, count=ly.count, w_operand="b"))
        if ly.input_grad:
            out.append(Gemm(ly.name, "bwd_data", "matmul", ly.m, ly.k, ly.n, a_density=dy,
                            b_density=dw, w_density=dw, sparse_b=sparse, count=ly.count,
                            w_operand="b"))
        out += [
            Gemm(ly.name, "wgrad", "sddmm" if sparse else "matmul", ly.n, ly.k, ly.m, ta=True,
                 a_density=dy, b_density=dx, w_density=dw, count=ly.count,
                 w_operand="mask" if sparse else ""),
        ]
    return out


# ---- IR ---------------------------------------------------------------------------------


def _t(r: int, c: int, sparse: bool = False) -> str:
    return f"tensor<{r}x{c}xf32{', #csr' if sparse else ''}>"


def gemm_ir(g: Gemm) -> str:
    """Graph-dialect IR of one GEMM (``graph.matmul`` / ``graph.sddmm``), returning its result."""
    a_shape = (g.k, g.m) if g.ta else (g.m, g.k)
    b_shape = (g.n, g.k) if g.tb else (g.k, g.n)
    a_t, b_t = _t(*a_shape, g.sparse_a), _t(*b_shape, g.sparse_b)
    out_t = _t(g.m, g.n)
    attrs = []
    if g.ta:
        attrs.append("transpose_a = true")
    if g.tb:
        attrs.append("transpose_b = true")
    attr = (" {" + ", ".join(attrs) + "}") if attrs else ""
    loc = f' loc("{g.layer}":1:1 layer "{g.key}")'
    if g.op == "sddmm":
        mask_t = _t(g.m, g.n, True)
        return CSR + (
            f"graph.func @gemm(%a: {a_t}, %b: {b_t}, %mask: {mask_t}) -> ({out_t}) {{\n"
            f"  %y = graph.sddmm %a, %b, %mask{attr} : {a_t}, {b_t}, {mask_t} -> {out_t}{loc}\n"
            f"  graph.return %y : {out_t}\n}}\n")
    return (CSR if g.sparse_a or g.sparse_b else "") + (
        f"graph.func @gemm(%a: {a_t}, %b: {b_t}) -> ({out_t}) {{\n"
        f"  %y = graph.matmul %a, %b{attr} : {a_t}, {b_t} -> {out_t}{loc}\n"
        f"  graph.return %y : {out_t}\n}}\n")


# ---- masks and operands -------------------------------------------------------------------


def nm_or_error(density: float) -> tuple[int, int]:
    """The exact N:M of ``density``, or a WorkloadError saying there is none."""
    from acf.algorithms.structure import NM_GROUPS, nm_for_density

    nm = nm_for_density(density)
    if nm is None:
        raise WorkloadError(f"no N:M pattern has density {density:g} (M in {NM_GROUPS}); "
                            f"an N:M sweep needs sparsities such as 0.5 (2:4), 0.75 (1:4), "
                            f"0.875 (1:8), 0.9 (1:10)")
    return nm


def weight_mask(shape: tuple[int, int], density: float, kind: str, rng: np.random.Generator,
                block: int = 4) -> np.ndarray:
    """A bool mask ``(out, K)`` with about ``density`` kept, of the given ``kind``.

    ``magnitude`` keeps the top-k |w| of a Gaussian weight (:func:`structure.topk_mask`);
    ``nm`` keeps N of every M along K, the N:M pattern of exactly ``density``
    (:func:`structure.nm_for_density`);
    ``block`` keeps whole ``block x block`` groups; ``random`` is a seeded exact-count draw.
    """
    if kind not in MASK_KINDS:
        raise WorkloadError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    rows, cols = shape
    if density >= 1.0:
        return np.ones(shape, bool)
    keep = max(1, round(density * rows * cols))
    if kind == "random":
        flat = np.zeros(rows * cols, bool)
        flat[rng.choice(rows * cols, keep, replace=False)] = True
        return flat.reshape(shape)
    import torch

    from acf.algorithms import structure

    w = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    if kind == "magnitude":
        return structure.topk_mask(w.abs(), keep).numpy()
    if kind == "nm":
        n, m = nm_or_error(density)
        return structure.nm_mask(w.abs(), n, m).numpy()
    gr, gc = -(-rows // block), -(-cols // block)
    g = np.zeros(gr * gc, bool)
    g[rng.choice(gr * gc, max(1, round(density * gr * gc)), replace=False)] = True
    return np.kron(g.reshape(gr, gc), np.ones((block, block), bool))[:rows, :cols].astype(bool)


def relu_like(shape: tuple[int, int], density: float, rng: np.random.Generator) -> np.ndarray:
    """A float32 array with a fraction ``density`` of non-zeros (positive, ReLU-output-like)."""
    x = np.abs(rng.standard_normal(shape)).astype(np.float32) + 0.01
    if density < 1.0:
        x *= rng.random(shape) < density
    return x


# ---- sampling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplePlan:
    """Which block of a GEMM is emulated and how its results scale to the whole GEMM."""

    m: int
    n: int
    k: int
    time_scale: float  # (full waves / sampled waves) x (full k-chunks / sampled k-chunks)
    work_scale: float  # full MACs / sampled MACs (dynamic energy, MAC counts)
    fraction: float  # sampled MACs / full MACs (1.0 = whole GEMM emulated)


def sample_plan(g: Gemm, tile: int, clusters: int, max_waves: int = 1, max_k_chunks: int = 8,
                full: bool = False) -> SamplePlan:
    """Whole output tiles covering at least ``max_waves`` waves over ``clusters`` (or all tiles)
    and at most ``max_k_chunks`` tile-deep k-chunks; ``full=True`` emulates everything."""
    tm_all, tn_all, kc_all = (-(-g.m // tile), -(-g.n // tile), -(-g.k // tile))
    if full:
        return SamplePlan(g.m, g.n, g.k, 1.0, 1.0, 1.0)
    want = clusters * max_waves
    tn = min(tn_all, want)
    tm = min(tm_all, -(-want // tn))
    kc = min(kc_all, max_k_chunks)
    m, n, k = min(g.m, tm * tile), min(g.n, tn * tile), min(g.k, kc * tile)
    waves_full = -(-(tm_all * tn_all) // clusters)
    waves_s = -(-(tm * tn) // clusters)
    time_scale = (waves_full / waves_s) * (g.k / k)
    work = g.m * g.n * g.k
    frac = (m * n * k) / work
    return SamplePlan(m, n, k, time_scale, 1.0 / frac, frac)


def sampled_gemm(g: Gemm, plan: SamplePlan) -> Gemm:
    return replace(g, m=plan.m, n=plan.n, k=plan.k)


def gemm_inputs(g: Gemm, kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Operands of (a possibly sampled) GEMM in IR argument order, with the weight masked."""
    a_shape = (g.k, g.m) if g.ta else (g.m, g.k)
    b_shape = (g.n, g.k) if g.tb else (g.k, g.n)
    a = relu_like(a_shape, g.a_density, rng)
    if g.op == "sddmm":
        b = relu_like(b_shape, g.b_density, rng)
        mask = weight_mask((g.m, g.n), g.w_density, kind, rng).astype(np.float32)
        return [a, b, mask]
    if g.sparse_b or g.b_density < 1.0:
        # B is the weight W[N, K] itself in both products: fwd stores it n x k (tb) and
        # bwd-data's contraction runs over the layer's N, so b_shape is W's shape either way
        mask = weight_mask(b_shape, g.w_density, kind, rng)
        return [a, rng.standard_normal(b_shape).astype(np.float32) * mask]
    return [a, relu_like(b_shape, g.b_density, rng)]


@dataclass
class Workload:
    """A named model's training step at one sparsity, ready for the sweep."""

    model: str
    sparsity: float
    mask: str
    act_density: float
    batch: int | None = None
    gemms: list[Gemm] = field(default_factory=list)

    @classmethod
    def build(cls, model: str, sparsity: float, mask: str = "random", act_density: float = 0.5,
              batch: int | None = None) -> Workload:
        if mask not in MASK_KINDS:
            raise WorkloadError(f"unknown mask kind {mask!r}; choose one of {', '.join(MASK_KINDS)}")
        layers = model_layers(model, batch)
        return cls(model, float(sparsity), mask, act_density, batch,
                   training_gemms(layers, sparsity, act_density))

    @property
    def dense_macs(self) -> int:
        return sum(g.dense_macs * g.count for g in self.gemms)


def ideal_speedup(a_density: float, w_density: float) -> float:
    """The 1/(d_w d_a) bound on skipping speedup."""
    return 1.0 / max(a_density * w_density, 1e-12)


__all__ = ["Gemm", "Layer", "MASK_KINDS", "MODELS", "SamplePlan", "Workload", "WorkloadError",
           "gemm_inputs", "gemm_ir", "ideal_speedup", "model_layers", "sample_plan",
           "sampled_gemm", "training_gemms", "weight_mask"]
