"""torch.compile(backend="acf"): forward output and .grad from the fabric match eager."""

from __future__ import annotations

import copy
import json

import pytest

torch = pytest.importorskip("torch")
backend = pytest.importorskip("acf.frontends.backend")


def test_mlp_forward_and_grads_match_eager(tmp_path) -> None:
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10))
    ref = copy.deepcopy(model)
    x, y = torch.randn(8, 32), torch.randint(0, 10, (8,))
    path = tmp_path / "report.json"
    cmodel = torch.compile(model, backend="acf", options={"target": "acf-small",
                                                           "report": str(path)})
    out = cmodel(x)
    F.cross_entropy(out, y).backward()
    want = ref(x)
    F.cross_entropy(want, y).backward()
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    steps = json.loads(path.read_text())["steps"]
    assert [s["program"].rstrip("0123456789") for s in steps[-2:]] == ["forward", "backward"]
    assert all(s["total_cycles"] > 0 for s in steps[-2:])


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown option.*'colour'.*valid options: dtype, "
                                         "fallback, pipeline, report, skip_policy, target"):
        backend.parse_options({"colour": "red"})
    with pytest.raises(ValueError, match="fallback must be"):
        backend.parse_options({"fallback": "maybe"})
