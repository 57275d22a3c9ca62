"""Tests of acf.frontends (PyTorch capture of training steps)."""
