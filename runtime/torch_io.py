"""Thin torch <-> numpy conversion for the runtime (torch is imported only when a torch
tensor is actually seen, so the runtime itself never needs torch)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .errors import BindError


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str = "") -> np.ndarray:
    """A numpy array for ``x`` (numpy, scalar, list or a dense, strided torch tensor); a
    torch tensor's array may share its memory (copy it to keep it)."""
    if is_torch_tensor(x):
        import torch

        if x.layout != torch.strided:
            raise BindError(
                f"tensor {name!r}: torch layout {x.layout} is not supported; pass a dense "
                "(strided) tensor, e.g. x.to_dense() - the runtime packs sparse weights into "
                "the fabric's formats itself")
        if x.is_complex():
            raise BindError(f"tensor {name!r}: complex tensors are not supported")
        if x.device.type == "meta":  # shapes only: there are no values to run on
            raise BindError(f"tensor {name!r} is on the meta device and holds no values; "
                            "pass a tensor with data (e.g. on the CPU)")
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.cpu().numpy()
    if hasattr(x, "tocoo") and hasattr(x, "nnz"):  # scipy.sparse
        raise BindError(f"tensor {name!r}: scipy sparse matrices are not supported; pass a "
                        "dense array")
    # None, a string or an arbitrary object would become a 0-d object/str array and be
    # reported as a shape mismatch; say what it is instead
    not_data = f"tensor {name!r}: expected a tensor or array, got {type(x).__name__}"
    if x is None or isinstance(x, str | bytes):
        raise BindError(not_data)
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:  # a ragged list, an object numpy cannot convert
        raise BindError(f"{not_data} ({str(e).splitlines()[0]})") from None
    if a.dtype.kind in "OUSV":
        raise BindError(not_data)
    return a


def to_torch(x: np.ndarray, like: Any = None) -> Any:
    """A torch tensor for ``x`` (on ``like``'s device and dtype when given)."""
    import torch

    # ascontiguousarray would make a 0-d array 1-d
    t = torch.from_numpy(np.ascontiguousarray(x).reshape(np.shape(x)))
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    return t
