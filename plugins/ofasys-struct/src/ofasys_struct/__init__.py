"""STRUCT slot for ofasys: text-to-SQL, table-to-text, table QA, sudoku."""

__version__ = "0.1.0"
