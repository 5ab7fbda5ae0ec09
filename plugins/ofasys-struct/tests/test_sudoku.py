"""Sudoku checking, solving and generation."""

from __future__ import annotations

import pytest

from ofasys_struct import sudoku
from ofasys_struct.metrics import solved_rate

SOLUTION = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
PUZZLE = [[1, 0, 3, 0], [0, 4, 0, 2], [2, 0, 4, 0], [0, 3, 0, 1]]


def test_solved_means_valid_and_givens_kept():
    assert sudoku.is_solved(SOLUTION, PUZZLE)
    assert sudoku.is_solved(SOLUTION, SOLUTION)
    assert sudoku.is_solved("1 2 3 4 | 3 4 1 2 | 2 1 4 3 | 4 3 2 1", "1.3..4.22.4..3.1")
    other = [[2, 1, 4, 3], [4, 3, 2, 1], [1, 2, 3, 4], [3, 4, 1, 2]]  # valid, but drops the givens
    assert sudoku.is_solved(other) and not sudoku.is_solved(other, PUZZLE)
    broken = [row[:] for row in SOLUTION]
    broken[0][0], broken[0][1] = broken[0][1], broken[0][0]  # rows still hold 1..4, columns do not
    assert not sudoku.is_solved(broken)
    box_only_bad = [[1, 2, 3, 4], [2, 3, 4, 1], [3, 4, 1, 2], [4, 1, 2, 3]]  # latin square, boxes invalid
    assert not sudoku.is_solved(box_only_bad)
    for bad in (None, [], "nonsense", [[1, 2], [2, 1]], PUZZLE, [[1, 2, 3, 5]] * 4, [[1, 2, 3]] * 3):
        assert not sudoku.is_solved(bad, PUZZLE)


def test_solved_rate_metric():
    assert solved_rate([SOLUTION, PUZZLE, None], [PUZZLE, PUZZLE, PUZZLE]) == pytest.approx(100 / 3)
    assert solved_rate([], []) == 0.0


def test_solver_finds_every_solution():
    assert sudoku.solve(PUZZLE) == [SOLUTION]
    assert len(sudoku.solve([[0] * 4] * 4, limit=1000)) == 288  # the number of 4x4 sudoku grids
    assert sudoku.solve([[1, 1, 0, 0]] + [[0] * 4] * 3) == []


@pytest.mark.parametrize("size,blanks", [(4, (4, 8)), (9, (30, 40))])
def test_generated_puzzles_have_a_unique_solution_and_are_deterministic(size, blanks):
    rows = sudoku.generate(8, size=size, blanks=blanks, seed=3)
    assert rows == sudoku.generate(8, size=size, blanks=blanks, seed=3)
    assert rows != sudoku.generate(8, size=size, blanks=blanks, seed=4)
    assert len({sudoku.puzzle_key(r["puzzle"]) for r in rows}) == 8
    for r in rows:
        assert sudoku.is_solved(r["solution"], r["puzzle"])
        assert sudoku.solve(r["puzzle"], limit=2) == [r["solution"]]
        assert blanks[0] <= r["blanks"] == sum(v == 0 for row in r["puzzle"] for v in row) <= blanks[1]


def test_box_size():
    assert sudoku.box_size(4) == 2 and sudoku.box_size(9) == 3
    with pytest.raises(ValueError, match="square number"):
        sudoku.box_size(6)


def test_generation_counts_solutions_like_the_solver():
    import random

    rng = random.Random(0)
    for size in (4, 9):
        for _ in range(30):
            grid = sudoku.random_solution(size, rng)
            for r, c in rng.sample([(r, c) for r in range(size) for c in range(size)], rng.randint(0, size * 3)):
                grid[r][c] = 0
            assert sudoku._count_solutions(grid, limit=2) == len(sudoku.solve(grid, limit=2))
    assert sudoku._count_solutions([[0] * 4] * 4, limit=1000) == 288
    assert sudoku._count_solutions([[1, 1, 0, 0]] + [[0] * 4] * 3) == 0
    # the lazy stream starts with generate()'s puzzles
    import itertools

    assert list(itertools.islice(sudoku.iter_generate(4, (4, 8), 3, max_attempts=10**6), 8)) == \
        sudoku.generate(8, size=4, blanks=(4, 8), seed=3)
