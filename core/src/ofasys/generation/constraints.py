"""Constrained decoding as small composable state machines. Pure Python (no torch): picklable, built by plugins
at import-light time and shipped to DataLoader workers.

A :class:`Constraint` is used by the generator per (sample, beam)::

    state = c.start()
    ids = c.allowed(state)        # what may come next (see below)
    state = c.advance(state, tok) # None: tok was not allowed
    c.can_finish(state)           # may EOS come now

``allowed`` returns ``None`` (any free-text token: the generator's ``free_ids``, specials excluded), a
``frozenset`` of ids (a closed set; empty = nothing but, if ``can_finish``, EOS), or a :class:`TokenSet` (free text
minus some ids plus some ids). States are hashable and immutable. Implementations return the *same* set object for
the same state, so the generator converts each distinct set to a vocabulary mask once.

Building blocks: :class:`Fixed` (forced tokens), :class:`Block` (n tokens from an id range: 4 box bins, 64 image
codes), :class:`Trie` (closed-set answers), :class:`Free` (any text), :class:`Chain` (parts in sequence, with
epsilon moves where a part can finish) and :class:`Repeat` (Kleene star over a part)::

    Chain([Fixed(prompt), Repeat(Chain([Block(bins, 4, 4), Free(exclude=bins)]), min=1)])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Sequence

EMPTY: frozenset = frozenset()


@dataclass(frozen=True)
class TokenSet:
    """``(free_ids - exclude) | ids`` when ``free`` else ``ids``."""

    ids: frozenset = EMPTY
    free: bool = False
    exclude: frozenset = EMPTY

    def contains(self, token: int, free_ids: Any = None) -> bool:
        if token in self.ids:
            return True
        if not self.free or token in self.exclude:
            return False
        return True if free_ids is None else token in free_ids


FREE = TokenSet(free=True)


def normalize(allowed: Any) -> "frozenset | TokenSet":
    """``None`` -> :data:`FREE`; sets and other iterables -> frozenset; TokenSet/frozenset unchanged."""
    if allowed is None:
        return FREE
    if isinstance(allowed, (TokenSet, frozenset)):
        return allowed
    return frozenset(allowed)


def union(a: Any, b: Any) -> "frozenset | TokenSet":
    """Union of two ``allowed`` results."""
    a, b = normalize(a), normalize(b)
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a | b if b - a else a
    if isinstance(a, frozenset):
        a, b = b, a
    if isinstance(b, frozenset):  # a is a TokenSet
        return TokenSet(a.ids | b, a.free, a.exclude) if b - a.ids else a
    if not a.free:
        a, b = b, a
    if not b.free:
        return TokenSet(a.ids | b.ids, True, a.exclude)
    return TokenSet(a.ids | b.ids, True, a.exclude & b.exclude)


def _simplify(a: "frozenset | TokenSet") -> Any:
    if isinstance(a, TokenSet) and not a.free:
        return a.ids
    if isinstance(a, TokenSet) and a == FREE:
        return None
    return a


class Constraint:
    """Base class: a state machine over token ids (see the module docstring)."""

    def start(self) -> Hashable:
        raise NotImplementedError

    def allowed(self, state) -> Any:
        raise NotImplementedError

    def advance(self, state, token: int):
        raise NotImplementedError

    def can_finish(self, state) -> bool:
        raise NotImplementedError

    def accepts(self, tokens: Iterable[int]) -> bool:
        """Whether the whole sequence (without EOS) is valid and may end."""
        state = self.start()
        for t in tokens:
            state = self.advance(state, int(t))
            if state is None:
                return False
        return self.can_finish(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Fixed(Constraint):
    """Exactly these tokens (plain text on the decoder side; a forced prefix when first in a :class:`Chain`)."""

    def __init__(self, ids: Sequence[int]):
        self.ids = tuple(int(i) for i in ids)
        self._sets = tuple(frozenset((i,)) for i in self.ids)

    def start(self):
        return 0

    def allowed(self, state):
        return self._sets[state] if state < len(self.ids) else EMPTY

    def advance(self, state, token):
        return state + 1 if state < len(self.ids) and token == self.ids[state] else None

    def can_finish(self, state):
        return state == len(self.ids)

    def __repr__(self):
        return f"Fixed({list(self.ids)})"


class Block(Constraint):
    """Between ``min_len`` and ``max_len`` tokens from ``ids`` (e.g. exactly 4 box bins:
    ``Block(vocab.block("bin").ids(), 4, 4)``)."""

    def __init__(self, ids: "range | Iterable[int]", min_len: int = 1, max_len: int | None = None):
        self.members = ids if isinstance(ids, range) else frozenset(int(i) for i in ids)
        self.set = frozenset(self.members)
        self.min_len = int(min_len)
        self.max_len = int(max_len) if max_len is not None else self.min_len
        if self.max_len < self.min_len:
            raise ValueError(f"Block max_len ({self.max_len}) < min_len ({self.min_len})")

    def start(self):
        return 0

    def allowed(self, state):
        return self.set if state < self.max_len else EMPTY

    def advance(self, state, token):
        return state + 1 if state < self.max_len and token in self.members else None

    def can_finish(self, state):
        return self.min_len <= state <= self.max_len

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("set")
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self.set = frozenset(self.members)

    def __repr__(self):
        return f"Block({len(self.set)} ids, {self.min_len}, {self.max_len})"


class Trie(Constraint):
    """One of a closed set of token sequences (closed-set answers: ``Trie([tok("yes"), tok("no")])``)."""

    def __init__(self, sequences: Iterable[Sequence[int]]):
        self.children: list[dict[int, int]] = [{}]
        terminal = set()
        for seq in sequences:
            node = 0
            for t in seq:
                t = int(t)
                nxt = self.children[node].get(t)
                if nxt is None:
                    nxt = len(self.children)
                    self.children.append({})
                    self.children[node][t] = nxt
                node = nxt
            terminal.add(node)
        self.terminal = frozenset(terminal)
        self._sets = [frozenset(c) for c in self.children]

    def start(self):
        return 0

    def allowed(self, state):
        return self._sets[state]

    def advance(self, state, token):
        return self.children[state].get(token)

    def can_finish(self, state):
        return state in self.terminal

    def __repr__(self):
        return f"Trie({len(self.terminal)} sequences)"


class Free(Constraint):
    """Any free text (the generator's free ids: specials excluded) except ``exclude``; may finish any time.
    ``max_len`` bounds its length."""

    def __init__(self, exclude: Iterable[int] = (), max_len: int | None = None):
        self.exclude = frozenset(int(i) for i in exclude)
        self.max_len = max_len
        self._allowed = None if not self.exclude else TokenSet(EMPTY, True, self.exclude)

    def start(self):
        return 0

    def allowed(self, state):
        if self.max_len is not None and state >= self.max_len:
            return EMPTY
        return self._allowed

    def advance(self, state, token):
        if token in self.exclude or (self.max_len is not None and state >= self.max_len):
            return None
        return state + 1 if self.max_len is not None else 0

    def can_finish(self, state):
        return True

    def __repr__(self):
        return f"Free(exclude={len(self.exclude)} ids)"


class _NFA(Constraint):
    """A constraint whose state is a frozenset of sub-states with epsilon closure; results are memoised per
    state (the memo is dropped when pickled)."""

    def _closure(self, items: set) -> frozenset:
        raise NotImplementedError

    def _step(self, item, token: int) -> list:
        raise NotImplementedError

    def _allowed_item(self, item) -> Any:
        raise NotImplementedError

    def _final(self, item) -> bool:
        raise NotImplementedError

    def _memo(self) -> dict:
        m = self.__dict__.get("_m")
        if m is None:
            m = self.__dict__["_m"] = {"a": {}, "s": {}, "f": {}}
        return m

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("_m", None)
        return d

    def allowed(self, state):
        memo = self._memo()["a"]
        r = memo.get(state, memo)
        if r is memo:
            acc: Any = EMPTY
            for item in state:
                a = self._allowed_item(item)
                if a is not EMPTY:
                    acc = union(acc, a)
            r = memo[state] = _simplify(normalize(acc))
        return r

    def advance(self, state, token):
        memo = self._memo()["s"]
        key = (state, token)
        r = memo.get(key, memo)
        if r is memo:
            nxt: set = set()
            for item in state:
                nxt.update(self._step(item, token))
            r = self._closure(nxt) if nxt else None
            if len(memo) < 200_000:
                memo[key] = r
        return r

    def can_finish(self, state):
        memo = self._memo()["f"]
        r = memo.get(state)
        if r is None:
            r = memo[state] = any(self._final(i) for i in state)
        return r


class Chain(_NFA):
    """``parts`` in sequence. Where a part can finish, the next part may start (epsilon move), so
    ``Chain([Free(), Block(bins, 4, 4)])`` allows text then 4 bins. The state is a frozenset of
    ``(part index, sub-state)``; ``(len(parts), None)`` marks the end."""

    def __init__(self, parts: Sequence[Constraint]):
        self.parts = tuple(p if p is not None else Free() for p in parts)

    def _closure(self, items):
        n = len(self.parts)
        out = set(items)
        todo = list(items)
        while todo:
            i, sub = todo.pop()
            if i < n and self.parts[i].can_finish(sub):
                nxt = (i + 1, self.parts[i + 1].start() if i + 1 < n else None)
                if nxt not in out:
                    out.add(nxt)
                    todo.append(nxt)
        return frozenset(out)

    def start(self):
        return self._closure({(0, self.parts[0].start() if self.parts else None)})

    def _allowed_item(self, item):
        i, sub = item
        return self.parts[i].allowed(sub) if i < len(self.parts) else EMPTY

    def _step(self, item, token):
        i, sub = item
        if i >= len(self.parts):
            return ()
        s = self.parts[i].advance(sub, token)
        return () if s is None else ((i, s),)

    def _final(self, item):
        return item[0] == len(self.parts)

    def split(self, tokens: Sequence[int]) -> list[list[int]] | None:
        """Assign the tokens of an accepted sequence to the parts (one list per part; the first valid parse),
        or ``None`` when the chain does not accept the sequence. Lets a caller hand each output slot its ids."""
        n = len(self.parts)

        def close(paths: dict) -> dict:
            out = dict(paths)
            todo = list(paths)
            while todo:
                it = todo.pop(0)
                i, sub = it
                if i < n and self.parts[i].can_finish(sub):
                    nxt = (i + 1, self.parts[i + 1].start() if i + 1 < n else None)
                    if nxt not in out:
                        out[nxt] = out[it]
                        todo.append(nxt)
            return out

        paths = close({(0, self.parts[0].start() if n else None): ()})
        for t in tokens:
            nxt: dict = {}
            for (i, sub), path in paths.items():
                if i < n:
                    s = self.parts[i].advance(sub, int(t))
                    if s is not None and (i, s) not in nxt:
                        nxt[(i, s)] = path + (i,)
            if not nxt:
                return None
            paths = close(nxt)
        end = paths.get((n, None))
        if end is None:
            return None
        out: list[list[int]] = [[] for _ in range(n)]
        for t, i in zip(tokens, end):
            out[i].append(int(t))
        return out

    def __repr__(self):
        return f"Chain({list(self.parts)})"


class Repeat(_NFA):
    """``part`` repeated ``min``..``max`` times (``max=None``: unbounded), e.g. a detection output
    ``( [BOX] [TEXT] )*`` as ``Repeat(Chain([Block(bins, 4, 4), Free(exclude=bins)]))``. The state is a frozenset
    of ``(completed repetitions, sub-state or None between repetitions)``; counts are capped at ``min`` when
    unbounded."""

    def __init__(self, part: Constraint, min: int = 0, max: int | None = None):  # noqa: A002 - brief's names
        self.part = part
        self.min = int(min)
        self.max = None if max is None else int(max)
        if self.max is not None and self.max < self.min:
            raise ValueError(f"Repeat max ({self.max}) < min ({self.min})")
        self._cap = self.max if self.max is not None else self.min

    def _closure(self, items):
        out = set(items)
        todo = list(items)
        p0 = self.part.start()
        while todo:
            c, sub = todo.pop()
            nxt = None
            if sub is not None and self.part.can_finish(sub):
                nxt = (min(c + 1, self._cap), None)
            elif sub is None and (self.max is None or c < self.max) and self.part.can_finish(p0) \
                    and c < self._cap:
                nxt = (c + 1, None)  # an empty repetition
            if nxt is not None and nxt not in out:
                out.add(nxt)
                todo.append(nxt)
        return frozenset(out)

    def start(self):
        return self._closure({(0, None)})

    def _allowed_item(self, item):
        c, sub = item
        if sub is None:
            if self.max is not None and c >= self.max:
                return EMPTY
            return self.part.allowed(self.part.start())
        return self.part.allowed(sub)

    def _step(self, item, token):
        c, sub = item
        if sub is None:
            if self.max is not None and c >= self.max:
                return ()
            sub = self.part.start()
        s = self.part.advance(sub, token)
        return () if s is None else ((c, s),)

    def _final(self, item):
        c, sub = item
        return sub is None and c >= self.min

    def __repr__(self):
        return f"Repeat({self.part!r}, min={self.min}, max={self.max})"


__all__ = ["Block", "Chain", "Constraint", "EMPTY", "FREE", "Fixed", "Free", "Repeat", "TokenSet", "Trie",
           "normalize", "union"]
