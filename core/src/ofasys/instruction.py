"""The instruction language.

An instruction is one line: the encoder side, ``->``, the decoder side.

    [IMAGE:img] what does the image describe? -> [TEXT:cap]

Grammar (informal)::

    instruction := side '->' side
    side        := element*
    element     := slot | group | marker | text
    slot        := '[' TYPE (':' column)? (',' attr)* ']'
    attr        := name | name '=' value          value: bare word, or "double quoted" with \\" and \\\\ escapes
    group       := '(' element+ ')*'             elements repeated once per item of list-valued columns
    marker      := '<BOS>' | '<EOS>'
    text        := any other characters; \\[ \\] \\( \\) \\\\ \\< \\- escape the special ones

Lexical rules:

* ``TYPE`` is ``[A-Z][A-Z0-9_]*``; a column is ``[A-Za-z_][A-Za-z0-9_.]*``; an attribute name is
  ``[A-Za-z_][A-Za-z0-9_]*``. Whitespace inside the brackets (after ``[``, before ``]``, around ``:``, ``,``
  and ``=``) is ignored. A bare attribute is a flag with the value ``True``; every other value is a ``str``.
* A bare value is a run of characters other than whitespace, ``,``, ``[``, ``]`` and ``"``. A quoted value may
  hold anything; inside it ``\\"`` and ``\\\\`` are the only escapes (any other backslash is an error).
* Outside slots, ``[``, ``]``, ``(`` and ``)`` are always syntax; ``<`` only starts a marker in ``<BOS>`` and
  ``<EOS>``; ``-`` only is the separator in ``->``; ``*`` is only special right after ``)``. A backslash must
  be followed by one of ``[ ] ( ) \\ < -`` (a lone or unknown backslash escape is an error).
* Whitespace is every character for which ``str.isspace()`` holds plus every control character (so a newline
  is just whitespace). Runs of it collapse to one space in text, and text is stripped; empty text is dropped.

Canonical form (``str(instruction)``): elements joined by one space, `` -> `` between the sides (``-> X`` when
the encoder side is empty, ``X ->`` when the decoder side is empty, ``->`` when both are); slots as
``[TYPE:column,flag,key=value]`` with a value quoted only when it is empty or holds whitespace, ``,``, ``[``,
``]``, ``"`` or ``\\``; groups as ``(elements)*``; text escaping ``\\ [ ] ( )`` always, ``<`` only where it
would start ``<BOS>``/``<EOS>`` and ``-`` only where it is followed by ``>``. ``parse(str(i)) == i`` holds
for every parsed instruction ``i``.

This module is pure Python (no torch), fully typed, and every failure is an :class:`InstructionError` that
points at the span.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence, Union

from .errors import InstructionError

__all__ = ["Slot", "Text", "Marker", "Group", "Element", "Instruction", "parse", "parse_templates",
           "InstructionError"]

# ------------------------------------------------------------------------------------------------ lexical rules

_TYPE_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")

ARROW = "->"
TEMPLATE_SEPARATOR = "|||"
MARKERS = ("BOS", "EOS")
_TEXT_ESCAPABLE = frozenset("[]()\\<-")
_QUOTED_ESCAPABLE = frozenset('"\\')
_NAME_STOP = frozenset(',[]":=')  # ends a type, column or attribute-name token (as does whitespace)
_VALUE_STOP = frozenset(',[]"')  # ends a bare value (as does whitespace)

_LITERAL_BACKSLASH_HINT = "write '\\\\' for a literal backslash"


def _is_ws(ch: str) -> bool:
    """Whitespace for the instruction language: ``str.isspace()`` or any control character."""
    return ch.isspace() or unicodedata.category(ch) == "Cc"


def _display(source: str) -> str:
    """The source with every whitespace character replaced by a space, so that an error message stays on one
    line and the caret column still matches the offsets."""
    return "".join(" " if _is_ws(ch) else ch for ch in source)


def _normalize(text: str) -> str:
    """Collapse runs of whitespace to one space and strip both ends."""
    words = "".join(" " if _is_ws(ch) else ch for ch in text).split(" ")
    return " ".join(word for word in words if word)


def _escape_text(text: str) -> str:
    """Escape text so that it parses back to itself (see the module docstring for the rules)."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch in "\\[]()":
            out.append("\\" + ch)
        elif ch == "<" and text.startswith(tuple(f"<{m}>" for m in MARKERS), i):
            out.append("\\<")
        elif ch == "-" and text.startswith(">", i + 1):
            out.append("\\-")
        else:
            out.append(ch)
    return "".join(out)


