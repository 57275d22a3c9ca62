"""IR-text training steps used by the runtime tests."""

from __future__ import annotations

import numpy as np

CSR = "#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>\n"

# One masked layer: forward, ReLU, backward-data, SDDMM weight gradient, SGD with momentum.
LAYER = CSR + """
graph.func @train_step(%x: tensor<8x64xf32>, %w: tensor<40x64xf32, #csr>, %mask: tensor<40x64xf32, #csr>, %gy: tensor<8x40xf32>, %buf: tensor<40x64xf32>) -> (tensor<8x40xf32>, tensor<8x64xf32>, tensor<40x64xf32>, tensor<40x64xf32, #csr>, tensor<40x64xf32>) {
  %h = graph.linear %x, %w : tensor<8x64xf32>, tensor<40x64xf32, #csr> -> tensor<8x40xf32> loc("mlp.py":10:5 layer "fc1")
  %y = graph.relu %h : tensor<8x40xf32> -> tensor<8x40xf32> loc("mlp.py":11:5 layer "act1")
  %gh = graph.relu_backward %gy, %h : tensor<8x40xf32>, tensor<8x40xf32> -> tensor<8x40xf32> loc("mlp.py":11:5 layer "act1")
  %gx = graph.matmul %gh, %w : tensor<8x40xf32>, tensor<40x64xf32, #csr> -> tensor<8x64xf32> loc("mlp.py":10:5 layer "fc1")
  %gw = graph.sddmm %gh, %x, %mask {transpose_a = true} : tensor<8x40xf32>, tensor<8x64xf32>, tensor<40x64xf32, #csr> -> tensor<40x64xf32> loc("mlp.py":10:5 layer "fc1")
  %nw, %nb = graph.sgd_update %w, %gw, %buf {lr = 0.1, momentum = 0.9, weight_decay = 0.01} : tensor<40x64xf32, #csr>, tensor<40x64xf32>, tensor<40x64xf32> -> tensor<40x64xf32, #csr>, tensor<40x64xf32> loc("mlp.py":20:1 layer "fc1")
  graph.return %y, %gx, %gw, %nw, %nb : tensor<8x40xf32>, tensor<8x64xf32>, tensor<40x64xf32>, tensor<40x64xf32, #csr>, tensor<40x64xf32>
}
"""

# A two-layer MLP training step with a loss: masked (dense-stored) fc1, dense fc2,
# cross entropy, full backward, plain SGD; the masked weight enters through mask_apply,
# as the PyTorch frontend emits it.
MLP = """
graph.func @train_step(%w1: tensor<48x32xf32>, %w2: tensor<10x48xf32>, %x: tensor<16x32xf32>, %labels: tensor<16xi64>, %mask.w1: tensor<48x32xf32>) -> (tensor<f32>, tensor<48x32xf32>, tensor<10x48xf32>, tensor<48x32xf32>, tensor<10x48xf32>) {
  %mw1 = graph.mask_apply %w1, %mask.w1 : tensor<48x32xf32>, tensor<48x32xf32> -> tensor<48x32xf32> loc("mlp.py":3:1 layer "fc1")
  %h = graph.linear %x, %mw1 : tensor<16x32xf32>, tensor<48x32xf32> -> tensor<16x48xf32> loc("mlp.py":3:1 layer "fc1")
  %a = graph.relu %h : tensor<16x48xf32> -> tensor<16x48xf32> loc("mlp.py":4:1 layer "act")
  %z = graph.linear %a, %w2 : tensor<16x48xf32>, tensor<10x48xf32> -> tensor<16x10xf32> loc("mlp.py":5:1 layer "fc2")
  %ls = graph.log_softmax %z {axis = 1} : tensor<16x10xf32> -> tensor<16x10xf32> loc("mlp.py":6:1 layer "loss")
  %loss = graph.cross_entropy %z, %labels : tensor<16x10xf32>, tensor<16xi64> -> tensor<f32> loc("mlp.py":6:1 layer "loss")
  %one = graph.constant {value = dense<1.0> : tensor<f32>} : () -> tensor<f32>
  %gz = graph.cross_entropy_backward %one, %ls, %labels : tensor<f32>, tensor<16x10xf32>, tensor<16xi64> -> tensor<16x10xf32> loc("mlp.py":6:1 layer "loss")
  %ga = graph.matmul %gz, %w2 : tensor<16x10xf32>, tensor<10x48xf32> -> tensor<16x48xf32> loc("mlp.py":5:1 layer "fc2")
  %gw2 = graph.matmul %gz, %a {transpose_a = true} : tensor<16x10xf32>, tensor<16x48xf32> -> tensor<10x48xf32> loc("mlp.py":5:1 layer "fc2")
  %gh = graph.relu_backward %ga, %a : tensor<16x48xf32>, tensor<16x48xf32> -> tensor<16x48xf32> loc("mlp.py":4:1 layer "act")
  %gw1d = graph.matmul %gh, %x {transpose_a = true} : tensor<16x48xf32>, tensor<16x32xf32> -> tensor<48x32xf32> loc("mlp.py":3:1 layer "fc1")
  %gw1 = graph.mask_apply %gw1d, %mask.w1 : tensor<48x32xf32>, tensor<48x32xf32> -> tensor<48x32xf32> loc("mlp.py":3:1 layer "fc1")
  %z1 = graph.constant {value = dense<0.0> : tensor<48x32xf32>} : () -> tensor<48x32xf32>
  %nw1p, %b1 = graph.sgd_update %w1, %gw1, %z1 {lr = 0.1} : tensor<48x32xf32>, tensor<48x32xf32>, tensor<48x32xf32> -> tensor<48x32xf32>, tensor<48x32xf32> loc("mlp.py":9:1 layer "fc1")
  %nw1 = graph.mask_apply %nw1p, %mask.w1 : tensor<48x32xf32>, tensor<48x32xf32> -> tensor<48x32xf32> loc("mlp.py":9:1 layer "fc1")
  %z2 = graph.constant {value = dense<0.0> : tensor<10x48xf32>} : () -> tensor<10x48xf32>
  %nw2, %b2 = graph.sgd_update %w2, %gw2, %z2 {lr = 0.1} : tensor<10x48xf32>, tensor<10x48xf32>, tensor<10x48xf32> -> tensor<10x48xf32>, tensor<10x48xf32> loc("mlp.py":9:1 layer "fc2")
  graph.return %loss, %gw1, %gw2, %nw1, %nw2 : tensor<f32>, tensor<48x32xf32>, tensor<10x48xf32>, tensor<48x32xf32>, tensor<10x48xf32>
}
"""

