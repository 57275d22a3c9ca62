"""The debugger's command shell: gdb-like commands over a :class:`Debugger`.

Commands (unique prefixes work too; ``help`` lists them)::

    break/b LOC [UNIT] [if COND]      watch [-read|-write|-change|-nan] TENSOR|RANGE
    delete/d [N...]                   continue/c      step/s [N]      stepi/si [N]
    next/n UNIT [N]                   until CYCLE     goto CYCLE
    reverse-step/rs [N]               reverse-stepi/rsi [N]           reverse-continue/rc
    info/i queues|tokens|registers|noc|breakpoints
    print/p TENSOR|TENSOR[tile I,J]|EXPR               x/NF RANGE|TENSOR
    disas/list [UNIT|ADDR|LABEL] [N]  why UNIT        where/bt        digest
    history                           help            quit/q

A session reads commands from a file (``-x``) then stdin unless ``--batch``; in batch mode
each command is echoed after the prompt, so a transcript reads like an interactive session.
Mistakes print ``error: ...`` and the session goes on; a command given words it does not
take (``step 3 extra``, ``continue 5``) is one of them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable

from acf.debugger import views
from acf.debugger.engine import Debugger, Stop
from acf.debugger.expr import ExprError
from acf.debugger.points import PointError, resolve_address
from acf.debugger.why import why

PROMPT = "(acfdbg) "
ALIASES = {
    "b": "break",
    "c": "continue",
    "s": "step",
    "si": "stepi",
    "n": "next",
    "d": "delete",
    "rs": "reverse-step",
    "rsi": "reverse-stepi",
    "rc": "reverse-continue",
    "i": "info",
    "p": "print",
    "q": "quit",
    "bt": "where",
    "backtrace": "where",
    "list": "disas",
    "l": "disas",
    "rwatch": "watch -read",
}


class Quit(Exception):
    """Raised by ``quit`` to end the session."""


class Shell:
    """Reads commands, drives the debugger, writes lines through ``out``."""

    def __init__(self, dbg: Debugger, out: Callable[[str], None] = print):
        self.dbg = dbg
        self.out = out
        self.history: list[str] = []
        self.commands: dict[str, Callable[[str], None]] = {
            "break": self.do_break,
            "watch": self.do_watch,
            "delete": self.do_delete,
            "continue": _bare("continue", lambda: self._show(dbg.cont())),
            "step": lambda a: self._show(dbg.step(_n(a))),
            "stepi": lambda a: self._show(dbg.stepi(_n(a))),
            "next": self.do_next,
            "until": lambda a: self._show(dbg.run_to_cycle(_cycle(a))),
            "goto": lambda a: self._show(dbg.goto_cycle(_cycle(a))),
            "reverse-step": lambda a: self._show(dbg.reverse_step(_n(a))),
            "reverse-stepi": lambda a: self._show(dbg.reverse_stepi(_n(a))),
            "reverse-continue": _bare("reverse-continue", lambda: self._show(dbg.reverse_cont())),
            "info": self.do_info,
            "print": self.do_print,
            "x": self.do_x,
            "disas": self.do_disas,
            "why": lambda a: self._lines(why(dbg.m, a.strip())),
            "where": _bare("where", lambda: self._lines(views.where(dbg))),
            "digest": _bare("digest", lambda: self.out(
                f"{dbg.m.digest()[:16]} at position {dbg.m.pos}, cycle {dbg.m.cycle}"
            )),
            "history": _bare("history", lambda: self._lines(
                [f"{i + 1:>4}  {h}" for i, h in enumerate(self.history)]
            )),
            "help": _bare("help", lambda: self._lines(
                (__doc__ or "").split("::")[1].strip("\n").splitlines()
            )),
            "quit": self.do_quit,
        }

    # ---- driving -------------------------------------------------------------------------------
    def run(self, lines: Iterable[str], echo: bool = False) -> bool:
        """Execute lines; False once ``quit`` ran."""
        for line in lines:
            if echo:
                self.out(PROMPT + line.rstrip("\n"))
            if not self.execute(line):
                return False
        return True

    def execute(self, line: str) -> bool:
        """One command line; returns False when the session should end."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        self.history.append(text)
        name, arg = _split(text)
        pos, before = self.dbg.m.pos, self._fingerprint()
        try:
            fn = self._resolve(name)
            fn(arg)
        except Quit:
            return False
        except (PointError, ExprError, KeyError, ValueError, IndexError, ArithmeticError,
                RecursionError) as exc:
            self._undo(pos, before)
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            if isinstance(exc, RecursionError):
                msg = "the command nests too deeply"
            for i, part in enumerate(str(msg).splitlines()):
                self.out(("error: " if i == 0 else "       ") + part)
        except OSError:
            raise  # the output itself failed (a full disk, a closed pipe): the session ends
        except Exception as exc:  # noqa: BLE001 - keep the session alive; the user can still inspect state
            self._undo(pos, None)
            self.out(f"internal error: {type(exc).__name__}: {exc}")
        return True

    def _fingerprint(self) -> tuple:
        """What changes whenever the machine moves, even part of an event."""
        m = self.dbg.m
        eng = m.engine
        return (m.pos, id(m.emu), eng.seq, eng.now, len(eng.heap), len(eng.records), eng.pc)

    def _undo(self, pos: int, before: tuple | None) -> None:
        """A failed command leaves the machine where it was: one that moved it (perhaps
        stopping half-way through an event) is rebuilt at ``pos`` from a checkpoint. An
        unforeseen error (``before`` None) always rebuilds it."""
        m = self.dbg.m
        try:
            if before is None or self._fingerprint() != before:
                m.rewind(pos)
        except Exception as exc:  # noqa: BLE001 - report it; the session goes on
            self.out(f"internal error: cannot return to position {pos}: {type(exc).__name__}: {exc}")

    def _resolve(self, name: str) -> Callable[[str], None]:
        if name.startswith("x/") or name == "x":
            return lambda a: self.do_x(name[2:] + " " + a if name != "x" else a)
        full = ALIASES.get(name, name)
        if " " in full:  # an alias with a built-in option
            cmd, opt = full.split(" ", 1)
            return lambda a: self.commands[cmd](f"{opt} {a}")
        if full in self.commands:
            return self.commands[full]
        matches = [c for c in self.commands if c.startswith(name)]
        if len(matches) == 1:
            return self.commands[matches[0]]
        if matches:
            raise ValueError(f"ambiguous command {name!r}: {', '.join(sorted(matches))}")
        raise ValueError(f"unknown command {name!r} (try help)")

    def _lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.out(line)

    def _show(self, stop: Stop) -> None:
        self._lines(views.stop_lines(self.dbg, stop))

    # ---- commands ------------------------------------------------------------------------------
    def do_break(self, arg: str) -> None:
        bp = self.dbg.add_breakpoint(arg)
        where = f" at {views.location(self.dbg, bp.value)}" if bp.kind == "addr" else ""
        self.out(f"breakpoint {bp.id}: {bp.describe()}{where}")

    def do_watch(self, arg: str) -> None:
        kind, words = "write", arg.split()
        if words and words[0].startswith("-"):
            kind, words = words[0][1:], words[1:]
        if not words:
            raise ValueError("watch needs a tensor name or a memory range")
        wp = self.dbg.add_watchpoint(" ".join(words), kind)
        self.out(f"watchpoint {wp.id}: {wp.describe()}")

    def do_delete(self, arg: str) -> None:
        ids = [_int(word) for word in arg.split()]
        known = {*self.dbg.breakpoints, *self.dbg.watchpoints}
        missing = [i for i in ids if i not in known]
        if missing:  # checked first: a list with a wrong number deletes nothing
            raise PointError(f"no breakpoint or watchpoint number {missing[0]}")
        if not ids:
            self.dbg.delete()
        for ident in dict.fromkeys(ids):
            self.dbg.delete(ident)
        self.out(f"deleted {' '.join(map(str, dict.fromkeys(ids))) or 'all points'}")

    def do_next(self, arg: str) -> None:
        words = arg.split()
        if not words:
            raise ValueError("next needs a unit, e.g. next c0.mac")
        self._show(self.dbg.next_unit(words[0], _n(" ".join(words[1:]))))

    def do_info(self, arg: str) -> None:
        views_by_name = {
            "queues": views.queues,
            "tokens": views.tokens,
            "registers": views.registers,
            "noc": views.noc,
            "breakpoints": views.breakpoints,
            "watchpoints": views.breakpoints,
        }
        what = arg.strip()
        matches = [k for k in views_by_name if k.startswith(what)] if what else []
        if len(matches) != 1:
            raise ValueError(f"info what? ({' '.join(views_by_name)})")
        self._lines(views_by_name[matches[0]](self.dbg))

    def do_print(self, arg: str) -> None:
        text = arg.strip()
        name = text.split("[")[0].strip()
        if name in self.dbg.program.symbols and ("[" not in text or "tile" in text):
            self._lines(views.tensor(self.dbg, text))
            return
        value = self.dbg.evaluate(text)
        try:
            shown = str(value)
        except ValueError:  # an integer past Python's limit on the digits it prints
            raise ValueError("the result has too many digits to print") from None
        self.out(f"{text} = {shown}")

    def do_x(self, arg: str) -> None:
        fmt, _, where = arg.strip().partition(" ")
        if not where:
            fmt, where = "", fmt
        self._lines(views.examine(self.dbg, fmt, where.strip()))

    def do_disas(self, arg: str) -> None:
        words = arg.split()
        count = _n(words[1]) if len(words) > 1 else 7
        if len(words) > 2:
            raise ValueError(f"disas takes a unit, address or label and a count, got {arg.strip()!r}")
        if not words:
            center = self.dbg.m.engine.pc
        elif words[0] in self.dbg.m.queue_names:
            center = views.unit_pc(self.dbg, words[0])
        else:
            center = resolve_address(self.dbg.program, words[0])
        self._lines(views.disassemble(self.dbg, center, count))

    def do_quit(self, arg: str) -> None:
        _no_words("quit", arg)
        raise Quit


