"""acf.runtime: compile training steps, bind tensors and masks, run them on the emulator.

::

    from acf.runtime import Session, SessionOptions, profile
    sess = Session("acf-small", SessionOptions(grad_variants=("sddmm", "dense")))
    sess.load(ir_text)                     # graph-dialect module or its text
    sess.bind_mask("w", mask)              # masks are runtime data: never a recompile
    res = sess.run_step({"x": x, "w": w, ...}, dense_grad=False)
    res.outputs["result0"], res.report.to_json()

See :mod:`acf.runtime.session` (binding, caching, re-specialization),
:mod:`acf.runtime.variants` (weight-gradient and format variants),
:mod:`acf.runtime.formats` (the density-band rule) and :mod:`acf.runtime.report`.
"""

from .errors import BindError, RuntimeOptionError
from .formats import DensityBands
from .report import Profile, StepReport, profile
from .session import LoadedStep, Session, SessionOptions, StepResult
from .variants import Variant

__all__ = ["BindError", "DensityBands", "LoadedStep", "Profile", "RuntimeOptionError",
           "Session", "SessionOptions", "StepReport", "StepResult", "Variant", "profile"]
