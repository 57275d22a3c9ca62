"""Located diagnostics for the ACF IR.

Every error a user can cause is an :class:`IRError` whose ``str`` reads::

    model.acfir:3:7: error: use of undefined value '%y'
      %z = graph.relu %y : tensor<4xf32> -> tensor<4xf32>
                      ^

Errors that are the compiler's own fault are :class:`InternalError` and say so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourcePos:
    """A position in IR (or pipeline) text: 1-based line and column."""

    file: str
    line: int
    col: int


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as UTF-8 text; raises :class:`IRError` at the line and column (in
    characters, 1-based) of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        col = len(data[line_start:err.start].decode("utf-8")) + 1
        raise IRError(f"not UTF-8 text (byte 0x{data[err.start]:02x})",
                      SourcePos(name, line, col)) from None


class SourceText:
    """Text of one input with its name, so diagnostics can quote the offending line."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.lines = text.splitlines()

    def pos(self, line: int, col: int) -> SourcePos:
        return SourcePos(self.name, line, col)

    def line_text(self, line: int) -> str | None:
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1]
        return None


class IRError(Exception):
    """A user error with a location: ``file:line:col: error: message`` + source line + caret."""

    def __init__(
        self, message: str, pos: SourcePos | None = None, source: SourceText | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.source = source

    def with_source(self, source: SourceText) -> IRError:
        """Attach the text the position refers to (when the error was raised without it)."""
        if self.source is None and self.pos is not None and self.pos.file == source.name:
            self.source = source
        return self

    def __str__(self) -> str:
        if self.pos is None:
            return f"<unknown>: error: {self.message}"
        head = f"{self.pos.file}:{self.pos.line}:{self.pos.col}: error: {self.message}"
        line = self.source.line_text(self.pos.line) if self.source else None
        if line is None:
            return head
        caret = " " * (self.pos.col - 1) + "^"
        return f"{head}\n{line}\n{caret}"


class InternalError(Exception):
    """A bug in the compiler itself (not the user's input)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error: {message}")