def _split(text: str) -> tuple[str, str]:
    name, _, rest = text.partition(" ")
    return name, rest


def _no_words(command: str, arg: str) -> None:
    """A command that takes nothing refuses words rather than ignore them."""
    if arg.strip():
        raise ValueError(f"{command} takes no arguments, got {arg.strip()!r}")


def _bare(command: str, action: Callable[[], None]) -> Callable[[str], None]:
    """A command without arguments: ``action`` once :func:`_no_words` has checked."""

    def run(arg: str) -> None:
        _no_words(command, arg)
        action()

    return run


def _int(arg: str) -> int:
    """The one number ``arg`` holds (a second word is a mistake, not something to drop)."""
    try:
        words = shlex.split(arg)
    except ValueError:
        words = []
    if len(words) > 1:
        raise ValueError(f"expected one number, got {arg.strip()!r}")
    try:
        return int(words[0], 0)
    except (ValueError, IndexError):
        raise ValueError(f"expected a number, got {arg.strip()!r}") from None


def _cycle(arg: str) -> int:
    value = _int(arg)
    if value < 0:
        raise ValueError(f"cycle {value}: cycles count from 0")
    return value


def _n(arg: str) -> int:
    """A count (``step 3``): at least 1, as gdb's; zero or a negative count is refused
    before anything moves."""
    value = _int(arg) if arg.strip() else 1
    if value < 1:
        raise ValueError(f"expected a positive count, got {value}")
    return value
