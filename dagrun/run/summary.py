"""The result of one execution: what ran, what was skipped, what failed, and where to look."""

from __future__ import annotations

from dagrun.disk.layout import RunDir, Stage, SweepDir
from dagrun.record import field, record
from dagrun.run.runwarning import RunWarning, WarningTally

FAILED_SHOWN = 10  # failed runs listed by name at the end of a sweep


@record(frozen=True)
class FailedRun:
    label: str  # "<id>/<rep>"
    path: str
    stage: str
    kind: str
    message: str
    record_error: str = ""  # why RUN/<stage>.error could not be written ("" if it was)


@record
class Summary:
    """Counts of one ``run_experiments`` / ``dagrun execute``: ``done`` ran to completion now,
    ``skipped`` were already done, ``failed`` failed (after retries); ``warnings`` counts
    the runs' warnings by kind (``dagrun.run.runwarning``)."""

    out_path: str
    planned: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_runs: list[FailedRun] = field(default_factory=list)
    interrupted: bool = False
    dry_run: bool = False
    seconds: float = 0.0
    results_lines: int = 0
    results_error: str = ""  # why results.jsonl could not be rewritten at the end
    notes: list[str] = field(default_factory=list)
    warnings: WarningTally = field(default_factory=WarningTally)

    @property
    def ok(self) -> bool:
        """Every planned run is done."""
        return not self.interrupted and self.done + self.skipped == self.planned

    def warn(self, label: str, warning: RunWarning) -> str | None:
        """Count a warning of run ``label``; the line to print when it is the first of its
        kind in this sweep, ``None`` when it is only counted (the summary says how many)."""
        if self.warnings.add(label, warning):
            return f"dagrun: warning: run {label}: {warning.message}"
        return None

    @property
    def results_path(self) -> str:
        return SweepDir.at(self.out_path).results

    def text(self, verbose: bool) -> str:
        """What the driver prints at the end: everything when ``verbose``; when quiet, only
        failed runs (capped) and the summary line, and nothing when all went well."""
        if verbose:
            return str(self)
        if not self.failed_runs and not self.interrupted:
            return ""
        return "\n".join([*self._failed_lines(), *self.warnings.lines(), self._head()])

    def _head(self) -> str:
        head = (f"{self.planned} runs planned: {self.done} done now, {self.skipped} already "
                f"done, {self.failed} failed")
        if self.interrupted:
            head += ", interrupted (finished stages are kept; run again to resume)"
        return f"{head} ({self.seconds:.1f} s)."

    def _failed_lines(self) -> list[str]:
        lines = []
        for run in self.failed_runs[:FAILED_SHOWN]:
            err = RunDir(run.path).error(Stage(run.stage))
            where = f"no record in {err} ({run.record_error})" if run.record_error else err
            lines.append(f"  failed {run.label} in {run.stage} ({run.kind}): "
                         f"{run.message.splitlines()[0] if run.message else ''} -> {where}")
        if len(self.failed_runs) > FAILED_SHOWN:
            lines.append(f"  ... and {len(self.failed_runs) - FAILED_SHOWN} more")
        if self.failed_runs:
            lines.append(f"See all with: dagrun status {self.out_path}")
        return lines

    def __str__(self) -> str:
        if self.dry_run:
            return (f"dry run: {self.planned} runs planned, {self.skipped} already done, "
                    f"{self.planned - self.skipped} would run; nothing was executed")
        results = (f"Results: {self.results_path} was NOT rewritten ({self.results_error})."
                   if self.results_error else
                   f"Results: {self.results_path} ({self.results_lines} experiments).")
        lines = [self._head(), results,
                 *self._failed_lines(), *self.warnings.lines(), *self.notes]
        return "\n".join(lines)
