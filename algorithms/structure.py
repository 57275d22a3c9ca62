"""Mask constructors shared by the algorithms: top-k, N:M groups, rectangular groups.

Every weight is viewed as a matrix ``(out, in * kh * kw)`` (``as_matrix``): rows are output
features/channels, columns the input dimension a MAC consumes (for Conv2d, flattened over
input channel, kernel row and kernel column in PyTorch's memory order).
"""

from __future__ import annotations

import torch


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """View a Linear ``(out, in)`` or Conv2d ``(out, in, kh, kw)`` tensor as ``(out, K)``."""
    return t.reshape(t.shape[0], -1)


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of ``scores``' shape with exactly ``k`` True at the largest scores."""
    flat = scores.reshape(-1)
    k = max(0, min(int(k), flat.numel()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=scores.device)
    if k:
        mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.reshape(scores.shape)


#: group sizes an N:M pattern is looked for in, hardware-friendly powers of two first
NM_GROUPS = (4, 8, 16, 32, 5, 10, 20)


def nm_for_density(density: float) -> tuple[int, int] | None:
    """The N:M pattern whose density N/M is exactly ``density`` (the smallest M of
    :data:`NM_GROUPS` that has one, e.g. 0.5 -> 2:4, 0.1 -> 1:10), or None."""
    for m in NM_GROUPS:
        n = density * m
        if abs(n - round(n)) < 1e-9 and 1 <= round(n) <= m:
            return int(round(n)), m
    return None


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive entries along the input dimension.

    ``scores`` has the parameter's shape; groups run along ``as_matrix(scores)``'s columns.
    When ``K`` is not a multiple of ``m`` the last, shorter group keeps ``min(n, its size)``.
    """
    mat = as_matrix(scores).float()
    rows, cols = mat.shape
    groups = -(-cols // m)
    padded = torch.full((rows, groups * m), float("-inf"), device=mat.device)
    padded[:, :cols] = mat
    grouped = padded.reshape(rows, groups, m)
    keep = torch.zeros_like(grouped, dtype=torch.bool)
    keep.scatter_(2, torch.topk(grouped, n, dim=2, sorted=False).indices, True)
    return keep.reshape(rows, groups * m)[:, :cols].reshape(scores.shape)


def group_scores(scores: torch.Tensor, br: int, bc: int) -> torch.Tensor:
    """Mean of ``scores`` over ``br x bc`` tiles of ``as_matrix(scores)`` (edge tiles may be
    smaller; the mean keeps them comparable with full ones). Returns ``(ceil(out/br),
    ceil(K/bc))``."""
    mat = as_matrix(scores).float()
    rows, cols = mat.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    padded = torch.zeros((gr * br, gc * bc), device=mat.device)
    count = torch.zeros_like(padded)
    padded[:rows, :cols] = mat
    count[:rows, :cols] = 1.0
    total = padded.reshape(gr, br, gc, bc).sum(dim=(1, 3))
    return total / count.reshape(gr, br, gc, bc).sum(dim=(1, 3))


def expand_groups(group_mask: torch.Tensor, br: int, bc: int, shape: torch.Size) -> torch.Tensor:
    """Blow a ``(ceil(out/br), ceil(K/bc))`` group mask up to a parameter-shaped mask."""
    full = group_mask.repeat_interleave(br, dim=0).repeat_interleave(bc, dim=1)
    rows = shape[0]
    cols = 1
    for d in shape[1:]:
        cols *= d
    return full[:rows, :cols].reshape(shape)


def group_sizes(shape: torch.Size, br: int, bc: int) -> torch.Tensor:
    """Number of real (unpadded) elements in each ``br x bc`` group."""
    ones = torch.ones(shape)
    mat = as_matrix(ones)
    rows, cols = mat.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    padded = torch.zeros((gr * br, gc * bc))
    padded[:rows, :cols] = 1.0
    return padded.reshape(gr, br, gc, bc).sum(dim=(1, 3))