# A masked conv layer (a 4-D weight, named by the frontend's ``mask.<param>`` convention)
# beside a masked linear layer (2-D): forward, sampled weight gradients (the linear one
# returned), masked SGD with momentum.
_CONV = "stride = [1, 1], padding = [1, 1], dilation = [1, 1]"
CONV_LINEAR = f"""
graph.func @train_step(%w: tensor<8x4x3x3xf32>, %v: tensor<16x32xf32>, %x: tensor<2x4x6x6xf32>, %gy: tensor<2x8x6x6xf32>, %a: tensor<8x32xf32>, %ga: tensor<8x16xf32>, %bv: tensor<16x32xf32>, %bw: tensor<8x4x3x3xf32>, %mask.w: tensor<8x4x3x3xf32>, %mask.v: tensor<16x32xf32>) -> (tensor<2x8x6x6xf32>, tensor<8x16xf32>, tensor<8x4x3x3xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<8x4x3x3xf32>) {{
  %mw = graph.mask_apply %w, %mask.w : tensor<8x4x3x3xf32>, tensor<8x4x3x3xf32> -> tensor<8x4x3x3xf32> loc("net.py":3:1 layer "conv")
  %y = graph.conv2d %x, %mw {{{_CONV}}} : tensor<2x4x6x6xf32>, tensor<8x4x3x3xf32> -> tensor<2x8x6x6xf32> loc("net.py":3:1 layer "conv")
  %gw = graph.conv2d_backward_weight %gy, %x, %mask.w {{weight_shape = [8, 4, 3, 3], {_CONV}}} : tensor<2x8x6x6xf32>, tensor<2x4x6x6xf32>, tensor<8x4x3x3xf32> -> tensor<8x4x3x3xf32> loc("net.py":3:1 layer "conv")
  %nw, %nbw = graph.sgd_update %w, %gw, %bw, %mask.w {{lr = 0.1, momentum = 0.9}} : tensor<8x4x3x3xf32>, tensor<8x4x3x3xf32>, tensor<8x4x3x3xf32>, tensor<8x4x3x3xf32> -> tensor<8x4x3x3xf32>, tensor<8x4x3x3xf32> loc("net.py":9:1 layer "conv")
  %mv = graph.mask_apply %v, %mask.v : tensor<16x32xf32>, tensor<16x32xf32> -> tensor<16x32xf32> loc("net.py":4:1 layer "fc")
  %z = graph.linear %a, %mv : tensor<8x32xf32>, tensor<16x32xf32> -> tensor<8x16xf32> loc("net.py":4:1 layer "fc")
  %gv = graph.sddmm %ga, %a, %mask.v {{transpose_a = true}} : tensor<8x16xf32>, tensor<8x32xf32>, tensor<16x32xf32> -> tensor<16x32xf32> loc("net.py":4:1 layer "fc")
  %nv, %nbv = graph.sgd_update %v, %gv, %bv, %mask.v {{lr = 0.1, momentum = 0.9}} : tensor<16x32xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<16x32xf32> -> tensor<16x32xf32>, tensor<16x32xf32> loc("net.py":9:1 layer "fc")
  graph.return %y, %z, %nw, %nv, %nbv, %gv, %nbw : tensor<2x8x6x6xf32>, tensor<8x16xf32>, tensor<8x4x3x3xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<8x4x3x3xf32>
}}
"""


def conv_linear_args(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"w": (8, 4, 3, 3), "v": (16, 32), "x": (2, 4, 6, 6), "gy": (2, 8, 6, 6),
              "a": (8, 32), "ga": (8, 16), "bv": (16, 32), "bw": (8, 4, 3, 3)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def layer_args(density: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (rng.random((40, 64)) < density).astype(np.float32)
    w = rng.standard_normal((40, 64)).astype(np.float32) * mask
    return {"x": np.maximum(rng.standard_normal((8, 64)), 0).astype(np.float32), "w": w,
            "mask": mask, "gy": rng.standard_normal((8, 40)).astype(np.float32),
            "buf": (rng.standard_normal((40, 64)) * mask).astype(np.float32)}


def mlp_args(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": (rng.standard_normal((48, 32)) * 0.3).astype(np.float32),
            "w2": (rng.standard_normal((10, 48)) * 0.3).astype(np.float32),
            "x": rng.standard_normal((16, 32)).astype(np.float32),
            "labels": rng.integers(0, 10, 16)}


def random_mask(shape: tuple[int, int], density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < density).astype(np.float32)


def run_masked_mlp_step():
    """MLP's training step on acf-small with fc1 40 % masked: (StepResult, args, mask)."""
    from acf.runtime import Session

    sess = Session("acf-small")
    sess.load(MLP)
    args = mlp_args()
    mask = random_mask((48, 32), 0.4, 1)
    sess.bind_mask("w1", mask)
    return sess.run_step(args), args, mask
