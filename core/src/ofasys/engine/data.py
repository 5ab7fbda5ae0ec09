"""Datasets: what ``Task.add_dataset`` accepts, and the deterministic, resumable loaders built on them.

Accepted: a list of dicts, a path to a JSONL/JSON/CSV/Parquet file, a torch ``Dataset`` (items are dicts),
a torch ``IterableDataset`` (streams: never loaded whole), or a Hugging Face ``datasets.Dataset``.

Order is a function of (seed, task, epoch) alone, so a run resumed from a checkpoint sees exactly the batches
the uninterrupted run would have seen; per-sample randomness (augmentation, masking, template choice) is seeded
by (seed, task, epoch, index), independent of worker count.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from torch.utils.data import DataLoader
from torch.utils.data import Dataset as _TorchDataset
from torch.utils.data import IterableDataset as _TorchIterable
from torch.utils.data import get_worker_info

from ..errors import DataError


def _stable_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


class DataSource:
    """Uniform read access to a user's dataset."""

    def __init__(self, data: Any, name: str = "dataset"):
        self.name = name
        self._iterable = None
        self._rows = None
        self._columns: list[str] | None = None
        if isinstance(data, (str, Path)):
            self._rows = _read_file(Path(data))
            self.name = str(data)
        elif isinstance(data, list):
            self._rows = data
        elif hasattr(data, "column_names") and hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self._rows = data  # Hugging Face datasets.Dataset
            self._columns = list(data.column_names)
        else:
            if isinstance(data, _TorchIterable):
                self._iterable = data
            elif isinstance(data, _TorchDataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
                self._rows = data
            else:
                raise DataError(f"cannot use a {type(data).__name__} as a dataset: give a list of dicts, a path to a "
                                "JSONL/CSV/Parquet file, a torch Dataset or IterableDataset, or a datasets.Dataset")

    @property
    def is_iterable(self) -> bool:
        return self._iterable is not None

    def __len__(self) -> int:
        if self._rows is None:
            raise TypeError("a streaming dataset has no length")
        return len(self._rows)

    def row(self, i: int) -> dict:
        r = self._rows[i]
        if not isinstance(r, dict):
            raise DataError(f"{self.name}: item {i} is a {type(r).__name__}, not a dict of columns")
        return r

    def iter_rows(self) -> Iterator[dict]:
        if self._iterable is not None:
            yield from iter(self._iterable)
        else:
            for i in range(len(self)):
                yield self.row(i)

    def columns(self) -> list[str]:
        if self._columns is not None:
            return self._columns
        try:
            first = next(self.iter_rows())
        except StopIteration:
            raise DataError(f"{self.name} is empty") from None
        if not isinstance(first, dict):
            raise DataError(f"{self.name}: items must be dicts of columns, not {type(first).__name__}")
        self._columns = list(first)
        return self._columns


def _read_file(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        return rows
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise DataError(f"{path}: a JSON dataset must be a list of objects")
        return data
    if suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        return pq.read_table(path).to_pylist()
    raise DataError(f"{path}: unknown dataset format {suffix!r} (use .jsonl, .json, .csv, .tsv or .parquet)")


@dataclass
class BadSample:
    """A row that could not be preprocessed: counted and reported, never trained on."""

    index: int
    reason: str


class TaskDataset:
    """Map-style view used by the DataLoader: key ``(epoch, index)`` -> preprocessed sample or :class:`BadSample`."""

    def __init__(self, source: DataSource, pipeline, split: str, seed: int):
        self.source = source
        self.pipeline = pipeline
        self.split = split
        self.seed = seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key):
        epoch, index = key
        rng = random.Random(_stable_seed(self.seed, self.pipeline.name, self.split, epoch, index))
        try:
            row = self.source.row(index)
            return self.pipeline.make_sample(row, self.split, rng)
        except DataError as exc:
            return BadSample(index, str(exc))


class EpochBatchSampler:
    """Infinite stream of batches of ``(epoch, index)`` keys; shuffled per epoch by (seed, task).

    The *global* stream is epoch 0's batches, then epoch 1's, ...; with ``world`` ranks, rank ``r`` takes global
    batches ``start + r``, ``start + world + r``, ... So at every update the ranks hold consecutive global batches,
    whatever the number of ranks: ``N`` ranks and one process accumulating ``N`` micro-batches see the same
    batches, and a run can resume with another number of ranks from the global position ``start``.
    With ``shuffle=False`` the order is the dataset order and the stream ends after one epoch (evaluation).
    """

    def __init__(self, n: int, batch_size: int, seed: int, name: str, shuffle: bool = True, start: int = 0,
                 rank: int = 0, world: int = 1, drop_last: bool = False, lengths: Any = None,
                 bucket_batches: int = 0):
        if n == 0:
            raise DataError(f"task {name!r}: the dataset is empty")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.n, self.batch_size, self.seed, self.name = n, batch_size, seed, name
        self.shuffle, self.start, self.rank, self.world, self.drop_last = shuffle, start, rank, world, drop_last
        self.lengths, self.bucket_batches = lengths, bucket_batches
        self._cache: tuple[int, list] | None = None

    def _epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        order = list(range(self.n))
        rnd = random.Random(_stable_seed(self.seed, self.name, epoch))
        if self.shuffle:
            rnd.shuffle(order)
        bs = self.batch_size
        if self.shuffle and self.lengths is not None and self.bucket_batches > 1:
            # length bucketing: sort windows of `bucket_batches` batches by length, cut them into batches and
            # shuffle the batches, so a batch holds samples of similar length (less padding) and the order of
            # lengths stays random
            win = bs * self.bucket_batches
            batches = []
            for k in range(0, len(order), win):
                chunk = sorted(order[k:k + win], key=lambda i: self.lengths[i])
                batches.extend(chunk[j:j + bs] for j in range(0, len(chunk), bs))
            rnd.shuffle(batches)
        else:
            batches = [order[k:k + bs] for k in range(0, len(order), bs)]
        out = [[(epoch, i) for i in b] for b in batches]
        if self.drop_last and out and len(out[-1]) < bs and len(out) > 1:
            out.pop()
        self._cache = (epoch, out)
        return out

    def __iter__(self):
        if not self.shuffle:  # evaluation: one pass, this rank's share
            yield from self._epoch_batches(0)[self.rank::self.world]
            return
        per_epoch = len(self._epoch_batches(0))
        g = self.start + self.rank
        while True:
            epoch, k = divmod(g, per_epoch)
            yield self._epoch_batches(epoch)[k]
            g += self.world


class StreamingDataset(_TorchIterable):
    """An ``IterableDataset`` source read in order, batch by batch; resume skips the consumed rows."""

    def __init__(self, source: DataSource, pipeline, split: str, seed: int, batch_size: int, start: int = 0,
                 loop: bool = True, rank: int = 0, world: int = 1):
        self.source, self.pipeline, self.split, self.seed = source, pipeline, split, seed
        self.batch_size, self.start, self.loop, self.rank, self.world = batch_size, start, loop, rank, world

    def __iter__(self):
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        shard, nshards = self.rank * nworkers + wid, self.world * nworkers
        epoch, batch_no, buf = 0, 0, []
        while True:
            index = -1
            for index, row in enumerate(self.source.iter_rows()):
                if index % nshards != shard:
                    continue
                rng = random.Random(_stable_seed(self.seed, self.pipeline.name, self.split, epoch, index))
                try:
                    buf.append(self.pipeline.make_sample(row, self.split, rng))
                except DataError as exc:
                    buf.append(BadSample(index, str(exc)))
                if len(buf) == self.batch_size:
                    if batch_no >= self.start:
                        yield buf
                    batch_no += 1
                    buf = []
            if index < 0:
                raise DataError(f"task {self.pipeline.name!r}: the streaming dataset yielded no rows")
            if not self.loop:
                if buf:
                    yield buf
                return
            epoch += 1


def collate_with_bad(pipeline, items: list) -> tuple[Any, list[BadSample]]:
    """Collate good samples; return the bad ones beside the batch for counting."""
    good = [x for x in items if not isinstance(x, BadSample)]
    bad = [x for x in items if isinstance(x, BadSample)]
    return (pipeline.collate(good) if good else None), bad


class _Collate:
    """Picklable collate_fn for DataLoader workers (``pack``: a picklable step applied to each collated batch,
    :class:`ofasys.engine.packing.Packing`)."""

    def __init__(self, pipeline, pack=None):
        self.pipeline = pipeline
        self.pack = pack

    def __call__(self, items):
        batch, bad = collate_with_bad(self.pipeline, items)
        if self.pack is not None and batch is not None:
            batch = self.pack(batch)
        return batch, bad


def make_loader(source: DataSource, pipeline, split: str, batch_size: int, seed: int, *, shuffle: bool = True,
                start: int = 0, num_workers: int = 0, rank: int = 0, world: int = 1, pin_memory: bool = False,
                prefetch_factor: int | None = None, bucket_batches: int = 0, multiprocessing_context: str | None = None,
                pack=None):
    """A DataLoader yielding ``(Batch | None, [BadSample])`` forever (training) or once over the data (eval).

    ``start`` is the global batch position (see :class:`EpochBatchSampler`); ``rank``/``world`` take this rank's
    share. ``num_workers`` preprocess in worker processes (``multiprocessing_context="spawn"`` starts them fresh:
    the pipeline is pickled and plugins are imported again inside the worker). ``bucket_batches`` > 1 groups
    samples of similar length (see :func:`row_length`) to cut padding. ``pack`` (a
    :class:`~ofasys.engine.packing.Packing`) packs each collated batch's samples into shared rows.
    """
    import torch

    # a private generator: creating an iterator must not draw from the global RNG (dropout), or a resumed run
    # would diverge from the uninterrupted one
    gen = torch.Generator().manual_seed(_stable_seed(seed, pipeline.name, split) % (2 ** 63))
    kwargs: dict[str, Any] = dict(num_workers=num_workers, collate_fn=_Collate(pipeline, pack), pin_memory=pin_memory,
                                  generator=gen)
    if num_workers > 0:
        kwargs["persistent_workers"] = False
        if prefetch_factor:
            kwargs["prefetch_factor"] = prefetch_factor
        if multiprocessing_context:
            kwargs["multiprocessing_context"] = multiprocessing_context
        kwargs["worker_init_fn"] = _worker_init
    if source.is_iterable:
        ds = StreamingDataset(source, pipeline, split, seed, batch_size, start=start, loop=shuffle, rank=rank,
                              world=world)
        return DataLoader(ds, batch_size=None, **kwargs)
    lengths = None
    if bucket_batches > 1 and shuffle:
        lengths = [row_length(source.row(i)) for i in range(len(source))]
    sampler = EpochBatchSampler(len(source), batch_size, seed, pipeline.name, shuffle=shuffle, start=start,
                                rank=rank, world=world, lengths=lengths, bucket_batches=bucket_batches)
    return DataLoader(TaskDataset(source, pipeline, split, seed), batch_sampler=sampler, **kwargs)


def row_length(row: Any) -> int:
    """A cheap length proxy of a raw row for bucketing: characters of strings, items of lists, elements of
    arrays (bytes, images given as paths and other values count alike, so they do not split buckets)."""
    if not isinstance(row, dict):
        return 0
    total = 0
    for v in row.values():
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, (list, tuple)):
            total += sum(len(x) if isinstance(x, str) else 1 for x in v)
        elif hasattr(v, "shape") and hasattr(v, "size") and not callable(v.size):
            total += int(v.size)
    return total


def _worker_init(worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)
