"""The core's generator for token outputs: greedy, batched beam search and sampling, with per-(sample, beam)
constraint masks and the model's key/value cache.

Per step the Python work is proportional to batch x beam (one constraint-state lookup per row; each distinct
allowed set is turned into a vocabulary mask once and cached); unconstrained decoding does no per-row Python work.
Log-probabilities are those of the full softmax, masked (not renormalised) by the constraints, so scores are the
model's probabilities of the emitted sequences; sampling draws from the renormalised masked distribution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.adaptor import EncoderBatch, EncoderOut
from ..vocab import SPECIALS
from . import Generator
from .constraints import TokenSet, normalize

NEG_INF = float("-inf")


class _Dead:
    """State of a row that took a token its constraint did not allow (only -inf rows ever do)."""

    def __repr__(self):
        return "DEAD"


DEAD = _Dead()


@dataclass
class Hypothesis:
    """One decoded sequence: ``tokens`` without bos/eos (forced ``Fixed`` tokens included) and ``score``: the
    sum of token log-probabilities (eos included when emitted) divided by ``length ** len_penalty``."""

    tokens: list[int]
    score: float


def _get(batch: Any, name: str, default: Any = None) -> Any:
    if isinstance(batch, dict):
        return batch.get(name, default)
    return getattr(batch, name, default)


class _Masker:
    """Turns constraint states into a (N, V) bool mask of allowed next tokens; EOS allowed where the state can
    finish. Each distinct allowed set becomes one row of a cached mask bank."""

    def __init__(self, V: int, free: Tensor, eos: int):
        self.V, self.free, self.eos = V, free, eos
        self.keys: dict = {}
        self.rows: list[Tensor] = []
        self.bank: Tensor | None = None
        self.free_eos = free.clone()
        self.free_eos[eos] = True
        # unconstrained rows: the few disallowed columns are filled directly (no (N, V) mask pass)
        self.blocked = (~free).nonzero().squeeze(1)
        self.blocked_eos_ok = (~self.free_eos).nonzero().squeeze(1)

    def apply_free(self, lprobs: Tensor, min_ok: bool) -> None:
        ids = self.blocked_eos_ok if min_ok else self.blocked
        if ids.numel() * 4 <= self.V:
            lprobs.index_fill_(1, ids, NEG_INF)
        else:
            lprobs.masked_fill_(~(self.free_eos if min_ok else self.free).unsqueeze(0), NEG_INF)

    def _ids(self, ids) -> Tensor:
        return torch.tensor([i for i in ids if 0 <= i < self.V], dtype=torch.long, device=self.free.device)

    def _row(self, allowed) -> int:
        if isinstance(allowed, (set, list, tuple)):  # third-party constraints may return plain sets
            allowed = frozenset(allowed)
        idx = self.keys.get(allowed)
        if idx is None:
            if allowed is DEAD:
                row = torch.zeros_like(self.free)
            else:
                a = normalize(allowed)
                if isinstance(a, TokenSet):
                    row = self.free.clone() if a.free else torch.zeros_like(self.free)
                    if a.free and a.exclude:
                        row[self._ids(a.exclude)] = False
                    if a.ids:
                        row[self._ids(a.ids)] = True
                else:
                    row = torch.zeros_like(self.free)
                    if a:
                        row[self._ids(a)] = True
                row[self.eos] = False
            idx = self.keys[allowed] = len(self.rows)
            self.rows.append(row)
            self.bank = None
        return idx

    def __call__(self, constraints: list, states: list, min_ok: bool, force_eos_only: bool = False) -> Tensor:
        idx, fin = [], []
        for c, s in zip(constraints, states):
            if s is DEAD:
                idx.append(self._row(DEAD))
                fin.append(False)
            elif c is None:
                idx.append(self._row(None))
                fin.append(True)
            else:
                idx.append(self._row(c.allowed(s)))
                fin.append(bool(c.can_finish(s)))
        if self.bank is None:
            self.bank = torch.stack(self.rows)
        dev = self.free.device
        m = self.bank[torch.tensor(idx, device=dev)]
        m[:, self.eos] = torch.tensor(fin, device=dev) & min_ok
        stuck = ~m.any(1)
        if bool(stuck.any()):  # nothing allowed (dead end, or min_len with nothing else): let it end
            m[stuck, self.eos] = True
        return m


class SequenceGenerator:
    """Token decoding for one output slot.

    :param beam_size: 1 = greedy (or the number of samples drawn when ``sampling``), >1 = beam search.
    :param max_len: most tokens generated (eos excluded); a hypothesis still open then ends there.
    :param min_len: eos is not allowed before this many tokens (unless nothing else is allowed).
    :param len_penalty: scores are divided by ``length ** len_penalty`` (length counts the eos).
    :param no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
    :param sampling: sample instead of argmax/beam (``temperature``, ``top_k``, ``top_p``); draws
        ``max(beam_size, return_n_best)`` independent samples per input, returned best first.
    :param use_cache: use the model's key/value cache (False recomputes the whole prefix every step).
    :param return_n_best: hypotheses returned per sample (at most ``beam_size`` for beam search).
    :param seed: seeds the sampling generator (reproducible sampling).
    """

    def __init__(self, beam_size: int = 1, max_len: int = 64, min_len: int = 1, len_penalty: float = 1.0,
                 no_repeat_ngram_size: int = 0, sampling: bool = False, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, use_cache: bool = True, return_n_best: int = 1, seed: int | None = None):
        self.beam_size = int(beam_size)
        self.max_len = int(max_len)
        self.min_len = int(min_len)
        self.len_penalty = float(len_penalty)
        self.no_repeat_ngram_size = int(no_repeat_ngram_size)
        self.sampling = bool(sampling)
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.use_cache = bool(use_cache)
        self.return_n_best = int(return_n_best)
        self.seed = seed
        if self.beam_size < 1 or self.max_len < 1 or self.return_n_best < 1:
            raise ValueError("beam_size, max_len and return_n_best must be >= 1")
        if not self.sampling and self.return_n_best > self.beam_size:
            raise ValueError(f"return_n_best ({self.return_n_best}) > beam_size ({self.beam_size})")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")

    _FIELDS = ("beam_size", "max_len", "min_len", "len_penalty", "no_repeat_ngram_size", "sampling", "temperature",
               "top_k", "top_p", "use_cache", "return_n_best", "seed")

    def options(self) -> dict:
        return {k: getattr(self, k) for k in self._FIELDS}

    def replace(self, **options) -> "SequenceGenerator":
        """A copy with some options changed."""
        unknown = set(options) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"unknown generation options: {sorted(unknown)}")
        return SequenceGenerator(**{**self.options(), **options})

    def as_generator(self, bos: int = 1, eos: int = 2, pad: int = 0, free_ids_mask: Any = None) -> "TokenGenerator":
        """This generator behind the :class:`~ofasys.generation.Generator` protocol."""
        return TokenGenerator(self, bos, eos, pad, free_ids_mask)

    # ------------------------------------------------------------------ entry point
    def generate(self, model, enc_batch: EncoderBatch | EncoderOut, constraints: Sequence | None = None,
                 bos: int = 1, eos: int = 2, pad: int = 0, free_ids_mask: Any = None) -> list[list[Hypothesis]]:
        """Decode every sample of ``enc_batch`` (an EncoderBatch, or an EncoderOut already computed).

        :param constraints: per sample a :class:`~ofasys.generation.constraints.Constraint` or ``None`` (free
            text); a forced prefix is a ``Fixed`` part at the start of a ``Chain``.
        :param free_ids_mask: the ids free text may use: a (V,) bool tensor, an iterable of ids, a
            :class:`~ofasys.vocab.Vocabulary` (its non-special ids), or ``None`` (every id but the specials).
        :returns: per sample its hypotheses, best first (``return_n_best`` of them at most).
        """
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                enc = enc_batch if isinstance(enc_batch, EncoderOut) else model.encode(enc_batch)
                B = len(enc)
                cons = list(constraints) if constraints is not None else [None] * B
                if len(cons) != B:
                    raise ValueError(f"{len(cons)} constraints for {B} samples")
                ctx = dict(model=model, enc=enc, cons=cons, bos=bos, eos=eos, pad=pad, free_ids_mask=free_ids_mask)
                if self.sampling or self.beam_size == 1:
                    return self._independent(**ctx)
                return self._beam(**ctx)
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ helpers
    def _free_mask(self, free_ids_mask, V: int, dev, specials: Sequence[int]) -> Tensor:
        if isinstance(free_ids_mask, Tensor):
            m = free_ids_mask.to(dev).bool().clone()
            if m.numel() < V:
                m = torch.cat([m, m.new_zeros(V - m.numel())])
            m = m[:V]
        else:
            m = torch.zeros(V, dtype=torch.bool, device=dev)
            if free_ids_mask is None:
                m[len(SPECIALS):] = True
            elif hasattr(free_ids_mask, "block_names") and hasattr(free_ids_mask, "__len__"):  # a Vocabulary
                m[len(SPECIALS):min(V, len(free_ids_mask))] = True
            else:
                ids = [i for i in free_ids_mask if 0 <= i < V]
                if ids:
                    m[torch.tensor(ids, device=dev)] = True
        m[list(specials)] = False
        return m

    def _step(self, model, seq: Tensor, t: int, enc: EncoderOut, cache) -> Tensor:
        if cache is not None:
            h = model.decode(seq[:, t:t + 1], enc, cache)
        else:
            h = model.decode(seq[:, :t + 1], enc)
        return F.log_softmax(model.logits(h[:, -1]).float(), dim=-1)

    def _mask(self, lprobs: Tensor, masker: _Masker, cons, states, t: int, constrained: bool, seq: Tensor) -> Tensor:
        min_ok = t >= self.min_len
        if constrained:
            lprobs.masked_fill_(~masker(cons, states, min_ok), NEG_INF)
        else:
            masker.apply_free(lprobs, min_ok)
        n = self.no_repeat_ngram_size
        if n > 0 and t >= n:
            gen = seq[:, 1:t + 1]
            windows = gen.unfold(1, n, 1)  # (N, t - n + 1, n)
            prefix = gen[:, t - n + 1:]
            match = (windows[:, :, :-1] == prefix.unsqueeze(1)).all(-1)
            ban = torch.zeros_like(lprobs).scatter_add_(1, windows[:, :, -1], match.to(lprobs.dtype)) > 0
            lprobs = lprobs.masked_fill(ban, NEG_INF)
            # a row left with nothing (all banned) may still end
            stuck = torch.isinf(lprobs).all(1)
            if bool(stuck.any()):
                lprobs[stuck, masker.eos] = 0.0
        return lprobs

    def _advance(self, cons, states, toks: list[int], skip: list[bool]) -> None:
        for r, c in enumerate(cons):
            if c is None or skip[r] or states[r] is DEAD:
                continue
            s = c.advance(states[r], toks[r])
            states[r] = DEAD if s is None else s

    def _norm(self, score: float, length: int) -> float:
        return score / (max(1, length) ** self.len_penalty)

    def _sample(self, lprobs: Tensor, rng) -> Tensor:
        logits = lprobs / self.temperature
        if self.top_k > 0 and self.top_k < logits.size(-1):
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, NEG_INF)
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            remove = (probs.cumsum(-1) - probs) > self.top_p
            remove[:, 0] = False
            sorted_logits = sorted_logits.masked_fill(remove, NEG_INF)
            logits = torch.full_like(logits, NEG_INF).scatter(1, order, sorted_logits)
        probs = logits.softmax(-1)
        return torch.multinomial(probs, 1, generator=rng).squeeze(1)

    # ------------------------------------------------------------------ greedy / sampling
    def _independent(self, model, enc, cons, bos, eos, pad, free_ids_mask):
        """Greedy decoding, or ``n`` independent samples per input. Samples whose rows have all ended leave the
        batch (their rows, cache entries and encoder states are dropped)."""
        B = len(enc)
        n = max(self.beam_size, self.return_n_best) if self.sampling else 1
        N = B * n
        dev = enc.hidden.device
        alive = list(range(B))
        row_cons = [c for c in cons for _ in range(n)]
        constrained = any(c is not None for c in row_cons)
        states = [c.start() if c is not None else 0 for c in row_cons]
        seq = torch.full((N, self.max_len + 1), pad, dtype=torch.long, device=dev)
        seq[:, 0] = bos
        scores = torch.zeros(N, device=dev)
        done = torch.zeros(N, dtype=torch.bool, device=dev)
        lengths = torch.full((N,), self.max_len, dtype=torch.long, device=dev)
        cache = model.new_cache(self.max_len + 1) if self.use_cache else None
        rng = None
        if self.sampling:
            rng = torch.Generator(device=dev)
            rng.manual_seed(self.seed if self.seed is not None else torch.seed())
        results: list[list[Hypothesis]] = [[] for _ in range(B)]

        def collect(samples: list[int]) -> None:
            seq_l, len_l, sc_l, done_l = seq.tolist(), lengths.tolist(), scores.tolist(), done.tolist()
            for b in samples:
                for r in range(b * n, (b + 1) * n):
                    L = len_l[r]
                    # length counts the eos when one was emitted
                    results[alive[b]].append(Hypothesis(seq_l[r][1:1 + L],
                                                        self._norm(sc_l[r], L + int(done_l[r]))))

        masker = None
        for t in range(self.max_len):
            lprobs = self._step(model, seq, t, enc, cache)
            if masker is None:
                masker = _Masker(lprobs.size(-1), self._free_mask(free_ids_mask, lprobs.size(-1), dev,
                                                                  (bos, eos, pad)), eos)
            lprobs = self._mask(lprobs, masker, row_cons, states, t, constrained, seq)
            if self.sampling:
                tok = self._sample(lprobs, rng)
                tok_lp = lprobs.gather(1, tok.unsqueeze(1)).squeeze(1)
            else:  # max gives the first maximum like argmax, with its value, and is 3x faster on CPU
                tok_lp, tok = lprobs.max(-1)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            scores = scores + torch.where(done, torch.zeros_like(tok_lp), tok_lp)
            seq[:, t + 1] = tok
            new_eos = (tok == eos) & ~done
            lengths = torch.where(new_eos, torch.full_like(lengths, t), lengths)
            done = done | new_eos
            if constrained:
                self._advance(row_cons, states, tok.tolist(), done.tolist())
            if t + 1 == self.max_len:
                break
            finished = done.view(-1, n).all(1)
            if bool(finished.any()):
                fin = finished.tolist()
                collect([b for b, f in enumerate(fin) if f])
                keep = [b for b, f in enumerate(fin) if not f]
                if not keep:
                    alive = []
                    break
                keep_t = torch.tensor(keep, device=dev)
                rows = (keep_t.unsqueeze(1) * n + torch.arange(n, device=dev)).view(-1)
                seq, scores, done, lengths = seq[rows], scores[rows], done[rows], lengths[rows]
                rl = rows.tolist()
                row_cons = [row_cons[r] for r in rl]
                states = [states[r] for r in rl]
                alive = [alive[b] for b in keep]
                enc = enc.index_select(keep_t)
                if cache is not None:
                    model.reorder_cache(cache, rows, src_index=keep_t)
        collect(list(range(len(alive))))
        out = []
        for hyps in results:
            hyps.sort(key=lambda h: -h.score)
            out.append(hyps[:self.return_n_best])
        return out

    # ------------------------------------------------------------------ beam search
    def _beam(self, model, enc, cons, bos, eos, pad, free_ids_mask):
        """Batched beam search: all samples x beams in one tensor; per step the 2K best candidates of each
        sample; an eos among the top K finalises a hypothesis; a sample is done once it has K finished
        hypotheses (or no live beam), and then leaves the batch."""
        B, K = len(enc), self.beam_size
        N = B * K
        dev = enc.hidden.device
        alive = list(range(B))
        row_cons = [c for c in cons for _ in range(K)]
        constrained = any(c is not None for c in row_cons)
        states: list = [c.start() if c is not None else 0 for c in row_cons]
        seq = torch.full((N, self.max_len + 1), pad, dtype=torch.long, device=dev)
        seq[:, 0] = bos
        beam_scores = torch.zeros(B, K, device=dev)
        beam_scores[:, 1:] = NEG_INF  # all beams start identical: expand only the first
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        cache = model.new_cache(self.max_len + 1) if self.use_cache else None
        cand_pos = torch.arange(2 * K, device=dev).unsqueeze(0)
        masker = None
        for t in range(self.max_len):
            lprobs = self._step(model, seq, t, enc, cache)
            V = lprobs.size(-1)
            if masker is None:
                masker = _Masker(V, self._free_mask(free_ids_mask, V, dev, (bos, eos, pad)), eos)
            lprobs = self._mask(lprobs, masker, row_cons, states, t, constrained, seq)
            cand = lprobs.add_(beam_scores.view(N, 1)).view(B, K * V)
            top_scores, top_idx = cand.topk(2 * K, dim=1)
            beam_idx = torch.div(top_idx, V, rounding_mode="floor")
            toks = top_idx - beam_idx * V
            is_eos = (toks == eos) & torch.isfinite(top_scores)
            if bool(is_eos[:, :K].any()):
                for b, c in is_eos[:, :K].nonzero().tolist():
                    hyps = finished[alive[b]]
                    if len(hyps) < K:
                        row = b * K + int(beam_idx[b, c])
                        hyps.append(Hypothesis(seq[row, 1:t + 1].tolist(), self._norm(float(top_scores[b, c]), t + 1)))
            # next beams: the best K candidates that are not eos
            key = is_eos.long() * (2 * K) + cand_pos
            act = key.topk(K, dim=1, largest=False).indices
            new_scores = top_scores.gather(1, act)
            row_index = (torch.arange(B, device=dev).unsqueeze(1) * K + beam_idx.gather(1, act)).view(N)
            new_toks = toks.gather(1, act).view(N)
            # samples that are done (K finished hypotheses, or no live beam left) leave the batch
            no_live = (~torch.isfinite(new_scores[:, 0])).tolist()
            keep = [b for b in range(B) if not no_live[b] and len(finished[alive[b]]) < K]
            src_index = None
            if len(keep) < B:
                if not keep:
                    alive = []
                    break
                src_index = torch.tensor(keep, device=dev)
                rows = (src_index.unsqueeze(1) * K + torch.arange(K, device=dev)).view(-1)
                row_index, new_toks, new_scores = row_index[rows], new_toks[rows], new_scores[src_index]
                alive = [alive[b] for b in keep]
                B, N = len(keep), len(keep) * K
                enc = enc.index_select(src_index)
            seq = seq.index_select(0, row_index)
            seq[:, t + 1] = new_toks
            beam_scores = new_scores
            if cache is not None:
                model.reorder_cache(cache, row_index, src_index=src_index)
            ri = row_index.tolist()
            if src_index is not None:
                row_cons = [row_cons[i] for i in ri]
            if constrained:
                states = [states[i] for i in ri]
                dead = (~torch.isfinite(new_scores.view(N))).tolist()
                for r in range(N):
                    if dead[r]:
                        states[r] = DEAD
                self._advance(row_cons, states, new_toks.tolist(), dead)
        # max_len reached: the open beams of the samples still running end there (no eos)
        if alive:
            sc = beam_scores.view(N).tolist()
            seq_l = seq.tolist()
            for b, ob in enumerate(alive):
                for j in range(K):
                    r = b * K + j
                    if sc[r] != NEG_INF and len(finished[ob]) < 2 * K:
                        finished[ob].append(Hypothesis(seq_l[r][1:self.max_len + 1], self._norm(sc[r], self.max_len)))
        out = []
        for hyps in finished:
            hyps.sort(key=lambda h: -h.score)
            out.append(hyps[:self.return_n_best])
        return out


class TokenGenerator(Generator):
    """:class:`SequenceGenerator` behind the :class:`~ofasys.generation.Generator` protocol: predictions are the
    best hypothesis' ids per sample. ``batch`` is an EncoderBatch / EncoderOut, or carries ``encoder_out`` or
    ``encoder`` and optionally ``constraints`` (per sample). ``options`` override the generator's settings for one
    call."""

    def __init__(self, generator: SequenceGenerator | None = None, bos: int = 1, eos: int = 2, pad: int = 0,
                 free_ids_mask: Any = None):
        self.generator = generator or SequenceGenerator()
        self.bos, self.eos, self.pad = bos, eos, pad
        self.free_ids_mask = free_ids_mask

    @classmethod
    def from_vocab(cls, vocab, **options) -> "TokenGenerator":
        return cls(SequenceGenerator(**options), vocab.bos, vocab.eos, vocab.pad, free_ids_mask=vocab)

    def generate(self, model, batch, constraints: Sequence | None = None, **options) -> list[list[int]]:
        return [h[0].tokens if h else [] for h in self.generate_hypotheses(model, batch, constraints, **options)]

    def generate_hypotheses(self, model, batch, constraints: Sequence | None = None,
                            **options) -> list[list[Hypothesis]]:
        if isinstance(batch, (EncoderBatch, EncoderOut)):
            enc = batch
        else:
            enc = _get(batch, "encoder_out")
            if enc is None:
                enc = _get(batch, "encoder")
            if constraints is None:
                constraints = _get(batch, "constraints")
        gen = self.generator.replace(**options) if options else self.generator
        return gen.generate(model, enc, constraints, self.bos, self.eos, self.pad, self.free_ids_mask)


__all__ = ["DEAD", "Hypothesis", "SequenceGenerator", "TokenGenerator"]
