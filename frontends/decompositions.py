"""The pinned decomposition table used when capturing training steps.

``aot_autograd`` already lowers every CompositeImplicit op (``linear``, ``cross_entropy``,
``flatten``, math-backend ``scaled_dot_product_attention``...) to core ATen. On top of that we
decompose exactly the ops below, each into core-ATen ops that ``aten_to_ir`` converts. The
list is explicit (never "all of torch's decompositions") so a torch upgrade cannot silently
change what the converters see; an op that is neither here nor in the converter table is
reported as unsupported with the user's source line.

Deliberately *not* decomposed (they map one-to-one onto graph-dialect ops, which keeps the
three GEMMs per layer and the normalization backward visible to the compiler):
``convolution(_backward)``, ``native_batch_norm_backward``, ``native_layer_norm(_backward)``,
``max_pool2d_with_indices(_backward)``, ``avg_pool2d(_backward)``, ``_softmax`` /
``_log_softmax`` (+ ``_backward_data``), ``gelu(_backward)``, ``nll_loss_forward/backward``,
``threshold_backward``.

Never decompose ``aten._scaled_dot_product_flash_attention_for_cpu``: in torch 2.13 its
decomposition gives wrong attention gradients. Attention is captured on the math SDPA
backend instead (:func:`tracing_modes`), where it arrives as bmm + softmax.

Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) are traced with oneDNN off
(:func:`tracing_modes`): with it on, the CPU picks ``aten.mkldnn_rnn_layer``, one opaque
op; without it the layer arrives as its per-step GEMMs, sigmoids and tanhs. Dynamo runs
such modules eagerly, outside any graph, unless ``torch._dynamo.config.allow_rnn`` is set:
capture sets it while it traces, and the ``torch.compile`` backend sets it when imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: ``aten`` overload packets decomposed at capture (names, resolved lazily: no torch import).
DECOMPOSED_OPS: tuple[str, ...] = (
    "mse_loss",             # -> sub, mul, mean
    "mse_loss_backward",    # -> sub, mul, div
    "rsub",                 # -> sub
    "var_mean",             # -> mean, sub, mul, sum, div
    "var",
    "std",
    "addcmul",              # -> mul, add
    "addcdiv",              # -> div, add
    "baddbmm",              # -> bmm, mul, add
    "mv",                   # -> mul, sum
    "dot",
    "native_dropout_backward",        # -> mul (dropout: x * keep / (1 - p), keep a step input)
    "native_group_norm",              # -> var_mean (as above), rsqrt, mul, add over groups
    "native_group_norm_backward",     # -> sum, mul, sub over groups
    "repeat",                         # -> expand, clone, view (instance norm's affine)
)


def decomposition_table() -> dict[Any, Any]:
    """``{OpOverload: decomposition}`` for :data:`DECOMPOSED_OPS` (imports torch)."""
    import torch
    from torch._decomp import get_decompositions

    aten = torch.ops.aten
    packets = [getattr(aten, name) for name in DECOMPOSED_OPS if hasattr(aten, name)]
    return get_decompositions(packets)


@contextmanager
def tracing_modes() -> Iterator[None]:
    """The modes forward and backward are traced under: attention on the math SDPA backend
    and recurrent layers without oneDNN, so each arrives as ops the converters know."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    onednn = torch.backends.mkldnn
    was = onednn.enabled  # set directly: mkldnn.flags() also re-sets TF32, which warns
    onednn.enabled = False
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        onednn.enabled = was
