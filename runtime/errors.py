"""Runtime errors (all subclasses of ValueError, so callers may catch either)."""

from __future__ import annotations


class BindError(ValueError):
    """An input, parameter or mask that cannot be bound to a program (name, shape, layout)."""


class RuntimeOptionError(ValueError):
    """An unknown or invalid option."""
