"""Sparse tensor encodings, modelled on MLIR's ``sparse_tensor`` dialect.

Syntax (the part inside ``#sparse<...>``)::

    #sparse<{map = (i, j) -> (i : dense, j : compressed)}>                      csr
    #sparse<{map = (i, j) -> (j : dense, i : compressed)}>                      csc
    #sparse<{map = (i, j) -> (i : compressed(nonunique), j : singleton)}>       coo
    #sparse<{map = (i, j) -> (i : dense, j : bitmap)}>                          bitmap
    #sparse<{map = (i, j) -> (i : dense, j floordiv 4 : dense, j mod 4 : structured[2, 4])}>
                                                                                 nm2:4
    #sparse<{map = (i, j) -> (i floordiv 4 : dense, j floordiv 4 : compressed,
                              i mod 4 : dense, j mod 4 : dense)}>               bcsr4x4

The rest of the stack names formats by string (``"csr"``, ``"nm2:4"``, ``"bcsr4x4"``);
:func:`encoding_to_format` and :func:`format_to_encoding` convert between the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEVEL_KINDS = ("dense", "compressed", "singleton", "bitmap", "structured")


@dataclass(frozen=True)
class LevelType:
    """How one storage level is kept: ``dense``, ``compressed(nonunique)``, ``structured[2, 4]``."""

    kind: str
    nonunique: bool = False
    n: int = 0
    m: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LEVEL_KINDS:
            raise ValueError(f"unknown level type '{self.kind}'; expected one of {LEVEL_KINDS}")
        if self.kind == "structured" and not (0 < self.n <= self.m):
            raise ValueError(f"structured[{self.n}, {self.m}] needs 0 < N <= M")

    def __str__(self) -> str:
        if self.kind == "structured":
            return f"structured[{self.n}, {self.m}]"
        return f"{self.kind}(nonunique)" if self.nonunique else self.kind


@dataclass(frozen=True)
class LevelExpr:
    """A level coordinate: a dimension, optionally ``floordiv k`` or ``mod k``."""

    dim: str
    op: str | None = None
    value: int = 0

    def __str__(self) -> str:
        return self.dim if self.op is None else f"{self.dim} {self.op} {self.value}"


@dataclass(frozen=True)
class SparseEncoding:
    """A dimension-to-level map, each level with its storage type."""

    dims: tuple[str, ...]
    levels: tuple[tuple[LevelExpr, LevelType], ...]

    def __post_init__(self) -> None:
        if len(set(self.dims)) != len(self.dims):
            raise ValueError("duplicate dimension name in sparse encoding map")
        used = {expr.dim for expr, _ in self.levels}
        for expr, _ in self.levels:
            if expr.dim not in self.dims:
                raise ValueError(f"level uses undeclared dimension '{expr.dim}'")
            if expr.op is not None and expr.value <= 0:
                raise ValueError(f"'{expr}' needs a positive constant")
        missing = [d for d in self.dims if d not in used]
        if missing:
            raise ValueError(f"dimension '{missing[0]}' is not stored by any level")

    @property
    def rank(self) -> int:
        return len(self.dims)

    def __str__(self) -> str:
        levels = ", ".join(f"{expr} : {lvl}" for expr, lvl in self.levels)
        return f"#sparse<{{map = ({', '.join(self.dims)}) -> ({levels})}}>"


def _level(expr: str, kind: str) -> tuple[LevelExpr, LevelType]:
    """Build one level from short text such as ``'j mod 4'`` and ``'structured[2, 4]'``."""
    parts = expr.split()
    lexpr = LevelExpr(parts[0]) if len(parts) == 1 else LevelExpr(parts[0], parts[1], int(parts[2]))
    if kind.startswith("structured"):
        n, m = (int(x) for x in re.findall(r"\d+", kind))
        return lexpr, LevelType("structured", n=n, m=m)
    return lexpr, LevelType(kind.split("(")[0], nonunique="nonunique" in kind)


def _matrix(*levels: tuple[str, str]) -> SparseEncoding:
    return SparseEncoding(("i", "j"), tuple(_level(e, k) for e, k in levels))


def format_to_encoding(fmt: str) -> SparseEncoding | None:
    """The canonical encoding of a named matrix format (``None`` for ``"dense"``)."""
    if fmt == "dense":
        return None
    fixed = {
        "csr": (("i", "dense"), ("j", "compressed")),
        "csc": (("j", "dense"), ("i", "compressed")),
        "coo": (("i", "compressed(nonunique)"), ("j", "singleton")),
        "bitmap": (("i", "dense"), ("j", "bitmap")),
    }
    if fmt in fixed:
        return _matrix(*fixed[fmt])
    if match := re.fullmatch(r"nm(\d+):(\d+)", fmt):
        n, m = int(match[1]), int(match[2])
        return _matrix(
            ("i", "dense"), (f"j floordiv {m}", "dense"), (f"j mod {m}", f"structured[{n}, {m}]")
        )
    if match := re.fullmatch(r"bcsr(\d+)x(\d+)", fmt):
        r, c = match[1], match[2]
        return _matrix(
            (f"i floordiv {r}", "dense"),
            (f"j floordiv {c}", "compressed"),
            (f"i mod {r}", "dense"),
            (f"j mod {c}", "dense"),
        )
    raise ValueError(
        f"unknown format name '{fmt}'; expected dense, csr, csc, coo, bitmap, nmN:M or bcsrRxC"
    )


def _canonical(enc: SparseEncoding) -> SparseEncoding:
    """Rename the two dimensions to ``i, j`` so matching ignores the names the user chose."""
    rename = dict(zip(enc.dims, ("i", "j")))
    levels = tuple((LevelExpr(rename[e.dim], e.op, e.value), t) for e, t in enc.levels)
    return SparseEncoding(("i", "j"), levels)


def encoding_to_format(enc: SparseEncoding | None) -> str:
    """The format name of an encoding: ``"dense"``, ``"csr"``, ``"nm2:4"``, ``"bcsr4x4"``, ...

    Raises ``ValueError`` for an encoding that no named format describes.
    """
    if enc is None or all(lvl.kind == "dense" for _, lvl in enc.levels):
        return "dense"
    if enc.rank == 2:
        canon = _canonical(enc)
        candidates = ["csr", "csc", "coo", "bitmap"]
        last = canon.levels[-1]
        if last[1].kind == "structured":
            candidates.append(f"nm{last[1].n}:{last[1].m}")
        if len(canon.levels) == 4 and canon.levels[0][0].op == "floordiv":
            candidates.append(f"bcsr{canon.levels[0][0].value}x{canon.levels[1][0].value}")
        for name in candidates:
            if format_to_encoding(name) == canon:
                return name
    raise ValueError(f"no format name for encoding {enc}")
