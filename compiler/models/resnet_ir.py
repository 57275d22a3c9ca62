"""A torch-free generator of a ResNet-18-shaped training step in the ``graph`` dialect.

CIFAR shapes (3x32x32 input, 10 classes): a 3x3 stem conv (64), four stages of two basic
blocks (64, 128, 256, 512 channels; stages 2-4 start with stride 2 and a 1x1 conv + batch
norm shortcut), a 4x4 average pool, a linear classifier and the cross-entropy loss; then
the hand-written backward pass and one SGD (momentum) step per parameter. The function
returns the loss followed by every updated parameter and momentum buffer::

    text = resnet18_train_step(batch=8)
    module = parse_module(text)
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _ty(shape: tuple[int, ...], elem: str = "f32") -> str:
    return "tensor<" + "".join(f"{d}x" for d in shape) + elem + ">"


@dataclass
class Builder:
    """Appends ``graph`` ops as text, tracking the shape of every value."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    elems: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    counter: int = 0

    def arg(self, name: str, shape: tuple[int, ...], elem: str = "f32") -> str:
        self.shapes[name], self.elems[name] = shape, elem
        self.args.append(name)
        return name

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}{self.counter}"

    def op(self, name: str, operands: list[str], shapes: list[tuple[int, ...]], attrs: str = "",
           hint: str = "v") -> list[str]:
        results = [self.fresh(hint) for _ in shapes]
        for r, s in zip(results, shapes):
            self.shapes[r], self.elems[r] = s, "f32"
        a = f" {{{attrs}}}" if attrs else ""
        types_in = ", ".join(_ty(self.shapes[o], self.elems[o]) for o in operands)
        types_out = ", ".join(_ty(s) for s in shapes)
        self.lines.append(f"  {', '.join('%' + r for r in results)} = graph.{name} "
                          f"{', '.join('%' + o for o in operands)}{a} : {types_in} -> {types_out}")
        return results

    def one(self, name: str, operands: list[str], shape: tuple[int, ...], attrs: str = "",
            hint: str = "v") -> str:
        return self.op(name, operands, [shape], attrs, hint)[0]

    def text(self, fname: str, results: list[str]) -> str:
        sig = ", ".join(f"%{a}: {_ty(self.shapes[a], self.elems[a])}" for a in self.args)
        rt = ", ".join(_ty(self.shapes[r]) for r in results)
        body = "\n".join(self.lines)
        return (f"graph.func @{fname}({sig}) -> ({rt}) {{\n{body}\n"
                f"  graph.return {', '.join('%' + r for r in results)} : {rt}\n}}\n")


def _conv_attrs(stride: int, pad: int) -> str:
    return f"stride = [{stride}, {stride}], padding = [{pad}, {pad}]"


