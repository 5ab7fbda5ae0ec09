"""Three small synthetic text tasks for ``ofasys demo`` and the tests, generated deterministically by seed
(no downloads).

- ``sentiment``: a review built from sentiment-bearing and neutral words -> positive / negative / mixed
  (closed set);
- ``reverse``: a sequence of 3 words -> the same words in reverse order;
- ``first_word``: "what is the first word" of a short sentence.
"""

from __future__ import annotations

import random

POSITIVE = ["great", "lovely", "excellent", "superb", "wonderful", "delightful", "fantastic", "pleasant"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "horrible", "bland", "disappointing", "poor"]
NEUTRAL = ["the", "food", "service", "room", "staff", "view", "was", "and", "really", "quite", "very", "hotel",
           "place", "meal", "music", "price"]
# each of these is a single token of the shipped tokenizer (pinned by ofasys-text's tests), so "reverse" is
# a pure reordering task
WORDS = ["apple", "river", "cloud", "green", "table", "light", "tiger", "ocean", "bread", "chair", "window",
         "garden", "silver", "house", "water", "tree", "book", "horse", "snow", "gold"]

INSTRUCTIONS = {
    "sentiment": "is the review [TEXT:review] positive? -> [TEXT:label,closed_set]",
    "reverse": "reverse the words: [TEXT:words] -> [TEXT:reversed]",
    "first_word": "what is the first word of [TEXT:sentence] ? -> [TEXT:word]",
}


def sentiment(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["positive", "negative", "mixed"])
        pos = {"positive": 2, "negative": 0, "mixed": 1}[label]
        neg = {"positive": 0, "negative": 2, "mixed": 1}[label]
        words = rng.sample(POSITIVE, pos) + rng.sample(NEGATIVE, neg) + rng.sample(NEUTRAL, rng.randint(3, 6))
        rng.shuffle(words)
        rows.append({"review": " ".join(words), "label": label})
    return rows


def reverse(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(WORDS, 3)
        rows.append({"words": " ".join(words), "reversed": " ".join(reversed(words))})
    return rows


def first_word(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(NEUTRAL + WORDS, rng.randint(3, 6))
        rows.append({"sentence": " ".join(words), "word": words[0]})
    return rows


GENERATORS = {"sentiment": sentiment, "reverse": reverse, "first_word": first_word}


def splits(name: str, n_train: int = 600, n_valid: int = 100, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Disjoint train/held-out rows (held-out rows never appear verbatim in train)."""
    gen = GENERATORS[name]
    train = gen(n_train, seed)
    seen = {tuple(sorted(r.items())) for r in train}
    valid = [r for r in gen(n_valid * 3, seed + 1000) if tuple(sorted(r.items())) not in seen][:n_valid]
    return train, valid


METRICS = {"sentiment": "accuracy", "reverse": "exact_match", "first_word": "exact_match"}


def demo_tasks() -> list:
    """The tasks this plugin contributes to ``ofasys demo``."""
    from ofasys.spec import DemoTask

    def rows_of(name):
        def make(split: str, n: int, seed: int) -> list[dict]:
            train, valid = splits(name, n_train=n if split == "train" else 800, n_valid=n, seed=seed)
            return train if split == "train" else valid

        return make

    return [DemoTask(name=f"text_{name}", modality="text", instruction=INSTRUCTIONS[name], rows=rows_of(name),
                     metric=METRICS[name], micro_batch_size=32, showcase=_showcase(name))
            for name in INSTRUCTIONS]


def _showcase(name: str):
    def show(model, rows: list[dict], out_dir) -> list[dict]:
        import html

        outs = model.inference(f"text_{name}", data=rows[:4])
        items = []
        for row, out in zip(rows[:4], outs):
            inputs = ", ".join(f"{k}={v!r}" for k, v in row.items())
            items.append({"title": name, "html": f"<code>{html.escape(inputs)}</code> &rarr; "
                                                 f"<b>{html.escape(str(out.text))}</b>"})
        return items

    return show
