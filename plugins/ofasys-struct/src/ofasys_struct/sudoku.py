"""Sudoku: checking, solving and generating puzzles with a unique solution (4x4 and 9x9; any n = k*k).

Grids are lists of rows; ``None`` or ``0`` is a blank. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Sequence

from .linearize import StructError, to_grid


def box_size(n: int) -> int:
    """The side of a box of an n x n sudoku (2 for 4x4, 3 for 9x9); raises for a non-square n."""
    k = math.isqrt(n)
    if k * k != n or k < 1:
        raise ValueError(f"a sudoku side must be a square number (4, 9, ...), not {n}")
    return k


def _as_grid(value: Any) -> list[list[Any]] | None:
    try:
        return to_grid(value)
    except (StructError, TypeError, ValueError):
        return None


def is_solved(prediction: Any, reference: Any | None = None) -> bool:
    """Whether ``prediction`` is a complete, valid sudoku (every row, column and box holds 1..n once) that
    keeps every given of ``reference`` (a puzzle with blanks, or the full solution: then every cell must
    match). Anything unparsable or of the wrong shape is not solved."""
    grid = _as_grid(prediction)
    if not grid:
        return False
    n = len(grid)
    try:
        k = box_size(n)
    except ValueError:
        return False
    if any(len(r) != n for r in grid):
        return False
    digits = set(range(1, n + 1))
    if any(not isinstance(c, int) or c not in digits for r in grid for c in r):
        return False
    for i in range(n):
        if set(grid[i]) != digits or {grid[r][i] for r in range(n)} != digits:
            return False
    for br in range(0, n, k):
        for bc in range(0, n, k):
            if {grid[r][c] for r in range(br, br + k) for c in range(bc, bc + k)} != digits:
                return False
    if reference is not None:
        ref = _as_grid(reference)
        if ref is None or len(ref) != n or any(len(r) != n for r in ref):
            return False
        for r in range(n):
            for c in range(n):
                if ref[r][c] is not None and ref[r][c] != grid[r][c]:
                    return False
    return True


def solved_rate(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Percentage (0-100) of predictions that :func:`is_solved` against their reference."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return 0.0
    return 100.0 * sum(is_solved(p, r) for p, r in zip(predictions, references)) / len(predictions)


def solve(puzzle: Any, limit: int = 2) -> list[list[list[int]]]:
    """Up to ``limit`` solutions of a puzzle (bitmask backtracking, most constrained cell first)."""
    grid = to_grid(puzzle)
    n = len(grid)
    k = box_size(n)
    full = (1 << n) - 1
    rows, cols, boxes = [0] * n, [0] * n, [0] * n
    cells: list[list[int]] = [[0] * n for _ in range(n)]
    empties = []
    for r in range(n):
        for c in range(n):
            v = grid[r][c]
            if v is None:
                empties.append((r, c))
                continue
            if not isinstance(v, int) or not 1 <= v <= n:
                raise ValueError(f"cell ({r}, {c}) holds {v!r}, not a digit 1..{n}")
            bit = 1 << (v - 1)
            b = (r // k) * k + c // k
            if rows[r] & bit or cols[c] & bit or boxes[b] & bit:
                return []  # contradictory givens
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            cells[r][c] = v
    solutions: list[list[list[int]]] = []

    def search() -> bool:
        best, best_mask, best_count = -1, 0, n + 1
        for i, (r, c) in enumerate(empties):
            if cells[r][c]:
                continue
            mask = full & ~(rows[r] | cols[c] | boxes[(r // k) * k + c // k])
            cnt = mask.bit_count()
            if cnt < best_count:
                best, best_mask, best_count = i, mask, cnt
                if cnt <= 1:
                    break
        if best < 0:
            solutions.append([row[:] for row in cells])
            return len(solutions) >= limit
        if best_count == 0:
            return False
        r, c = empties[best]
        b = (r // k) * k + c // k
        mask = best_mask
        while mask:
            bit = mask & -mask
            mask ^= bit
            cells[r][c] = bit.bit_length()
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            stop = search()
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[b] &= ~bit
            cells[r][c] = 0
            if stop:
                return True
        return False

    search()
    return solutions


def random_solution(n: int, rng: random.Random) -> list[list[int]]:
    """A uniformly shuffled valid full grid: the canonical pattern with digits, rows within bands, bands,
    columns within stacks and stacks permuted, and an optional transpose."""
    k = box_size(n)
    digits = list(range(1, n + 1))
    rng.shuffle(digits)

    def order() -> list[int]:
        bands = list(range(k))
        rng.shuffle(bands)
        out = []
        for b in bands:
            inner = list(range(k))
            rng.shuffle(inner)
            out.extend(b * k + i for i in inner)
        return out

    rows, cols = order(), order()
    grid = [[digits[(k * (r % k) + r // k + c) % n] for c in cols] for r in rows]
    if rng.random() < 0.5:
        grid = [list(x) for x in zip(*grid)]
    return grid


def _count_solutions(grid: list[list[int]], limit: int = 2) -> int:
    """How many solutions (up to ``limit``) a grid of ints (0 = blank, every given a digit 1..n) has: the count
    :func:`solve` would give (``len(solve(grid, limit))``) without normalising the grid or building the solutions,
    which is what puzzle generation needs after blanking each cell."""
    n = len(grid)
    k = box_size(n)
    full = (1 << n) - 1
    rows, cols, boxes = [0] * n, [0] * n, [0] * n
    empties: list[tuple[int, int, int]] = []
    for r in range(n):
        row = grid[r]
        for c in range(n):
            v = row[c]
            b = (r // k) * k + c // k
            if not v:
                empties.append((r, c, b))
                continue
            bit = 1 << (v - 1)
            if rows[r] & bit or cols[c] & bit or boxes[b] & bit:
                return 0  # contradictory givens
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
    found = 0

    def search(todo: list[tuple[int, int, int]]) -> bool:
        nonlocal found
        if not todo:
            found += 1
            return found >= limit
        best, best_mask, best_count = 0, 0, n + 1
        for i, (r, c, b) in enumerate(todo):
            mask = full & ~(rows[r] | cols[c] | boxes[b])
            cnt = mask.bit_count()
            if cnt < best_count:
                best, best_mask, best_count = i, mask, cnt
                if cnt <= 1:
                    break
        if best_count == 0:
            return False
        r, c, b = todo[best]
        rest = todo[:best] + todo[best + 1:]
        mask = best_mask
        while mask:
            bit = mask & -mask
            mask ^= bit
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            stop = search(rest)
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[b] &= ~bit
            if stop:
                return True
        return False

    search(empties)
    return found


def make_puzzle(solution: list[list[int]], blanks: int, rng: random.Random) -> list[list[int]]:
    """Blank up to ``blanks`` cells of a solution, in random order, keeping the solution unique (0 = blank)."""
    n = len(solution)
    puzzle = [row[:] for row in solution]
    positions = [(r, c) for r in range(n) for c in range(n)]
    rng.shuffle(positions)
    removed = 0
    for r, c in positions:
        if removed >= blanks:
            break
        keep = puzzle[r][c]
        puzzle[r][c] = 0
        if _count_solutions(puzzle, limit=2) == 1:
            removed += 1
        else:
            puzzle[r][c] = keep
    return puzzle


def generate(n_puzzles: int, size: int = 4, blanks: "int | tuple[int, int]" = (4, 8), seed: int = 0,
             exclude: "set[str] | None" = None) -> list[dict]:
    """``n_puzzles`` distinct puzzles ``{"puzzle": grid (0 = blank), "solution": grid, "blanks": int}`` of an
    ``size`` x ``size`` sudoku, each with a unique solution; ``blanks`` is a count or an inclusive range.
    ``exclude`` holds puzzle keys (:func:`puzzle_key`) not to produce (to keep splits apart)."""
    return list(itertools.islice(iter_generate(size, blanks, seed, exclude, max_attempts=50 * n_puzzles + 1000,
                                               planned=n_puzzles), n_puzzles))


def iter_generate(size: int = 4, blanks: "int | tuple[int, int]" = (4, 8), seed: int = 0,
                  exclude: "set[str] | None" = None, max_attempts: int = 1000, planned: "int | None" = None):
    """The puzzles of :func:`generate`, one at a time, drawn only when asked for: the first ``m`` are those of
    ``generate(n, ...)`` for any ``n >= m`` given ``max_attempts = 50 * n + 1000`` (``planned`` = ``n`` only
    names the count in the error raised after ``max_attempts`` draws)."""
    rng = random.Random(f"sudoku-{size}-{seed}")
    lo, hi = (blanks, blanks) if isinstance(blanks, int) else blanks
    seen = set(exclude or ())
    attempts = 0
    while True:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(f"could not generate {planned if planned is not None else 'enough'} distinct "
                             f"{size}x{size} puzzles with {blanks} blanks")
        solution = random_solution(size, rng)
        target = rng.randint(lo, hi)
        puzzle = make_puzzle(solution, target, rng)
        count = sum(v == 0 for row in puzzle for v in row)
        key = _int_grid_key(puzzle)
        if count < lo or key in seen:
            continue
        seen.add(key)
        yield {"puzzle": puzzle, "solution": solution, "blanks": count}


def _int_grid_key(grid: list[list[int]]) -> str:
    """:func:`puzzle_key` of a grid of ints (0 = blank), as :func:`generate` makes, without normalising it."""
    return "".join(str(v) if v else "." for row in grid for v in row)


def puzzle_key(grid: Any) -> str:
    """A string key of a grid (blanks as ``.``)."""
    return "".join("." if v in (None, 0) else str(v) for row in to_grid(grid) for v in row)
