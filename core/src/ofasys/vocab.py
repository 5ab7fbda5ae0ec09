"""The shared vocabulary: special tokens, then the blocks plugins contribute, sorted by block name.

Ids depend only on the set of blocks (never on plugin load order), and the vocabulary is saved with every
checkpoint. Loading a checkpoint whose vocabulary differs from the one the installed plugins build either
remaps embedding rows by token (:meth:`Vocabulary.remap_from`) or fails with a :class:`CheckpointError` that
names the missing tokens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .errors import CheckpointError
from .spec import VocabBlock

SPECIALS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")


@dataclass(frozen=True)
class BlockRange:
    name: str
    start: int
    size: int
    digest: str

    @property
    def stop(self) -> int:
        return self.start + self.size

    def __contains__(self, token_id: int) -> bool:
        return self.start <= token_id < self.stop

    def ids(self) -> range:
        return range(self.start, self.stop)


def _digest(tokens) -> str:
    h = hashlib.sha256()
    for t in tokens:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


class Vocabulary:
    """Token ids shared by every slot of every task of one model."""

    pad, bos, eos, unk, mask = range(5)

    def __init__(self, blocks: list[VocabBlock] | tuple[VocabBlock, ...] = ()):
        seen: dict[str, VocabBlock] = {}
        for b in blocks:
            if b.name in seen and seen[b.name].tokens != b.tokens:
                raise ValueError(f"two different vocabulary blocks are named {b.name!r}")
            seen[b.name] = b
        self._blocks: dict[str, VocabBlock] = {n: seen[n] for n in sorted(seen)}
        self._ranges: dict[str, BlockRange] = {}
        start = len(SPECIALS)
        for name, b in self._blocks.items():
            self._ranges[name] = BlockRange(name, start, len(b.tokens), _digest(b.tokens))
            start += len(b.tokens)
        self._size = start
        self._index: dict[str, int] | None = None

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return self._size

    def padded_size(self, multiple: int = 8) -> int:
        """Rows of the embedding matrix: the size rounded up for efficient matmuls."""
        return (self._size + multiple - 1) // multiple * multiple

    @property
    def block_names(self) -> list[str]:
        return list(self._ranges)

    def has_block(self, name: str) -> bool:
        return name in self._ranges

    def block(self, name: str) -> BlockRange:
        try:
            return self._ranges[name]
        except KeyError:
            raise KeyError(f"vocabulary has no block {name!r}; it has {', '.join(self._ranges) or 'none'}") from None

    def token(self, token_id: int) -> str:
        if token_id < len(SPECIALS):
            return SPECIALS[token_id]
        for name, r in self._ranges.items():
            if token_id in r:
                return f"<{name}>{self._blocks[name].tokens[token_id - r.start]}"
        return SPECIALS[self.unk]

    def id(self, token: str) -> int:
        """Id of a full token string (``"<pad>"`` or ``"<bin>17"``); ``unk`` when absent."""
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.tokens())}
        return self._index.get(token, self.unk)

    def tokens(self) -> list[str]:
        out = list(SPECIALS)
        for name, b in self._blocks.items():
            out.extend(f"<{name}>{t}" for t in b.tokens)
        return out

    def block_of(self, token_id: int) -> str | None:
        for name, r in self._ranges.items():
            if token_id in r:
                return name
        return None

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict:
        return {"specials": list(SPECIALS),
                "blocks": [{"name": n, "start": r.start, "size": r.size, "digest": r.digest,
                            "tokens": list(self._blocks[n].tokens)} for n, r in self._ranges.items()]}

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        if list(data.get("specials", [])) != list(SPECIALS):
            raise CheckpointError("the saved vocabulary uses different special tokens than this ofasys")
        blocks = []
        for b in data["blocks"]:
            tokens = tuple(b["tokens"])
            if len(tokens) != b["size"] or _digest(tokens) != b["digest"]:
                raise CheckpointError(f"vocabulary block {b['name']!r} in the checkpoint is corrupt (size/digest)")
            blocks.append(VocabBlock(b["name"], tokens))
        vocab = cls(blocks)
        for b in data["blocks"]:
            if vocab.block(b["name"]).start != b["start"]:
                raise CheckpointError(f"vocabulary block {b['name']!r} in the checkpoint is out of order")
        return vocab

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([(r.name, r.start, r.digest) for r in self._ranges.values()])
                              .encode()).hexdigest()[:16]

    def same_as(self, other: "Vocabulary") -> bool:
        return self.fingerprint() == other.fingerprint()

    def remap_from(self, old: "Vocabulary") -> list[int]:
        """For each id of this vocabulary, the id of the same token in ``old`` (``-1`` when ``old`` lacks it).

        Used to move embedding rows when a checkpoint was saved with a different layout. Raises
        :class:`CheckpointError` when a block both have differs in content.
        """
        for name, r in self._ranges.items():
            if old.has_block(name) and old.block(name).digest != r.digest:
                raise CheckpointError(
                    f"vocabulary block {name!r} differs between the checkpoint and the installed plugin "
                    f"(digest {old.block(name).digest} vs {r.digest}); the plugin's vocabulary changed. "
                    "Install the plugin version the checkpoint was trained with.")
        mapping = list(range(len(SPECIALS)))
        for name, r in self._ranges.items():
            if old.has_block(name):
                o = old.block(name)
                mapping.extend(range(o.start, o.stop))
            else:
                mapping.extend([-1] * r.size)
        return mapping