class ResNet18:
    def __init__(self, batch: int, classes: int = 10, width: int = 64, image: int = 32,
                 lr: float = 0.1, momentum: float = 0.9) -> None:
        self.b = Builder()
        self.n, self.classes, self.width, self.image = batch, classes, width, image
        self.lr, self.momentum = lr, momentum
        self.params: list[str] = []
        self.grads: dict[str, str] = {}

    def param(self, name: str, shape: tuple[int, ...]) -> str:
        self.params.append(self.b.arg(name, shape))
        return name

    # ---- forward pieces ---------------------------------------------------------------
    def conv(self, x: str, name: str, cout: int, k: int, stride: int) -> tuple[str, dict]:
        n, cin, h, w = self.b.shapes[x]
        wt = self.param(name, (cout, cin, k, k))
        pad = k // 2
        oh = (h + 2 * pad - k) // stride + 1
        y = self.b.one("conv2d", [x, wt], (n, cout, oh, oh), _conv_attrs(stride, pad), "conv")
        return y, {"x": x, "w": wt, "stride": stride, "pad": pad, "y": y}

    def bn(self, x: str, name: str) -> tuple[str, dict]:
        c = self.b.shapes[x][1]
        g, be = self.param(name + "_g", (c,)), self.param(name + "_b", (c,))
        y, mean, inv = self.b.op("batch_norm", [x, g, be], [self.b.shapes[x], (c,), (c,)], hint="bn")
        return y, {"x": x, "g": g, "b": be, "mean": mean, "inv": inv, "y": y}

    def relu(self, x: str) -> str:
        return self.b.one("relu", [x], self.b.shapes[x], hint="relu")

    # ---- backward pieces --------------------------------------------------------------
    def grad(self, p: str, g: str) -> None:
        self.grads[p] = g

    def conv_bwd(self, rec: dict, gy: str, need_input: bool = True) -> str | None:
        x, w = rec["x"], rec["w"]
        attrs = _conv_attrs(rec["stride"], rec["pad"])
        gw = self.b.one("conv2d_backward_weight", [gy, x], self.b.shapes[w],
                        f"weight_shape = [{', '.join(map(str, self.b.shapes[w]))}], " + attrs, "gw")
        self.grad(w, gw)
        if not need_input:
            return None
        xs = self.b.shapes[x]
        return self.b.one("conv2d_backward_input", [gy, w], xs,
                          f"input_shape = [{', '.join(map(str, xs))}], " + attrs, "gx")

    def bn_bwd(self, rec: dict, gy: str) -> str:
        c = self.b.shapes[rec["g"]]
        gx, gg, gb = self.b.op("batch_norm_backward", [gy, rec["x"], rec["g"], rec["mean"], rec["inv"]],
                               [self.b.shapes[rec["x"]], c, c], hint="gbn")
        self.grad(rec["g"], gg)
        self.grad(rec["b"], gb)
        return gx

    def block(self, x: str, name: str, cout: int, stride: int) -> tuple[str, dict]:
        c1, rc1 = self.conv(x, f"{name}_conv1", cout, 3, stride)
        b1, rb1 = self.bn(c1, f"{name}_bn1")
        r1 = self.relu(b1)
        c2, rc2 = self.conv(r1, f"{name}_conv2", cout, 3, 1)
        b2, rb2 = self.bn(c2, f"{name}_bn2")
        rec = {"x": x, "c1": rc1, "b1": rb1, "pre1": b1, "c2": rc2, "b2": rb2}
        if stride != 1 or self.b.shapes[x][1] != cout:
            cd, rcd = self.conv(x, f"{name}_down", cout, 1, stride)
            bd, rbd = self.bn(cd, f"{name}_downbn")
            rec.update(cd=rcd, bd=rbd)
            sc = bd
        else:
            sc = x
        a = self.b.one("add", [b2, sc], self.b.shapes[b2], hint="res")
        rec["pre_out"] = a
        return self.relu(a), rec

    def block_bwd(self, rec: dict, gy: str) -> str:
        ga = self.b.one("relu_backward", [gy, rec["pre_out"]], self.b.shapes[gy], hint="grelu")
        g = self.bn_bwd(rec["b2"], ga)
        g = self.conv_bwd(rec["c2"], g)
        g = self.b.one("relu_backward", [g, rec["pre1"]], self.b.shapes[g], hint="grelu")
        g = self.bn_bwd(rec["b1"], g)
        gx = self.conv_bwd(rec["c1"], g)
        if "cd" in rec:
            gd = self.bn_bwd(rec["bd"], ga)
            gs = self.conv_bwd(rec["cd"], gd)
        else:
            gs = ga
        return self.b.one("add", [gx, gs], self.b.shapes[gx], hint="gsum")

    def build(self) -> str:
        b, n = self.b, self.n
        x = b.arg("x", (n, 3, self.image, self.image))
        labels = b.arg("labels", (n,), "i64")
        c, stem_c = self.conv(x, "stem_conv", self.width, 3, 1)
        h, stem_bn = self.bn(c, "stem_bn")
        h = self.relu(h)
        stem_pre = stem_bn["y"]
        recs = []
        for stage, mult in enumerate((1, 2, 4, 8)):
            for i in range(2):
                stride = 2 if stage > 0 and i == 0 else 1
                h, rec = self.block(h, f"l{stage + 1}_{i}", self.width * mult, stride)
                recs.append(rec)
        _, cf, hf, wf = b.shapes[h]
        pool_attrs = f"kernel_size = [{hf}, {wf}]"
        pooled = b.one("avg_pool2d", [h], (n, cf, 1, 1), pool_attrs, "pool")
        flat = b.one("reshape", [pooled], (n, cf), f"shape = [{n}, {cf}]", "flat")
        fw, fb = self.param("fc_w", (self.classes, cf)), self.param("fc_b", (self.classes,))
        logits = b.one("linear", [flat, fw, fb], (n, self.classes), hint="logits")
        loss = b.one("cross_entropy", [logits, labels], (), hint="loss")
        # backward
        gl = b.one("cross_entropy_backward", [loss, logits, labels], (n, self.classes), hint="glogits")
        self.grad(fw, b.one("matmul", [gl, flat], (self.classes, cf), "transpose_a = true", "gfw"))
        self.grad(fb, b.one("reduce_sum", [gl], (self.classes,), "axes = [0]", "gfb"))
        gflat = b.one("matmul", [gl, fw], (n, cf), hint="gflat")
        gpool = b.one("reshape", [gflat], (n, cf, 1, 1), f"shape = [{n}, {cf}, 1, 1]", "gpool")
        g = b.one("avg_pool2d_backward", [gpool, h], b.shapes[h], pool_attrs, "gpool")
        for rec in reversed(recs):
            g = self.block_bwd(rec, g)
        g = b.one("relu_backward", [g, stem_pre], b.shapes[g], hint="grelu")
        g = self.bn_bwd(stem_bn, g)
        self.conv_bwd(stem_c, g, need_input=False)
        # SGD with momentum
        outs = [loss]
        for p in self.params:
            buf = b.arg(p + "_mom", b.shapes[p])
            np_, nb = b.op("sgd_update", [p, self.grads[p], buf], [b.shapes[p], b.shapes[p]],
                           f"lr = {self.lr}, momentum = {self.momentum}", "upd")
            outs += [np_, nb]
        return b.text("train_step", outs)


def resnet18_train_step(batch: int = 8, classes: int = 10, width: int = 64, image: int = 32,
                        lr: float = 0.1, momentum: float = 0.9) -> str:
    """IR text of one ResNet-18 (CIFAR) training step: forward, backward, SGD update.

    ``width`` scales every stage (64 is ResNet-18; smaller widths make quick tests)."""
    return ResNet18(batch, classes, width, image, lr, momentum).build()
