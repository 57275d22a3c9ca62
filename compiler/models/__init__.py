"""Torch-free generators of graph-dialect training-step programs."""
