"""Binding masks into a session as the sparsity algorithms' contract has it: connections a
new mask turns active start from zero (weight, momentum, Adam's moments) while those that
stay active keep theirs; masks given to ``set_params`` are bound; an algorithm that keeps
its pruned weights (SR-STE) is refused."""

from __future__ import annotations

import numpy as np
import pytest
from acf.runtime import BindError, Session, SessionOptions

from .programs import LAYER, MLP, mlp_args, random_mask
from .test_session import close, interp

LAYER_CARRY = {"result3": "w", "result4": "buf"}


def _prune_then_regrow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a`` (half dense), ``b`` (half of ``a``) and what going back to ``a`` grows."""
    a = random_mask((40, 64), 0.5, 1)
    b = a * random_mask((40, 64), 0.5, 2)
    return a, b, (a != 0) & (b == 0)


def _layer_session(seed: int, mask: np.ndarray):
    """A session with LAYER loaded, its weight and momentum drawn under ``mask``, and the
    step's inputs: (session, loaded step, x, gy)."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((8, 64)), 0).astype(np.float32)
    gy = rng.standard_normal((8, 40)).astype(np.float32)
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    loaded = sess.load(LAYER, carry=LAYER_CARRY)
    sess.set_params({"w": rng.standard_normal((40, 64)).astype(np.float32) * mask,
                     "buf": rng.standard_normal((40, 64)).astype(np.float32) * mask})
    return sess, loaded, x, gy


def test_regrown_connections_restart_from_zero_weight_and_momentum() -> None:
    """Prune (mask b), then regrow (back to a): before the third step the momentum and the
    weight are zero where a grows, kept where b holds; the step equals the interpreter's
    run from that state."""
    a, b, grown = _prune_then_regrow()
    sess, loaded, x, gy = _layer_session(0, a)
    for mask in (a, b):
        sess.bind_mask("w", mask)
        res = sess.run_step({"x": x, "gy": gy})
    w_after, buf_after = res.values[3].reshape(40, 64), res.values[4].reshape(40, 64)
    assert np.count_nonzero(buf_after[grown]) > 0  # a momentum left where b pruned
    sess.bind_mask("w", a)
    w, buf = loaded.state["w"], loaded.state["buf"]
    assert not np.any(buf[grown]) and not np.any(w[grown])
    kept = b != 0
    np.testing.assert_array_equal(buf[kept], buf_after[kept])
    np.testing.assert_array_equal(w[kept], w_after[kept])
    res = sess.run_step({"x": x, "gy": gy})
    want = interp(LAYER, [x, np.where(grown, 0, w_after) * a, a, gy, np.where(grown, 0, buf_after)])
    for got, w_ in zip(res.values, want):
        close(got, w_)
    assert loaded.state_args == {"w": ["buf"]}


def test_a_mask_given_to_the_step_regrows_at_zero_too() -> None:
    """The mask argument passed to run_step is bound as bind_mask binds it."""
    a, b, grown = _prune_then_regrow()
    sess, loaded, x, gy = _layer_session(1, a)
    for mask in (a, b):
        res = sess.run_step({"x": x, "gy": gy, "mask": mask})
    w_after, buf_after = res.values[3].reshape(40, 64), res.values[4].reshape(40, 64)
    assert np.count_nonzero(buf_after[grown]) > 0
    res = sess.run_step({"x": x, "gy": gy, "mask": a})
    want = interp(LAYER, [x, np.where(grown, 0, w_after) * a, a, gy, np.where(grown, 0, buf_after)])
    for got, w_ in zip(res.values, want):
        close(got, w_)
    assert loaded.masks["w"] is not a and np.array_equal(loaded.masks["w"], a)


def test_adam_moments_restart_from_zero_where_a_mask_regrows() -> None:
    torch = pytest.importorskip("torch")
    ts = pytest.importorskip("acf.frontends.training_step")
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 40)
    x, y = torch.randn(4, 64), torch.randint(0, 40, (4,))
    a, b, grown = _prune_then_regrow()
    step = ts.capture_training_step(model, (x,), labels=y, optimizer="adam",
                                    optimizer_options={"lr": 0.01},
                                    masks={"weight": torch.from_numpy(a)})

    def arg(bnd) -> str:
        return bnd.name if bnd.kind in ("param", "label", "input") else f"{bnd.kind}.{bnd.name}"

    names = [f"r{i}" for i in range(len(step.results))]
    carry = {n: arg(bnd) for n, bnd in zip(names, step.results)
             if bnd in step.arguments and bnd.kind != "mask"}
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    loaded = sess.load(step.module, carry=carry, result_names=names)
    init = step.bind(model, (x,), y, masks={"weight": torch.from_numpy(a)})
    sess.set_params({arg(bnd): v for bnd, v in zip(step.arguments, init)
                     if bnd.kind in ("param", "adam_m", "adam_v", "adam_step")})
    for mask in (a, b):
        sess.bind_mask("weight", mask)
        sess.run_step({"input0": x, "labels": y})
    moments = ("adam_m.weight", "adam_v.weight")
    before = {n: loaded.state[n].copy() for n in moments}
    assert all(np.count_nonzero(before[n][grown]) > 0 for n in moments)
    sess.bind_mask("weight", a)
    for n in moments:
        assert not np.any(loaded.state[n][grown])
        np.testing.assert_array_equal(loaded.state[n][b != 0], before[n][b != 0])
    assert sorted(loaded.state_args["weight"]) == list(moments)


