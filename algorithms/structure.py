"""Mask constructors shared by the algorithms: top-k, N:M groups, rectangular groups.

Groups follow the GEMMs the hardware runs. A Linear weight ``(out, in)`` is one GEMM. A
Conv2d weight ``(out, in, kh, kw)`` is ``kh * kw`` GEMMs, one per kernel tap, each
reducing over the input channels (``compiler/codegen/kernels/conv.py``), so its groups are
taken inside one tap: ``as_taps`` views a weight as ``(taps, out, in)`` and every group
runs along ``out`` and/or ``in`` of one tap. This is also how Zhou et al. 2021 and NVIDIA's
ASP lay N:M groups on a convolution: ``M`` consecutive input channels at a fixed tap.
``as_matrix`` flattens the taps into one ``(out, kh * kw * in)`` matrix, input channel
fastest, so ``M`` consecutive columns are ``M`` input channels of one tap when ``M``
divides ``in``.
"""

from __future__ import annotations

import torch


def as_taps(t: torch.Tensor) -> torch.Tensor:
    """View a Linear ``(out, in)`` or Conv2d ``(out, in, kh, kw)`` tensor as the per-tap GEMM
    operands ``(kh * kw, out, in)`` (one tap for a Linear)."""
    if t.dim() == 4:
        out, cin, kh, kw = t.shape
        return t.permute(2, 3, 0, 1).reshape(kh * kw, out, cin)
    return t.reshape(1, t.shape[0], -1)


def from_taps(taps: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`as_taps`: a ``(kh * kw, out, in)`` tensor back to ``shape``."""
    if len(shape) == 4:
        out, cin, kh, kw = shape
        return taps.reshape(kh, kw, out, cin).permute(2, 3, 0, 1).contiguous()
    return taps.reshape(shape)


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """View a weight as ``(out, kh * kw * in)``: rows are the GEMMs' output rows, columns
    the taps' reduction dimensions side by side, input channel fastest."""
    taps = as_taps(t)
    return taps.permute(1, 0, 2).reshape(taps.shape[1], -1)


def from_matrix(mat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`as_matrix`."""
    out = shape[0]
    ntaps = shape[2] * shape[3] if len(shape) == 4 else 1
    return from_taps(mat.reshape(out, ntaps, -1).permute(1, 0, 2), shape)


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of ``scores``' shape with exactly ``k`` True at the largest scores."""
    flat = scores.reshape(-1)
    k = max(0, min(int(k), flat.numel()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=scores.device)
    if k:
        mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.reshape(scores.shape)


def random_scores(param: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Uniform random scores of ``param``'s shape on ``param``'s device. They are drawn on
    the CPU from the algorithm's seeded generator, so a seed gives the same masks on every
    device, then moved: masks are handed over on the parameter's device (``masks.py``)."""
    return torch.rand(param.shape, generator=generator).to(param.device)


#: group sizes an N:M pattern is looked for in, hardware-friendly powers of two first
NM_GROUPS = (4, 8, 16, 32, 5, 10, 20)


def nm_for_density(density: float) -> tuple[int, int] | None:
    """The N:M pattern whose density N/M is exactly ``density`` (the smallest M of
    :data:`NM_GROUPS` that has one, e.g. 0.5 -> 2:4, 0.1 -> 1:10), or None."""
    for m in NM_GROUPS:
        n = density * m
        if abs(n - round(n)) < 1e-9 and 1 <= round(n) <= m:
            return round(n), m
    return None


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive entries along the input dimension
    of each tap (Zhou et al. 2021: ``m`` consecutive input channels of a convolution).

    ``scores`` has the parameter's shape. When ``in`` is not a multiple of ``m`` the last,
    shorter group of each row of each tap keeps ``min(n, its size)``.
    """
    taps = as_taps(scores).float()
    ntaps, rows, cols = taps.shape
    groups = -(-cols // m)
    padded = torch.full((ntaps, rows, groups * m), float("-inf"), device=taps.device)
    padded[..., :cols] = taps
    grouped = padded.reshape(ntaps, rows, groups, m)
    keep = torch.zeros_like(grouped, dtype=torch.bool)
    keep.scatter_(3, torch.topk(grouped, n, dim=3, sorted=False).indices, True)
    return from_taps(keep.reshape(ntaps, rows, groups * m)[..., :cols], scores.shape)


def _tile_sums(taps: torch.Tensor, br: int, bc: int) -> torch.Tensor:
    """Sum of ``taps`` (``(ntaps, rows, cols)``) over each ``br x bc`` tile of each tap,
    zero-padding the edge tiles: ``(ntaps, ceil(rows/br), ceil(cols/bc))``."""
    ntaps, rows, cols = taps.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    padded = torch.zeros((ntaps, gr * br, gc * bc), device=taps.device)
    padded[:, :rows, :cols] = taps
    return padded.reshape(ntaps, gr, br, gc, bc).sum(dim=(2, 4))


def group_scores(scores: torch.Tensor, br: int, bc: int) -> torch.Tensor:
    """Mean of ``scores`` over ``br x bc`` tiles of each tap (edge tiles may be smaller; the
    mean keeps them comparable with full ones). Returns ``(taps, ceil(out/br),
    ceil(in/bc))``."""
    taps = as_taps(scores).float()
    return _tile_sums(taps, br, bc) / _tile_sums(torch.ones_like(taps), br, bc)


def group_sizes(shape: torch.Size, br: int, bc: int) -> torch.Tensor:
    """Number of real (unpadded) elements in each ``br x bc`` group, shaped as
    :func:`group_scores`."""
    return _tile_sums(as_taps(torch.ones(shape)), br, bc)


def expand_groups(group_mask: torch.Tensor, br: int, bc: int, shape: torch.Size) -> torch.Tensor:
    """Blow a group mask shaped as :func:`group_scores` up to a parameter-shaped mask."""
    full = group_mask.repeat_interleave(br, dim=1).repeat_interleave(bc, dim=2)
    _, rows, cols = as_taps(torch.empty(shape, device="meta")).shape
    return from_taps(full[:, :rows, :cols], shape)


def keep_by_size(
    scores: torch.Tensor, sizes: torch.Tensor, target: int, limit: int, at_least_one: bool
) -> torch.Tensor:
    """Keep the best-scored groups whose total size is nearest ``target`` elements.

    Groups are taken in descending score order (at most ``limit`` of them); of the prefixes
    of that order, the one whose element count is closest to ``target`` wins (the shorter on
    a tie), but never an empty one when ``at_least_one``. Counting elements rather than
    groups keeps a layer's density on target when edge groups are smaller than full ones.
    """
    flat = scores.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)[:limit]
    taken = sizes.reshape(-1).to(flat.device)[order].cumsum(0)
    counts = torch.cat([taken.new_zeros(1), taken])  # counts[k]: elements in the first k
    k = int(torch.argmin((counts - target).abs()))
    k = max(k, 1 if at_least_one else 0)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[order[:k]] = True
    return keep.reshape(scores.shape)
