"""Errors meant for people.

Every error ofasys raises on purpose derives from :class:`OfasysError`. The CLI turns them into a message and an
exit code; library code never prints or exits.
"""

from __future__ import annotations


class OfasysError(Exception):
    """Base class of every error ofasys raises on purpose."""

    exit_code = 1


class InstructionError(OfasysError, ValueError):
    """An instruction is malformed or names something that does not exist.

    The message reprints the instruction with a caret under the offending span (``start``..``end``).
    """

    exit_code = 2

    def __init__(self, message: str, instruction: str = "", start: int = 0, end: int | None = None, hint: str = ""):
        self.reason = message
        self.instruction = instruction
        self.start = max(0, min(start, len(instruction)))
        self.end = self.start + 1 if end is None or end <= self.start else min(end, max(len(instruction), self.start + 1))
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [self.reason]
        if self.instruction:
            lines.append("  " + self.instruction)
            lines.append("  " + " " * self.start + "^" * max(1, self.end - self.start))
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class PlanError(OfasysError):
    """An instruction parsed, but cannot be planned with the installed plugins."""

    exit_code = 2


class PluginError(OfasysError):
    """A plugin could not be loaded or misbehaved. ``__cause__`` keeps the original traceback."""

    def __init__(self, message: str, distribution: str | None = None, entry_point: str | None = None):
        self.distribution = distribution
        self.entry_point = entry_point
        super().__init__(message)


class PluginConflictError(PluginError):
    """Two distributions claim the same slot type."""

    exit_code = 2


class DataError(OfasysError):
    """A dataset or sample does not fit the task (missing column, unreadable value, too many bad samples)."""

    exit_code = 2


class CheckpointError(OfasysError):
    """A checkpoint is missing, truncated, tampered with, or does not match the code loading it."""

    exit_code = 2


class ConfigError(OfasysError):
    """A training or inference configuration is invalid."""

    exit_code = 2


def did_you_mean(word: str, choices) -> str:
    """``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    import difflib

    best = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{best[0]}'?" if best else ""
