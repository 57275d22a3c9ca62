"""The mask-binding boundary between a sparsity algorithm and whatever executes the model.

An algorithm decides *which* weights are active; a :class:`MaskBinder` receives that decision.
The protocol has one method, so that the fabric runtime can implement it and receive masks
as runtime data (a new mask is new data for an already compiled program, never a reason to
recompile by itself)::

    binder.bind("fc1.weight", mask)   # mask: bool tensor, same shape as the parameter

Contract:

* ``bind`` is called once per sparsified parameter when the algorithm is constructed, and
  again for each parameter whose mask changed in a mask update (:meth:`SparsityAlgorithm.step`).
* The mask is a fresh ``torch.bool`` tensor on the parameter's device. The algorithm never
  mutates a mask after binding it, so a binder may keep the reference.
* Gradient-mode questions go the other way: the runtime asks the algorithm
  ``algorithm.needs_dense_grad(step)`` before the backward pass of training iteration
  ``step`` (False: the weight gradient is needed only at active positions, compile it as
  SDDMM; True: the full dense weight gradient is needed, for RigL growth or SR-STE).

:class:`EagerBinder` is the default binder, for plain PyTorch: it keeps each mask as a buffer
on the module that owns the parameter (``<param>_mask``, so it is saved in ``state_dict``),
zeroes the masked weights when bound and after every optimizer step, and zeroes masked
gradient entries before the optimizer step when the algorithm says the step's gradient
is sparse. The buffer is the mask in force: moving the model (``model.to(device)``) or
loading a ``state_dict`` into it moves or replaces the masks with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from acf.algorithms.base import SparsityAlgorithm


@runtime_checkable
class MaskBinder(Protocol):
    """Receives the masks of a sparsity algorithm (see the module docstring for the contract).

    A binder may also define ``attach(algorithm)``; the algorithm calls it once, at the end
    of its construction, so the binder can read ``needs_dense_grad``/``masks_weights`` later.
    It may define ``current_mask(param_name)`` when the masks it holds can change without a
    ``bind`` (EagerBinder: model buffers); the algorithm then reads masks back through it
    instead of its own copies. ``detach()``, if defined, is called by ``algorithm.close()``.
    """

    def bind(self, param_name: str, mask: torch.Tensor) -> None:
        """Take ``mask`` (bool, shape of the parameter) as the active set of ``param_name``."""
        ...


class EagerBinder:
    """Applies masks to an eager PyTorch model through optimizer step hooks.

    * ``bind``: stores the mask as a buffer on the owning module and, when the algorithm
      hard-masks weights, zeroes the inactive weights at once.
    * before ``optimizer.step()``: gradient entries at inactive positions are zeroed unless
      ``algorithm.masks_grads(step)`` is False (SR-STE lets them through on purpose).
    * after ``optimizer.step()``: inactive weights are zeroed again (weight decay and
      momentum would otherwise revive them), when ``algorithm.masks_weights`` is True.

    The module buffer is the one copy of each mask: it is looked up every time a mask is
    applied (:meth:`current_mask`), so the masks follow ``model.to(device)`` and a mask
    loaded with ``model.load_state_dict`` is the one enforced.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._owners: dict[str, tuple[nn.Module, str]] = {}  # param -> (module, its leaf name)
        self.algorithm: SparsityAlgorithm | None = None
        self._handles: list[Any] = []

    # ---- MaskBinder --------------------------------------------------------------------
    def bind(self, param_name: str, mask: torch.Tensor) -> None:
        module_name, _, leaf = param_name.rpartition(".")
        try:
            module = self.model.get_submodule(module_name) if module_name else self.model
        except AttributeError:
            module = None
        if module is None or not isinstance(module._parameters.get(leaf), nn.Parameter):
            raise KeyError(f"model has no parameter {param_name!r}")
        param = module._parameters[leaf]
        if mask.shape != param.shape:
            raise ValueError(
                f"mask for {param_name!r} has shape {tuple(mask.shape)}, "
                f"parameter has {tuple(param.shape)}"
            )
        mask = mask.to(device=param.device, dtype=torch.bool)
        self._owners[param_name] = (module, leaf)
        buffer = f"{leaf}_mask"
        if buffer in module._buffers:
            module._buffers[buffer] = mask
        else:
            module.register_buffer(buffer, mask)
        if self.algorithm is None or self.algorithm.masks_weights:
            with torch.no_grad():
                param.mul_(mask)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The bound masks, as the model holds them now."""
        return {name: self.current_mask(name) for name in self._owners}

    def current_mask(self, param_name: str) -> torch.Tensor:
        """The mask of ``param_name`` in force: the module buffer, as a bool tensor on the
        parameter's device (a buffer a dtype or device change left otherwise is converted
        and stored back, so it is converted once)."""
        module, leaf = self._owners[param_name]
        buffer = f"{leaf}_mask"
        mask = module._buffers.get(buffer)
        if mask is None:
            raise KeyError(f"the mask buffer {buffer!r} of {param_name!r} is gone from the model")
        param = module._parameters[leaf]
        if mask.dtype != torch.bool or mask.device != param.device:
            mask = mask.to(device=param.device, dtype=torch.bool)
            module._buffers[buffer] = mask
        return mask

    # ---- eager enforcement -------------------------------------------------------------
    def attach(self, algorithm: SparsityAlgorithm) -> None:
        """Hook the algorithm's optimizer so masks are enforced around every step."""
        self.algorithm = algorithm
        opt = algorithm.optimizer
        self._handles.append(opt.register_step_pre_hook(lambda *_: self.mask_grads()))
        self._handles.append(opt.register_step_post_hook(lambda *_: self.mask_weights()))
        if algorithm.masks_weights:
            self.mask_weights()

    def detach(self) -> None:
        """Remove the optimizer hooks, the binder's and the attached algorithm's (the masks
        stay on the model as buffers), so the optimizer trains densely from here."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self.algorithm is not None:
            self.algorithm.remove_hooks()

    def _bound(self):
        for name, (module, leaf) in self._owners.items():
            yield module._parameters[leaf], self.current_mask(name)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero gradient entries at inactive positions, unless this step wants them dense."""
        alg = self.algorithm
        if alg is not None and not alg.masks_grads(alg.step_count):
            return
        for param, mask in self._bound():
            if param.grad is not None:
                param.grad.mul_(mask)

    @torch.no_grad()
    def mask_weights(self) -> None:
        """Zero the weights at inactive positions."""
        if self.algorithm is not None and not self.algorithm.masks_weights:
            return
        for param, mask in self._bound():
            param.mul_(mask)
