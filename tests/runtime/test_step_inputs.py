"""Session inputs and options: Adam's step from the bound operand, a failed step (or load)
that leaves the session as it was, clear one-line errors for bad steps, labels, masks,
inputs, batch sizes and options, copies of set parameters and of carried results,
formats="auto" with re-specialization off, and the backend's report path, int32 token ids
and ignored labels."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from acf.runtime import BindError, DensityBands, RuntimeOptionError, Session, SessionOptions

from .programs import MLP, mlp_args, random_mask

torch = pytest.importorskip("torch")
training_step = pytest.importorskip("acf.frontends.training_step")
nn, F = torch.nn, torch.nn.functional
Binding, capture_training_step = training_step.Binding, training_step.capture_training_step


def rel(got, want) -> float:
    want = torch.as_tensor(want).double()
    return float(torch.linalg.norm(torch.as_tensor(got).double() - want) / torch.linalg.norm(want))


def adam_case(lr: float = 0.01):
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    x, y = torch.randn(4, 8), torch.randint(0, 4, (4,))
    step = capture_training_step(model, (x,), labels=y, optimizer="adam",
                                 optimizer_options={"lr": lr})
    return model, x, y, step


def weight_of(step, res) -> np.ndarray:
    return dict(zip(step.results, res.values))[Binding("param", "weight")]


def torch_adam(model, x, y, steps: int, lr: float = 0.01):
    """The model and optimizer after ``steps`` eager Adam steps on (x, y)."""
    m = copy.deepcopy(model)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return m, opt


# ---- Adam's step -------------------------------------------------------------------------
def test_bound_adam_step_sets_the_bias_corrections() -> None:
    """Resuming from torch's state after 4 steps (adam_step=5 bound) is torch's 5th step,
    on a fresh session whose own count would say 1; an explicit step= still wins."""
    model, x, y, _ = adam_case()
    resumed, opt = torch_adam(model, x, y, 4)
    state = {Binding("adam_step"): torch.tensor(5.0)}
    for n, p in resumed.named_parameters():
        state[Binding("adam_m", n)] = opt.state[p]["exp_avg"].clone()
        state[Binding("adam_v", n)] = opt.state[p]["exp_avg_sq"].clone()
    step = capture_training_step(resumed, (x,), labels=y, optimizer=opt)
    args = step.bind(resumed, (x,), y, state=state)
    ref = copy.deepcopy(resumed)
    opt2 = torch.optim.Adam(ref.parameters(), lr=0.01)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    opt2.zero_grad()
    F.cross_entropy(ref(x), y).backward()
    opt2.step()

    sess = Session("acf-small")
    sess.load(step.module)
    res = sess.run_step(args)
    assert rel(weight_of(step, res), ref.weight.detach()) < 1e-5
    assert res.report.step == 5
    # step= overrides the operand: step 1's bias corrections give another update
    other = Session("acf-small")
    other.load(step.module)
    res1 = other.run_step(args, step=1)
    assert res1.report.step == 1 and rel(weight_of(step, res1), ref.weight.detach()) > 1e-4


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, float("nan"), "3"])
def test_steps_below_one_or_not_integers_are_refused(bad) -> None:
    model, x, y, step = adam_case()
    sess = Session("acf-small")
    sess.load(step.module)
    args = step.bind(model, (x,), y)
    with pytest.raises(BindError, match="step: Adam's step must be an integer >= 1"):
        sess.run_step(args, step=bad)
    args[step.arguments.index(Binding("adam_step"))] = np.float32(0.0)
    with pytest.raises(BindError, match="tensor 'adam_step\\.?': Adam's step must be an integer "
                                        ">= 1 \\(1-based\\), got 0.0"):
        sess.run_step(args)


def test_a_failed_step_leaves_the_session_as_it_was() -> None:
    """A step refused at binding (a label out of range) neither counts as a step nor
    changes masks, densities or formats: the next good step is step 1, as in torch."""
    torch.manual_seed(0)
    model = nn.Linear(32, 16)
    x, y = torch.randn(4, 32), torch.randint(0, 16, (4,))
    mask = (torch.rand(16, 32) < 0.1).float()
    step = capture_training_step(model, (x,), labels=y, optimizer="adam",
                                 optimizer_options={"lr": 0.01}, masks={"weight": mask})
    sess = Session("acf-small", SessionOptions(formats="auto"))
    loaded = sess.load(step.module)
    args = step.bind(model, (x,), y, masks={"weight": mask})
    bad = list(args)
    bad[step.arguments.index(Binding("label", "labels"))] = np.array([0, 99, 1, 2])
    bad[step.arguments.index(Binding("mask", "weight"))] = np.ones((16, 32), np.float32)
    before = loaded.snapshot()
    with pytest.raises(BindError, match="index 99 is outside \\[0, 16\\)"):
        sess.run_step(bad)
    after = loaded.snapshot()
    assert after.keys() == before.keys() and after["step"] == before["step"] == 0
    assert after["masks"] == before["masks"] == {} and after["densities"] == {}
    assert after["formats"] == {} and after["bands"] == {}
    res = sess.run_step(args)
    assert res.report.step == 1 and res.report.formats == {"weight": "csr"}
    assert res.report.mask_update == {}  # the refused all-ones mask was never bound
    fresh = Session("acf-small", SessionOptions(formats="auto"))
    fresh.load(step.module)
    for a, b in zip(res.values, fresh.run_step(args).values):
        np.testing.assert_array_equal(a, b)


def test_failed_step_keeps_the_count_of_a_program_without_adam() -> None:
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    sess.load(MLP)
    args = mlp_args(3)
    sess.bind_mask("w1", random_mask((48, 32), 0.5, 4))
    assert sess.run_step(args).report.step == 1
    with pytest.raises(BindError, match="index -1 is outside"):
        sess.run_step({**args, "labels": np.full(16, -1)})
    assert sess.run_step(args).report.step == 2


# ---- labels, masks, inputs -----------------------------------------------------------------
def test_non_integral_labels_are_refused() -> None:
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    sess.load(MLP)
    args = mlp_args(3)
    sess.bind_mask("w1", random_mask((48, 32), 0.5, 4))
    labels = args["labels"].astype(np.float32)
    sess.run_step({**args, "labels": labels})  # integral floats are labels
    labels[3] = 1.5
    with pytest.raises(BindError, match="'labels' holds integers .* non-integral value 1.5"):
        sess.run_step({**args, "labels": labels})
    labels[3] = np.nan
    with pytest.raises(BindError, match="non-integral value nan"):
        sess.run_step({**args, "labels": labels})


def test_negative_labels_say_ignore_index_is_not_supported() -> None:
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    sess.load(MLP)
    args = mlp_args(3)
    sess.bind_mask("w1", random_mask((48, 32), 0.5, 4))
    labels = args["labels"].copy()
    labels[0] = -100
    with pytest.raises(BindError, match="index -100 is outside \\[0, 10\\); labels to ignore "
                                        "\\(cross_entropy's ignore_index"):
        sess.run_step({**args, "labels": labels})


@pytest.mark.parametrize("value", [0.5, np.nan, 2.0, -1.0])
def test_masks_must_be_zero_or_one(value) -> None:
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    sess.load(MLP)
    args = mlp_args(3)
    mask = random_mask((48, 32), 0.5, 4)
    bad = mask.copy()
    bad[0, 0] = value
    with pytest.raises(BindError, match="mask 'w1': values must be 0 or 1 \\(or bool\\)"):
        sess.bind_mask("w1", bad)
    with pytest.raises(BindError, match="mask 'mask.w1': values must be 0 or 1"):
        sess.run_step({**args, "mask.w1": bad})
    for ok in (mask, mask.astype(bool), mask.astype(np.int64), torch.from_numpy(mask).bool()):
        sess.bind_mask("w1", ok)
    sess.run_step(args)
    with pytest.raises(BindError, match="values must be 0 or 1"):
        sess.cost_mask_update({"w1": bad})


@pytest.mark.parametrize("value, kind", [
    ("abc", "str"), (None, "NoneType"), (object(), "object"), ([[1, 2], [3]], "list")])
def test_inputs_that_are_not_arrays_say_so(value, kind) -> None:
    sess = Session("acf-small")
    sess.load(MLP)
    with pytest.raises(BindError, match=f"tensor 'x': expected a tensor or array, got {kind}"):
        sess.run_step({"x": value})


def test_meta_tensors_are_refused() -> None:
    sess = Session("acf-small")
    sess.load(MLP)
    with pytest.raises(BindError, match="tensor 'x' is on the meta device and holds no values"):
        sess.run_step({"x": torch.empty(16, 32, device="meta")})


def test_set_params_copies_the_callers_tensors() -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    x, y = torch.randn(4, 8), torch.randint(0, 4, (4,))
    step = capture_training_step(model, (x,), labels=y, optimizer="sgd",
                                 optimizer_options={"lr": 0.0})
    sess = Session("acf-small")
    sess.load(step.module)
    sess.set_params(dict(model.named_parameters()))
    bias = model.bias.detach().clone()
    with torch.no_grad():
        model.bias.add_(100.0)  # after set_params: not the session's
    res = sess.run_step({"input0": x, "labels": y})
    np.testing.assert_array_equal(dict(zip(step.results, res.values))[Binding("param", "bias")],
                                  bias.numpy())


def test_set_params_is_all_or_nothing() -> None:
    sess = Session("acf-small")
    loaded = sess.load(MLP)
    with pytest.raises(BindError, match="unknown tensor 'nope'"):
        sess.set_params({"w2": np.zeros((10, 48), np.float32), "nope": 1.0})
    assert loaded.state == {}


# ---- options, targets, load ----------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"tile": "big"}, "tile must be a side"),
    ({"tile": (4, 4)}, "tile must be a side .* got \\(4, 4\\)"),
    ({"tile": (4, 0, 4)}, "tile 4x0x4: sizes must be positive"),
    ({"tile": -3}, "tile side -3: must be positive"),
    ({"tile": 2.5}, "tile must be a side"),
    ({"bands": None}, "bands must be a DensityBands, got None"),
    ({"seed": "x"}, "seed must be a non-negative integer, got 'x'"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"grad_variants": "dense"}, "grad_variants must be a tuple of names"),
    ({"grad_variants": ("sparse",)}, "grad_variants: unknown 'sparse'"),
    ({"verify": "no"}, "verify must be True or False, got 'no'"),
    ({"respecialize": "always"}, "respecialize must be 'band' or 'off', got 'always'"),
    ({"formats": "csr"}, "formats must be 'ir' or 'auto', got 'csr'"),
    ({"mode": "fast"}, "mode must be 'batched' or 'stepped', got 'fast'"),
    ({"pipeline": None}, "pipeline must be pass-pipeline text"),
    ({"pipeline": "no-such-pass"}, "pipeline 'no-such-pass': .*unknown pass 'no-such-pass'"),
])
def test_session_options_are_checked_when_built(kwargs, message) -> None:
    with pytest.raises(RuntimeOptionError, match=message):
        SessionOptions(**kwargs)


def test_valid_options_still_build() -> None:
    o = SessionOptions(grad_variants=["sddmm", "dense"], tile=(16, 16, 32), seed=np.int64(3),
                       bands=DensityBands(), verify=False, pipeline="")
    assert o.grad_variants == ("sddmm", "dense")


def test_session_target_and_options_types() -> None:
    with pytest.raises(RuntimeOptionError, match="target must be a target name .* got 3"):
        Session(3)  # type: ignore[arg-type]
    with pytest.raises(RuntimeOptionError, match="options must be a SessionOptions"):
        Session("acf-small", {"tile": 0})  # type: ignore[arg-type]


def test_load_takes_a_module_its_text_or_a_captured_step() -> None:
    model, x, y, step = adam_case()
    sess = Session("acf-small")
    with pytest.raises(BindError, match="load takes a graph-dialect Module, its text, or a "
                                        "captured training step; got NoneType"):
        sess.load(None)  # type: ignore[arg-type]
    with pytest.raises(BindError, match="got int"):
        sess.load(3)  # type: ignore[arg-type]
    args = step.bind(model, (x,), y)
    sess.load(step)  # its .module
    direct = Session("acf-small")
    direct.load(step.module)
    for a, b in zip(sess.run_step(args).values, direct.run_step(args).values):
        np.testing.assert_array_equal(a, b)


def test_auto_formats_with_respecialization_off_choose_once() -> None:
    """formats="auto" picks the band format of the first masks also with respecialize="off"
    (it was silently ignored), and keeps it when the density later changes band."""
    torch.manual_seed(0)
    model = nn.Linear(32, 16)
    x, y = torch.randn(4, 32), torch.randint(0, 16, (4,))
    sparse = (torch.rand(16, 32) < 0.1).float()
    step = capture_training_step(model, (x,), labels=y, masks={"weight": sparse})
    sess = Session("acf-small", SessionOptions(formats="auto", respecialize="off"))
    sess.load(step.module)
    assert sess.compile_count == 0  # compiled when the first masks are known
    rep = sess.run_step(step.bind(model, (x,), y, masks={"weight": sparse})).report
    assert rep.formats == {"weight": "csr"}
    dense = torch.ones(16, 32)
    rep = sess.run_step(step.bind(model, (x,), y, masks={"weight": dense})).report
    assert rep.formats == {"weight": "csr"} and not rep.respecialized
    assert sess.compile_count == 1


# ---- the torch.compile backend -------------------------------------------------------------
def test_backend_report_path_is_checked_before_running(tmp_path) -> None:
    backend = pytest.importorskip("acf.frontends.backend")
    with pytest.raises(ValueError, match="report '/nonexistent/dir/r.json': directory "
                                         "'/nonexistent/dir' does not exist"):
        backend.parse_options({"report": "/nonexistent/dir/r.json"})
    with pytest.raises(ValueError, match="is a directory"):
        backend.parse_options({"report": str(tmp_path)})
    with pytest.raises(ValueError, match="report must be a file path, got 3"):
        backend.parse_options({"report": 3})
    assert backend.parse_options({"report": tmp_path / "r.json"})["report"] == tmp_path / "r.json"
    n = len(backend.REPORTS)
    with pytest.raises(Exception, match="does not exist"):
        torch.compile(nn.Linear(4, 3), backend="acf", dynamic=False,
                      options={"target": "acf-small", "report": "/nonexistent/dir/r.json"}
                      )(torch.randn(2, 4))
    assert len(backend.REPORTS) == n  # refused before anything ran


def test_backend_takes_int32_token_ids() -> None:
    backend = pytest.importorskip("acf.frontends.backend")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3))
    ref = copy.deepcopy(model)
    ids = torch.tensor([[1, 2], [3, 9]], dtype=torch.int32)
    n = len(backend.REPORTS)
    out = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)(ids)
    out.sum().backward()
    want = ref(ids)
    want.sum().backward()
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    assert [r.variant != "host" for r in backend.REPORTS[n:]] == [True, True]


def test_backend_cross_entropy_ignore_index_is_named() -> None:
    pytest.importorskip("acf.frontends.backend")
    lin = nn.Linear(4, 3)
    fn = torch.compile(lambda x, y: F.cross_entropy(lin(x), y), backend="acf",
                       options={"target": "acf-small"}, dynamic=False)
    with pytest.raises(BindError, match="index -100 is outside \\[0, 3\\); labels to ignore "
                                        "\\(cross_entropy's ignore_index, -100 by default\\) "
                                        "are not supported"):
        fn(torch.randn(3, 4), torch.tensor([0, -100, 2]))


@pytest.mark.parametrize("kwargs, message", [
    ({"hysteresis": "x"}, "hysteresis must be a number, got 'x'"),
    ({"csr_below": None}, "csr_below must be a number, got None"),
    ({"dense_above": float("nan")}, "dense_above must be a number, got nan"),
    ({"hysteresis": -0.1}, "hysteresis must be >= 0"),
])
def test_density_bands_are_checked_when_built(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DensityBands(**kwargs)
    assert DensityBands(csr_below=np.float32(0.1)).format_for(0.05) == "csr"


# ---- what a step hands back, what a failed load leaves -----------------------------------
def test_editing_a_result_in_place_does_not_change_the_next_step() -> None:
    """The carried results are the session's own copies: the caller may edit what it got."""
    args = mlp_args()

    def second_loss(edit: bool) -> float:
        sess = Session("acf-small")
        sess.load(MLP, carry={"result3": "w1", "result4": "w2"})
        sess.set_params({"w1": args["w1"], "w2": args["w2"]})
        sess.bind_mask("w1", random_mask((48, 32), 0.4, 1))
        res = sess.run_step({"x": args["x"], "labels": args["labels"]})
        if edit:
            res.outputs["result4"] *= 0
            res.values[3][...] = 7.0
        return float(sess.run_step({"x": args["x"], "labels": args["labels"]}).outputs["result0"])

    assert second_loss(True) == second_loss(False)


