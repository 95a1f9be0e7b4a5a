"""The verdict of a validation report: passed, and the mismatches that decided it. Reports stay JSON dicts (they
are written as report.json); every place that folds one check's verdict into another's goes through `merge`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Verdict:
    passed: bool = True
    mismatches: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, report: dict) -> Verdict:
        return cls(bool(report["passed"]), tuple(report["mismatches"]))

    def merge(self, other: Verdict, prefix: str = "") -> Verdict:
        """Both must hold; the other's mismatches follow ours (each prefixed, e.g. "plugin form: ")."""
        return Verdict(self.passed and other.passed, self.mismatches + tuple(prefix + m for m in other.mismatches))

    def write(self, report: dict) -> dict:
        """Store into a report dict (in place; returned for chaining)."""
        report["passed"], report["mismatches"] = self.passed, list(self.mismatches)
        return report


def fold(report: dict, part: dict, prefix: str = "") -> dict:
    """report's verdict merged with part's, written back into report."""
    return Verdict.of(report).merge(Verdict.of(part), prefix).write(report)
