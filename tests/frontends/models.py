"""Small models the frontend tests capture (torchvision is not a dependency: built inline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from acf.algorithms.models import BasicBlock, ResNet18  # noqa: F401  (shared model zoo)


class MLP(nn.Module):
    def __init__(self, d_in: int = 8, hidden: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class SmallCNN(nn.Module):
    """conv -> BN -> ReLU -> max pool -> conv (+bias) -> ReLU -> avg pool -> BN -> linear.

    (A conv bias right before batch norm has a gradient that is zero in exact arithmetic,
    which no relative tolerance can compare, so the biased conv feeds a ReLU instead.)
    """

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 2 * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = self.bn2(F.avg_pool2d(F.relu(self.conv2(x)), 2))
        return self.fc(torch.flatten(x, 1))


class TransformerBlock(nn.Module):
    """Pre-norm block (layer norm, SDPA attention, GELU MLP) with a mean-pooled class head."""

    def __init__(self, d: int = 16, heads: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q, self.v, self.proj = (nn.Linear(d, d) for _ in range(3))
        self.k = nn.Linear(d, d, bias=False)  # its gradient would be 0 (softmax shift invariance)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (m(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for m in (self.q, self.k, self.v))
        att = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return self.head(x.mean(dim=1))


class TorchEncoderClassifier(nn.Module):
    """``nn.TransformerEncoderLayer`` (its packed q/k/v projection is split by ``select``)
    and an ``nn.MultiheadAttention`` that also returns its averaged attention weights, with
    a mean-pooled class head: the layers most transformer code is written with."""

    def __init__(self, d: int = 16, heads: int = 2, classes: int = 3) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0,
                                              batch_first=True)
        self.mha = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.enc(x)
        a, weights = self.mha(h, h, h)
        return self.head((h + a).mean(dim=1)) + weights.mean()


class SplitJoinMLP(nn.Module):
    """Views that split and join: ``chunk`` (split), ``unbind``, strided slicing, ``cat`` and
    ``stack``, whose gradients are concats and slice_backwards."""

    def __init__(self, d: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 3 * d)
        self.out = nn.Linear(2 * d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = F.relu(self.fc(x)).chunk(3, dim=-1)
        rows = torch.unbind(a, dim=0)
        s = torch.stack([rows[-1], *rows[:-1]], dim=0)        # rows rotated
        mixed = torch.cat([s[:, ::2] * b[:, 1::2], c[:, :a.shape[1] // 2]], dim=1)
        return self.out(torch.cat([mixed, a], dim=1))


class ActivationsMLP(nn.Module):
    """SiLU, sigmoid, tanh, leaky ReLU and ReLU6 between linear layers (a sigmoid gate as
    in LSTMs and squeeze-excitation)."""

    def __init__(self, d: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.gate = nn.Linear(16, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.fc1(x))
        h = torch.tanh(self.fc2(h)) * torch.sigmoid(self.gate(h))
        h = F.leaky_relu(self.fc3(h), 0.1) + F.relu6(3 * h)
        return self.out(h)


class MoreActivationsMLP(nn.Module):
    """ELU, softplus (beta 2, some inputs past its threshold), hard sigmoid and hard swish
    (MobileNetV3), Mish, a per-channel PReLU and softsign (abs): each a composition on the
    fabric."""

    def __init__(self, d: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(d, 16)] + [nn.Linear(16, 16) for _ in range(5)])
        self.acts = nn.ModuleList([nn.ELU(0.7), nn.Softplus(beta=2.0, threshold=4.0),
                                   nn.Hardswish(), nn.Mish(), nn.PReLU(16), nn.Softsign()])
        self.gate = nn.Hardsigmoid()
        self.out = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fc, act in zip(self.fc, self.acts):
            x = act(4 * fc(x))  # wide pre-activations: every branch of every function
        return self.out(x * self.gate(x))


class GroupNormConvNet(nn.Module):
    """Conv2d with group norm and instance norm, then a conv1d stack over the flattened
    rows (dilated, strided), a ReLU and a linear head."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1, bias=False)  # instance norm cancels a bias
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.conv1d = nn.Conv1d(4, 6, 3, padding=2, dilation=2, stride=2)
        self.gn1d = nn.GroupNorm(2, 6)
        self.head = nn.Linear(6 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.gn(self.conv(x)))
        h = F.relu(self.inorm(self.conv2(h)))
        h = F.relu(self.gn1d(self.conv1d(h.flatten(2))))
        return self.head(h.flatten(1))