def test_a_failed_load_leaves_the_session_as_it_was() -> None:
    """A second program whose dense-gradient variant does not compile (after its SDDMM one
    did): the trained program stays loaded and current with its weights, masks and
    state, and neither the cache nor the compile count keeps a trace of the failed load."""
    from .programs import LAYER

    bad = LAYER.replace(
        "%nw, %nb = graph.sgd_update %w, %gw, %buf {lr = 0.1, momentum = 0.9, weight_decay = 0.01} "
        ": tensor<40x64xf32, #csr>, tensor<40x64xf32>, tensor<40x64xf32>",
        "%nw, %nb = graph.sgd_update %w, %gw, %buf, %mask {lr = 0.1, momentum = 0.9, "
        "weight_decay = 0.01} : tensor<40x64xf32, #csr>, tensor<40x64xf32>, tensor<40x64xf32>, "
        "tensor<40x64xf32, #csr>")
    assert bad != LAYER
    args = mlp_args()
    sess = Session("acf-small", SessionOptions(grad_variants=("sddmm", "dense")))
    sess.load(MLP, carry={"result3": "w1", "result4": "w2"})
    sess.set_params({"w1": args["w1"], "w2": args["w2"]})
    sess.bind_mask("w1", random_mask((48, 32), 0.4, 1))
    sess.run_step({"x": args["x"], "labels": args["labels"]})
    loaded = sess._get(None)
    before = loaded.snapshot()
    count, log, cached = sess.compile_count, list(sess.compile_log), set(sess._cache)
    for name in ("other", "step"):  # a new name, and the loaded program's own
        with pytest.raises(ValueError, match="dense weight gradient: a sparse-encoded mask"):
            sess.load(bad, name=name)
        assert sess._get(None) is loaded and sess._steps == {"step": loaded}
        assert (sess.compile_count, sess.compile_log, set(sess._cache)) == (count, log, cached)
        after = loaded.snapshot()
        assert after.keys() == before.keys()
        for key in ("state", "masks"):
            assert after[key].keys() == before[key].keys()
            assert all(np.array_equal(after[key][k], before[key][k]) for k in after[key])
    res = sess.run_step({"x": args["x"], "labels": args["labels"]})
    assert res.report.step == 2 and not res.report.compiled


def test_a_new_batch_size_names_the_fix() -> None:
    sess = Session("acf-small")
    sess.load(MLP)
    with pytest.raises(BindError, match="tensor 'x': expected shape \\[16, 32\\], got \\[8, 32\\]; "
                                        ".*capture the step again at the new shape \\(e.g. "
                                        "another batch size\\)"):
        sess.run_step({"x": np.zeros((8, 32), np.float32)})