def test_the_first_mask_and_an_unchanged_one_zero_nothing() -> None:
    a, _, _ = _prune_then_regrow()
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    loaded = sess.load(LAYER, carry=LAYER_CARRY)
    buf = np.ones((40, 64), np.float32)
    sess.set_params({"buf": buf})
    sess.bind_mask("w", a)  # first: the caller's state stands
    sess.bind_mask("w", a)  # unchanged: nothing grows
    np.testing.assert_array_equal(loaded.state["buf"], buf)
    sess.bind_mask("w", np.ones((40, 64)))  # grows where a is off
    np.testing.assert_array_equal(loaded.state["buf"], a)


# ---- masks through set_params ------------------------------------------------------------
def test_set_params_binds_a_mask_argument() -> None:
    """A mask given to set_params is bound as bind_mask binds it, on a fresh session as
    after a step (not stored as a value the step would then ignore)."""
    args = mlp_args()
    fresh = Session("acf-small", SessionOptions(respecialize="off"))
    fresh.load(MLP)
    m = random_mask((48, 32), 0.3, 4)
    fresh.set_params({"w1": args["w1"], "w2": args["w2"], "mask.w1": m})
    res = fresh.run_step({"x": args["x"], "labels": args["labels"]})
    want = interp(MLP, [args["w1"] * m, args["w2"], args["x"], args["labels"], m])
    for got, w in zip(res.values, want):
        close(got, w)

    sess = Session("acf-small")
    sess.load(MLP, carry={"result3": "w1", "result4": "w2"})
    sess.set_params({"w1": args["w1"], "w2": args["w2"]})
    sess.bind_mask("w1", random_mask((48, 32), 0.4, 1))
    sess.run_step({"x": args["x"], "labels": args["labels"]})
    m2 = random_mask((48, 32), 0.1, 2)
    sess.set_params({"mask.w1": m2})
    res = sess.run_step({"x": args["x"], "labels": args["labels"]})
    assert res.report.densities["w1"] == pytest.approx(m2.mean())
    assert res.report.mask_update["params"] == ["w1"]
    assert np.count_nonzero(res.values[3].reshape(48, 32)[m2 == 0]) == 0


def test_set_params_checks_a_mask_as_bind_mask_does() -> None:
    sess = Session("acf-small")
    loaded = sess.load(MLP)
    with pytest.raises(BindError, match="mask for 'w1': expected shape \\[48, 32\\]"):
        sess.set_params({"w2": np.zeros((10, 48), np.float32), "mask.w1": np.ones((2, 2))})
    with pytest.raises(BindError, match="mask 'w1': values must be 0 or 1"):
        sess.set_params({"mask.w1": np.full((48, 32), 0.5)})
    assert loaded.state == {} and loaded.masks == {}  # all or nothing


def test_set_params_refuses_a_dropout_keep_mask() -> None:
    text = """graph.func @f(%x: tensor<4x8xf32>, %keep: tensor<4x8xf32> {dropout = 0.5}) -> (tensor<4x8xf32>) {
  %y = graph.mul %x, %keep : tensor<4x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>
  graph.return %y : tensor<4x8xf32>
}
"""
    sess = Session("acf-small")
    sess.load(text)
    with pytest.raises(BindError, match="'keep' is a dropout keep-mask, drawn each step: pass "
                                        "it to run_step"):
        sess.set_params({"keep": np.ones((4, 8), np.float32)})


# ---- algorithms binding into a session ---------------------------------------------------
def test_an_algorithm_that_keeps_pruned_weights_is_refused() -> None:
    torch = pytest.importorskip("torch")
    algorithms = pytest.importorskip("acf.algorithms")
    ts = pytest.importorskip("acf.frontends.training_step")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    x, y = torch.randn(4, 8), torch.randint(0, 4, (4,))
    step = ts.capture_training_step(model, (x,), labels=y, optimizer="sgd",
                                    masks={"0.weight": torch.ones(16, 8, dtype=torch.bool)})
    sess = Session("acf-small")
    sess.load(step.module)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(BindError, match="algorithm 'nm-srste' keeps its pruned weights .* a "
                                        "Session cannot train"):
        algorithms.create("nm-srste", model, opt, params=["0.weight"], binder=sess)
    # a hard-masking algorithm binds as before
    rigl = algorithms.create("rigl", model, torch.optim.SGD(model.parameters(), lr=0.1),
                             density=0.5, params=["0.weight"], t_end=10, binder=sess)
    assert sess._get(None).masks["0.weight"].mean() == pytest.approx(0.5, abs=0.02)
    assert rigl.masks_weights