class MobileBlockNet(nn.Module):
    """A MobileNetV2/V3-style inverted residual (1x1 expand, depthwise 3x3 with stride,
    1x1 project; batch norm, hard swish) and a ResNeXt-style grouped 3x3, then a head."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.expand = nn.Conv2d(8, 16, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.depthwise = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.project = nn.Conv2d(16, 8, 1, bias=False)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = F.hardswish(self.bn1(self.expand(h)))
        h = F.hardswish(self.bn2(self.depthwise(h)))
        h = F.relu(self.grouped(self.project(h)))
        return self.head(h.mean(dim=(2, 3)))


class EncoderDecoderNet(nn.Module):
    """A strided conv down, transposed convs back up (stride 2 with output padding, and a
    grouped one), as in a U-Net decoder or an autoencoder, then adaptive max pooling and a
    head."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.mix = nn.ConvTranspose2d(4, 4, 3, padding=1, groups=2, bias=False)
        self.pool = nn.AdaptiveMaxPool2d(2)
        self.head = nn.Linear(4 * 2 * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.up(F.relu(self.down(x))))
        return self.head(self.pool(self.mix(h)).flatten(1))


class UpsampleNet(nn.Module):
    """Nearest (by a scale and to a size) and bilinear upsampling between convolutions, as
    in a segmentation decoder, then a head."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 7 * 6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))                                      # 4x4
        h = F.interpolate(h, scale_factor=2, mode="bilinear")         # 8x8
        h = F.relu(self.conv2(h))
        h = F.interpolate(h, size=(7, 6), mode="nearest")             # 7x6
        return self.head(h.flatten(1))


class RecurrentClassifier(nn.Module):
    """A two-layer LSTM, then a GRU over its outputs, classifying from the last step (the
    recurrent layers arrive as their per-step GEMMs, sigmoids and tanhs)."""

    def __init__(self, d: int = 8, hidden: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d, hidden, num_layers=2, batch_first=True)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        h, _ = self.gru(h)
        return self.head(h[:, -1])


class TinyViT(nn.Module):
    """A vision transformer: patch embedding (a strided conv), a class token and learned
    positions, two pre-norm ``nn.TransformerEncoder`` layers with GELU, the class token's
    output to the head."""

    def __init__(self, d: int = 16, patch: int = 4, img: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], dim=1) + self.pos
        return self.head(self.norm(self.enc(h)[:, 0]))


class MaskedAttentionNet(nn.Module):
    """Attention with a key-padding mask built from literals (the last position padded),
    then clamp, where, masked_fill and F.normalize: comparisons and selects on the fabric."""

    def __init__(self, d: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)
        self.fc = nn.Linear(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        pad[:, -1] = True
        h, _ = self.mha(x, x, x, key_padding_mask=pad, need_weights=False)
        h = self.fc(h)
        h = torch.where(h > 0.5, h, 0.1 * h).clamp(min=-1.0, max=2.0)
        h = h.masked_fill((h < -0.05) & (h > -0.08), 0.0)
        return self.head(F.normalize(h, dim=-1).mean(dim=1))


class TinyBert(nn.Module):
    """Token and positional embeddings (a padding row), one ``nn.TransformerEncoderLayer``
    and a mean-pooled class head: a BERT-shaped classifier over token ids."""

    def __init__(self, vocab: int = 30, seq: int = 6, d: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d, padding_idx=0)
        self.pos = nn.Embedding(seq, d)
        self.enc = nn.TransformerEncoderLayer(d, 2, dim_feedforward=2 * d, dropout=0.0,
                                              batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        return self.head(self.enc(h).mean(dim=1))


def cancelling_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An MLP and a batch where one hidden pre-activation is 1 - 1 + 2^-30 summed over k.

    Exactly (and in fp64) it is 2^-30 > 0; every fp32 sum in k order rounds 1 + 2^-30 to 1
    and gives 0, so its ReLU decision flips and that unit's gradient is cut. A deliberate
    instance of what rounding does, rarely, to a few of the ~10^7 ReLU inputs of a batch-32
    ResNet-18 step."""
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.5, -0.25, 0.75]]))
        model[2].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.25]]))
        model[0].bias.zero_()
        model[2].bias.zero_()
    x = torch.tensor([[1.0, 2.0**-30, -1.0], [0.5, 0.25, 1.0], [1.0, 2.0, 0.5],
                      [-0.5, 1.0, 0.25]])
    return model, x, torch.tensor([0, 1, 2, 0])
