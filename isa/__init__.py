"""The ACF instruction set, hardware targets and sparse formats: leaf modules every layer uses.

Nothing here imports torch, TVM or any other layer of the project.
"""