def _needs_quotes(value: str) -> bool:
    return not value or any(_is_ws(ch) or ch in _VALUE_STOP or ch == "\\" for ch in value)


def _render_value(value: str) -> str:
    """A bare word when possible, else a double-quoted string with ``\\"`` and ``\\\\`` escaped."""
    if not _needs_quotes(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------------ the AST


@dataclass(frozen=True)
class Slot:
    """``[TYPE:column,attr,key=value]``. ``attrs`` keeps source order; a bare flag has the value ``True``.

    ``attr_spans`` (parallel to ``attrs``; empty when built by hand) holds the source span of each
    ``name=value`` (or ``flag``), for errors about one attribute: see :meth:`attr_span`.
    """

    type: str
    column: str | None = None
    attrs: tuple[tuple[str, Union[str, bool]], ...] = ()
    span: tuple[int, int] = field(default=(0, 0), compare=False)
    attr_spans: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    def attr(self, name: str, default=None):
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    def attr_span(self, name: str) -> tuple[int, int]:
        """Where ``name=value`` is in the source; the whole slot's span if unknown."""
        for (k, _), span in zip(self.attrs, self.attr_spans):
            if k == name:
                return span
        return self.span

    def __str__(self) -> str:  # canonical form
        parts = [self.type if self.column is None else f"{self.type}:{self.column}"]
        for name, value in self.attrs:
            parts.append(name if value is True else f"{name}={_render_value(str(value))}")
        return "[" + ",".join(parts) + "]"


@dataclass(frozen=True)
class Text:
    """Plain text between slots, whitespace-normalised (runs collapsed to one space, stripped)."""

    text: str
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def __str__(self) -> str:  # canonical form: escaped so that it parses back to the same text
        return _escape_text(self.text)


@dataclass(frozen=True)
class Marker:
    """``<BOS>`` or ``<EOS>``: where the begin/end-of-sequence token goes. When a side has any marker, the
    automatic BOS/EOS for that side is off."""

    name: str  # "BOS" | "EOS"
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def __str__(self) -> str:
        return f"<{self.name}>"


@dataclass(frozen=True)
class Group:
    """``( ... )*``: the elements repeat once per item of the list-valued columns their slots name."""

    elements: tuple["Element", ...]
    span: tuple[int, int] = field(default=(0, 0), compare=False)

    def slots(self) -> tuple[Slot, ...]:
        """The slots of the group, in order."""
        return tuple(e for e in self.elements if isinstance(e, Slot))

    def __str__(self) -> str:
        return "(" + " ".join(str(e) for e in self.elements) + ")*"


Element = Union[Slot, Text, Marker, Group]


class SlotRef(NamedTuple):
    """One slot of an instruction with its context: ``side`` is ``"encoder"`` or ``"decoder"``; ``group`` is
    the :class:`Group` holding the slot, or ``None`` at the top level of the side."""

    side: str
    slot: Slot
    group: Group | None


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction. Equality ignores spans and the source string.

    ``arrow_span`` is where the ``->`` is in ``source`` (``(0, 0)`` when built by hand).
    """

    encoder: tuple[Element, ...]
    decoder: tuple[Element, ...]
    source: str = field(default="", compare=False)
    arrow_span: tuple[int, int] = field(default=(0, 0), compare=False)

    @classmethod
    def parse(cls, s: str) -> "Instruction":
        """Same as :func:`parse`."""
        return parse(s)

    def slots(self) -> tuple[SlotRef, ...]:
        """Every slot in source order, encoder side first, including those inside groups, as
        ``SlotRef(side, slot, group_or_None)`` triples."""
        refs: list[SlotRef] = []
        for side, elements in (("encoder", self.encoder), ("decoder", self.decoder)):
            for element in elements:
                if isinstance(element, Slot):
                    refs.append(SlotRef(side, element, None))
                elif isinstance(element, Group):
                    refs.extend(SlotRef(side, s, element) for s in element.slots())
        return tuple(refs)

    @property
    def columns(self) -> frozenset[str]:
        """The column names the slots read or write (slots without a column contribute nothing)."""
        return frozenset(ref.slot.column for ref in self.slots() if ref.slot.column is not None)

    def __str__(self) -> str:  # canonical form
        encoder = " ".join(str(e) for e in self.encoder)
        decoder = " ".join(str(e) for e in self.decoder)
        return " ".join(part for part in (encoder, ARROW, decoder) if part)


# ------------------------------------------------------------------------------------------------ the parser


class _TextBuffer:
    """Characters of one text run with their source spans; :meth:`flush` turns them into a :class:`Text`."""

    def __init__(self) -> None:
        self.chars: list[tuple[str, int, int]] = []  # (character, start, end); whitespace stored as " "

    def add(self, ch: str, start: int, end: int) -> None:
        self.chars.append((ch, start, end))

    def flush(self, out: list[Element]) -> None:
        """Append the normalised text (if any) to ``out`` and empty the buffer."""
        chars, self.chars = self.chars, []
        # escaped characters are never whitespace: they were stored as themselves (no escape is whitespace)
        solid = [i for i, (ch, _, _) in enumerate(chars) if ch != " "]
        if not solid:
            return
        first, last = solid[0], solid[-1]
        text = _normalize("".join(ch for ch, _, _ in chars[first:last + 1]))
        out.append(Text(text, (chars[first][1], chars[last][2])))


class _Parser:
    """A recursive-descent parser over the characters of one instruction.

    ``origin`` and ``offset`` say where ``text`` lies in the string the user wrote (for templates joined with
    ``|||``), so that error carets point into the whole string; element spans are offsets into ``text``.
    """

    def __init__(self, text: str, origin: str | None = None, offset: int = 0) -> None:
        self.src = text
        self.n = len(text)
        self.pos = 0
        self.origin = text if origin is None else origin
        self.offset = offset

    # -- helpers

    def fail(self, message: str, start: int, end: int | None = None, hint: str = "") -> InstructionError:
        """Build the error for ``src[start:end]`` (callers ``raise`` it, which keeps control flow visible)."""
        end = start + 1 if end is None else end
        return InstructionError(message, _display(self.origin), start + self.offset, end + self.offset, hint)

    def peek(self, k: int = 0) -> str:
        """The character ``k`` places ahead, or ``""`` at the end."""
        i = self.pos + k
        return self.src[i] if i < self.n else ""

    def skip_ws(self) -> None:
        while self.pos < self.n and _is_ws(self.src[self.pos]):
            self.pos += 1

    def token(self, stop: frozenset[str]) -> tuple[str, int, int]:
        """Consume a run of characters that are neither whitespace nor in ``stop``; return it with its span."""
        start = self.pos
        while self.pos < self.n and not _is_ws(self.src[self.pos]) and self.src[self.pos] not in stop:
            self.pos += 1
        return self.src[start:self.pos], start, self.pos

    # -- instruction and sides

    def parse(self) -> Instruction:
        encoder = self.sequence(in_group=False)
        if self.pos >= self.n:
            raise self.fail("missing '->' between the encoder and the decoder side", self.n,
                            hint="an instruction is 'encoder side -> decoder side', "
                                 "e.g. '[IMAGE:img] what is this? -> [TEXT:cap]'")
        arrow = (self.pos, self.pos + 2)
        self.pos += 2
        decoder = self.sequence(in_group=False)
        if self.pos < self.n:  # stopped at another '->'
            raise self.fail("more than one '->' (an instruction has exactly one)", self.pos, self.pos + 2,
                            hint="write '\\->' for a literal '->' in text")
        return Instruction(tuple(encoder), tuple(decoder), self.src, arrow)

    def sequence(self, in_group: bool) -> list[Element]:
        """Elements up to the end, a top-level ``->`` (not consumed) or, in a group, the closing ``)``."""
        out: list[Element] = []
        text = _TextBuffer()
        while self.pos < self.n:
            ch = self.src[self.pos]
            if ch == "-" and self.peek(1) == ">":
                if in_group:
                    raise self.fail("'->' inside a group", self.pos, self.pos + 2,
                                    hint="close the group with ')*' before '->'")
                break
            if ch == ")":
                if in_group:
                    break
                end = self.pos + 2 if self.peek(1) == "*" else self.pos + 1
                raise self.fail("unbalanced group: ')' without a matching '('", self.pos, end,
                                hint="write '\\)' for a literal parenthesis")
            if ch == "]":
                raise self.fail("unbalanced bracket: ']' without a matching '['", self.pos,
                                hint="write '\\]' for a literal bracket")
            if ch == "\\":
                start = self.pos
                text.add(self.escape(), start, self.pos)
                continue
            element: Element | None = None
            if ch == "[":
                text.flush(out)
                element = self.slot()
            elif ch == "(":
                if in_group:
                    raise self.fail("nested group: groups cannot contain groups", self.pos,
                                    hint="write '\\(' for a literal parenthesis")
                text.flush(out)
                element = self.group()
            elif ch == "<":
                element = self.marker()
                if element is not None:
                    text.flush(out)
            if element is not None:
                out.append(element)
                continue
            text.add(" " if _is_ws(ch) else ch, self.pos, self.pos + 1)
            self.pos += 1
        text.flush(out)
        return out

    def escape(self) -> str:
        """A backslash escape in text; returns the literal character."""
        start = self.pos
        nxt = self.peek(1)
        if not nxt:
            raise self.fail("lone backslash at the end of the instruction", start, hint=_LITERAL_BACKSLASH_HINT)
        if nxt not in _TEXT_ESCAPABLE:
            raise self.fail(f"invalid escape '\\{nxt}' (only \\[ \\] \\( \\) \\\\ \\< \\- are escapes)",
                            start, start + 2, hint=_LITERAL_BACKSLASH_HINT)
        self.pos += 2
        return nxt

    def marker(self) -> Marker | None:
        """``<BOS>`` or ``<EOS>`` at the current position, else ``None`` (and nothing consumed)."""
        for name in MARKERS:
            literal = f"<{name}>"
            if self.src.startswith(literal, self.pos):
                start = self.pos
                self.pos += len(literal)
                return Marker(name, (start, self.pos))
        return None

    def group(self) -> Group:
        start = self.pos
        self.pos += 1
        elements = self.sequence(in_group=True)
        if self.pos >= self.n:
            raise self.fail("unbalanced group: '(' is never closed", start,
                            hint="close the group with ')*', or write '\\(' for a literal parenthesis")
        if self.peek(1) != "*":
            raise self.fail("unbalanced group: ')' must be followed by '*'", self.pos,
                            hint="a group is '( ... )*'; write '\\)' for a literal parenthesis")
        self.pos += 2
        if not elements:
            raise self.fail("empty group", start, self.pos, hint="a group holds at least one slot")
        if not any(isinstance(e, Slot) for e in elements):
            raise self.fail("group without a slot", start, self.pos, hint="a group holds at least one slot")
        return Group(tuple(elements), (start, self.pos))

    # -- slots

    def slot_is_closed(self, start: int) -> bool:
        """Whether the ``[`` at ``start`` has a ``]`` before the next ``[`` or the end. A ``"`` right after ``=``
        opens a quoted value; if such a quote never closes, answer ``True`` so the slot parser reports it."""
        i, last, n, src = start + 1, "[", self.n, self.src
        while i < n:
            ch = src[i]
            if ch == '"' and last == "=":
                i += 1
                while i < n and src[i] != '"':
                    i += 2 if src[i] == "\\" else 1
                if i >= n:
                    return True
            elif ch == "]":
                return True
            elif ch == "[":
                return False
            if not _is_ws(ch):
                last = ch
            i += 1
        return False

    def slot(self) -> Slot:
        open_ = self.pos
        if not self.slot_is_closed(open_):
            raise self.fail("unbalanced bracket: '[' is never closed", open_,
                            hint="close the slot with ']', or write '\\[' for a literal bracket")
        self.pos += 1
        self.skip_ws()
        type_, start, end = self.token(_NAME_STOP)
        if not type_:
            raise self.fail("expected a slot type after '['", self.pos,
                            hint="a slot is '[TYPE:column]'; write '\\[' for a literal bracket")
        if not _TYPE_RE.fullmatch(type_):
            upper = type_.upper()
            if _IDENT_RE.fullmatch(type_) and _TYPE_RE.fullmatch(upper):
                raise self.fail(f"slot type {type_!r} must be upper case", start, end, hint=f"write '{upper}'")
            raise self.fail(f"invalid slot type {type_!r}", start, end,
                            hint="a slot type is an upper-case name such as TEXT or IMAGE")
        column: str | None = None
        self.skip_ws()
        if self.peek() == ":":
            self.pos += 1
            self.skip_ws()
            column, start, end = self.token(_NAME_STOP)
            if not column:
                raise self.fail("expected a column name after ':'", self.pos)
            if not _COLUMN_RE.fullmatch(column):
                raise self.fail(f"invalid column name {column!r}", start, end,
                                hint="a column is letters, digits, '_' and '.', not starting with a digit")
        attrs: list[tuple[str, Union[str, bool]]] = []
        attr_spans: list[tuple[int, int]] = []
        seen: set[str] = set()
        while True:
            self.skip_ws()
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return Slot(type_, column, tuple(attrs), (open_, self.pos), tuple(attr_spans))
            if ch != ",":
                raise self.fail(f"unexpected {ch!r} in slot; expected ',' or ']'", self.pos)
            comma = self.pos
            self.pos += 1
            self.skip_ws()
            name, start, end = self.token(_NAME_STOP)
            if not name:
                if self.peek() in (",", "]"):
                    raise self.fail("empty attribute", comma, hint="remove the extra ','")
                raise self.fail(f"expected an attribute name, found {self.peek()!r}", self.pos)
            if not _IDENT_RE.fullmatch(name):
                raise self.fail(f"invalid attribute name {name!r}", start, end,
                                hint="an attribute name is letters, digits and '_', not starting with a digit")
            if name in seen:
                raise self.fail(f"duplicate attribute {name!r}", start, end,
                                hint=f"{name!r} is already given earlier in this slot")
            seen.add(name)
            value: Union[str, bool] = True
            self.skip_ws()
            if self.peek() == "=":
                self.pos += 1
                self.skip_ws()
                value = self.value()
                end = self.pos
            attrs.append((name, value))
            attr_spans.append((start, end))

    def value(self) -> str:
        """An attribute value after ``=``: a double-quoted string or a bare word."""
        if self.peek() == '"':
            return self.quoted()
        word, _, _ = self.token(_VALUE_STOP)
        if not word:
            raise self.fail("missing value after '='", self.pos,
                            hint='quote a value that holds spaces, commas, brackets or quotes; "" is empty')
        return word

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < self.n:
            ch = self.src[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(chars)
            if ch == "\\":
                nxt = self.peek(1)
                if nxt in _QUOTED_ESCAPABLE:
                    chars.append(nxt)
                    self.pos += 2
                    continue
                if nxt:
                    raise self.fail(f"invalid escape '\\{nxt}' in a quoted value", self.pos, self.pos + 2,
                                    hint='only \\" and \\\\ are escapes inside quotes; write \\\\ for a backslash')
                break  # a backslash at the very end: the quote is unterminated
            chars.append(ch)
            self.pos += 1
        raise self.fail("unterminated quoted value", start, hint="close the value with '\"'")


# ------------------------------------------------------------------------------------------------ entry points


def parse(s: str) -> Instruction:
    """Parse one instruction; raise :class:`InstructionError` (pointing at the problem) if it is malformed."""
    if not isinstance(s, str):
        raise InstructionError(f"an instruction must be a string, not {type(s).__name__}")
    return _Parser(s).parse()


def parse_templates(s: str | Sequence[str]) -> list[Instruction]:
    """Parse several instruction templates.

    A string is split on ``|||`` and each part (stripped) is parsed on its own; error carets point into the
    whole string, while each instruction's ``source`` and spans refer to its own stripped part. A list (or
    tuple) is parsed item by item, without splitting. No templates at all, or an empty one, is an error.
    """
    if isinstance(s, str):
        results: list[Instruction] = []
        offset = 0
        for part in s.split(TEMPLATE_SEPARATOR):
            lead = len(part) - len(part.lstrip())
            stripped = part.strip()
            if not stripped:
                raise InstructionError("empty template", _display(s), offset, offset + len(part),
                                       hint=f"templates are separated by '{TEMPLATE_SEPARATOR}'; remove the extra one")
            results.append(_Parser(stripped, s, offset + lead).parse())
            offset += len(part) + len(TEMPLATE_SEPARATOR)
        return results
    if not isinstance(s, (list, tuple)):
        raise InstructionError(f"templates must be a string or a list of strings, not {type(s).__name__}")
    if not s:
        raise InstructionError("no instruction templates given")
    results = []
    for i, item in enumerate(s):
        if not isinstance(item, str):
            raise InstructionError(f"template {i} must be a string, not {type(item).__name__}")
        if not item.strip():
            raise InstructionError(f"template {i} is empty")
        results.append(parse(item))
    return results
