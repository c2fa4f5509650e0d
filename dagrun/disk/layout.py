"""Every file name dagrun uses on disk: the one place that knows the layout.

``SweepDir`` is ``OUT/``; ``RunDir`` is one run's folder (``OUT/<id>/`` or ``OUT/<id>/<rep>/``).
Nothing else in dagrun spells a file name.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import NamedTuple

from dagrun.record import record


class Stage(str, enum.Enum):
    """The three stages of a run, in order."""

    PRE = "pre"
    FIT = "fit"
    POST = "post"

    # ``stage._value_`` (the plain attribute behind ``.value``) is read where names are
    # built: ``.value`` is a descriptor call, and a run builds ~30 names

    @property
    def order(self) -> int:
        return STAGES.index(self)

    def and_after(self) -> tuple[Stage, ...]:
        """This stage and the ones that consume its output."""
        return STAGES[self.order :]


STAGES: tuple[Stage, ...] = (Stage.PRE, Stage.FIT, Stage.POST)
STAGE_NAMED: dict[str, Stage] = {s._value_: s for s in STAGES}  # ``Stage(name)``, cheaper

RESULTS = "results.jsonl"
CONFIG = "config.json"
STATE_DIR = ".dagrun"
CODE_DIR = "code"  # OUT/.dagrun/code/<digest>/: the copy of the workflow's code
LEASE = "lease.json"
PRUNED = "pruned.json"  # a search trial its pruner stopped (dagrun.search.pruning)
REPORTS = "reports.json"  # the intermediate values a search trial reported
LOG_SPARE = "log-"  # OUT/.dagrun/spares/log-*: a process's spare log file (dagrun.run.capture)


class RunDir(NamedTuple):
    """One run's folder and the names of everything in it (a tuple: cheap at 100,000 runs)."""

    path: str

    @property
    def config(self) -> str:
        return f"{self.path}{os.sep}{CONFIG}"

    def artifact(self, stage: Stage) -> str:
        """pre.pkl / fit.pkl hold pickled outputs; post.json holds the metrics."""
        ext = "json" if stage is Stage.POST else "pkl"
        return f"{self.path}{os.sep}{stage._value_}.{ext}"

    def marker(self, stage: Stage) -> str:
        return f"{self.path}{os.sep}{stage._value_}.done"

    def error(self, stage: Stage) -> str:
        return f"{self.path}{os.sep}{stage._value_}.error"

    def log(self, stage: Stage) -> str:
        return f"{self.path}{os.sep}{stage._value_}.log"

    @property
    def lease(self) -> str:
        """JSON naming the worker executing the run now (``dagrun.disk.leases``); only while it
        runs."""
        return f"{self.path}{os.sep}{LEASE}"

    @property
    def pruned(self) -> str:
        """JSON: the run was stopped by the search's pruner (stage, step, value); the run
        is done."""
        return f"{self.path}{os.sep}{PRUNED}"

    @property
    def reports(self) -> str:
        """JSON: the intermediate values ``dagrun.report`` recorded (search sweeps only)."""
        return f"{self.path}{os.sep}{REPORTS}"

    def entry(self, name: str) -> str:
        """The path of ``name`` in the run folder (an attempt folder, a name listed)."""
        return f"{self.path}{os.sep}{name}"

    def lease_temp(self, tag: str) -> str:
        """A name private to one claim or takeover of the lease (renamed or linked away)."""
        return f"{self.path}{os.sep}.{LEASE}.{tag}.tmp"

    def stage_files(self, stage: Stage) -> tuple[str, ...]:
        """Everything a stage leaves, marker first so it is removed before its artifact."""
        return (self.marker(stage), self.artifact(stage), self.error(stage))


def marker_name(stage: Stage) -> str:
    return f"{stage._value_}.done"


def error_name(stage: Stage) -> str:
    return f"{stage._value_}.error"


@record(frozen=True)
class SweepDir:
    """``OUT/``: run folders, results, and dagrun's own state under ``OUT/.dagrun/``."""

    path: str

    @classmethod
    def at(cls, out_path: str | os.PathLike[str]) -> SweepDir:
        """The sweep at ``out_path``, made absolute and normalised (no trailing slash)."""
        return cls(os.path.abspath(os.fspath(out_path)))

    @property
    def results(self) -> str:
        return os.path.join(self.path, RESULTS)

    @property
    def state(self) -> str:
        return os.path.join(self.path, STATE_DIR)

    @property
    def plan(self) -> str:
        """JSON: every experiment ever planned here (id, repetitions, JSON config)."""
        return os.path.join(self.state, "plan.json")

    @property
    def format(self) -> str:
        """JSON: the on-disk format version of this OUT (``dagrun.disk.formatversion``)."""
        return os.path.join(self.state, "format.json")

    @property
    def planned_code(self) -> str:
        """JSON: the stage-code fingerprints and plan digest the sweep was last planned with
        (what its workers run): a re-plan that changes either waits for them to leave."""
        return os.path.join(self.state, "planned-code.json")

    @property
    def plan_index(self) -> str:
        """JSON: the plan's ids, repetitions and digest, for fast status and no-op runs."""
        return os.path.join(self.state, "plan-index.json")

    @property
    def workflow(self) -> str:
        """cloudpickle of the stage functions, basecfg and original cfgs (for resume)."""
        return os.path.join(self.state, "workflow.pkl")

    @property
    def code(self) -> str:
        """JSON: the stage-code fingerprints that have written markers here."""
        return os.path.join(self.state, "code.json")

    @property
    def values(self) -> str:
        """Folder: each distinct big cfg value once, named by its content digest
        (``<digest>.npy`` for arrays, ``<digest>.pkl`` for other values)."""
        return os.path.join(self.state, "values")

    @property
    def digest_cache(self) -> str:
        """JSON: the cfgs' content digests and a key of the cfgs they were computed from
        (a no-op re-execute of a large sweep then digests nothing)."""
        return os.path.join(self.state, "digests.json")

    @property
    def results_index(self) -> str:
        """JSON: which config digest and repetitions each results.jsonl line was reduced
        from, and the size and mtime of the results.jsonl it describes."""
        return os.path.join(self.state, "results-index.json")

    @property
    def results_cache(self) -> str:
        """marshal: results.jsonl decoded into columns, with the size and checksum of the
        bytes it was decoded from (``dagrun results`` then decodes only lines appended
        since)."""
        return os.path.join(self.state, "results-columns.marshal")

    @property
    def lock(self) -> str:
        return os.path.join(self.state, "lock")

    @property
    def unrecorded(self) -> str:
        """JSON lines: failed runs whose error record could not be written into their
        folder (read-only, full), kept here so ``status`` counts them
        (``dagrun.disk.unrecorded``)."""
        return os.path.join(self.state, "unrecorded.jsonl")

    @property
    def driver(self) -> str:
        """JSON naming the driver that holds the lock (host, pid, since)."""
        return os.path.join(self.state, "driver.json")

    @property
    def provenance(self) -> str:
        """JSON: where the last execute came from (git commit, host, versions, command)."""
        return os.path.join(self.state, "provenance.json")

    @property
    def report(self) -> str:
        """The HTML page ``dagrun report`` writes by default."""
        return os.path.join(self.path, "report.html")

    @property
    def workers(self) -> str:
        """Folder of ``dagrun worker`` announcements, one file per live worker
        (``dagrun.disk.leases.Presence``): a driver that sees one leases its runs."""
        return os.path.join(self.state, "workers")

    @property
    def lease_index(self) -> str:
        """Folder with one empty file per lease held in the sweep (``dagrun.disk.leases.
        LeaseIndex``): live holders are found without reading every run."""
        return os.path.join(self.state, "leases")

    @property
    def spares(self) -> str:
        """Folder of one empty file per process that runs stages in a worker
        (``LOG_SPARE``...), linked in as each stage's log (``dagrun.run.capture``), and of
        a driver's mark while it keeps empty attempt folders in finished runs for its next
        runs (``dagrun.disk.leases.Gate``). A driver empties it when it starts and ends:
        what a killed process left (a killed driver's mark: its folders are sought)."""
        return os.path.join(self.state, "spares")

    def worker_file(self, worker: str) -> str:
        """The announcement of worker ``worker`` (its ``Holder.worker`` id)."""
        return os.path.join(self.workers, f"{worker}.json")

    @property
    def slurm(self) -> str:
        """Folder of the slurm backend: worker logs, batch scripts, ``job.json``."""
        return os.path.join(self.state, "slurm")

    @property
    def slurm_jobs(self) -> str:
        """JSON: the Slurm arrays submitted for this sweep (to submit nothing twice)."""
        return os.path.join(self.slurm, "job.json")

    def slurm_log(self, task: str) -> str:
        """The log of array task ``task`` (``JOB_TASK``; ``%A_%a`` as sbatch's pattern)."""
        return os.path.join(self.slurm, f"worker-{task}.log")

    def slurm_script(self, job: str) -> str:
        """The batch script an array ran (kept to read what a worker was told)."""
        return os.path.join(self.slurm, f"worker-{job}.sh")

    @property
    def search(self) -> str:
        """Folder of an adaptive search (``dagrun.search``): one record per trial asked,
        and the lock under which trials are asked."""
        return os.path.join(self.state, "search")

    def trial_record(self, number: int) -> str:
        """JSON: trial ``number`` as it was asked (its parameters, its config's digest,
        the sampler's state after asking it)."""
        return os.path.join(self.search, f"trial-{number:06d}.json")

    @property
    def search_lock(self) -> str:
        return os.path.join(self.search, "lock")

    def experiment_path(self, exp_id: int) -> str:
        # plain concatenation: called for every run when planning a 100,000-run sweep
        return f"{self.path}{os.sep}{exp_id}"

    def run_dir(self, exp_id: int, rep: int, repetitions: int) -> RunDir:
        """``OUT/<id>/`` for a single repetition, ``OUT/<id>/<rep>/`` otherwise."""
        base = self.experiment_path(exp_id)
        return RunDir(base if repetitions == 1 else f"{base}{os.sep}{rep}")

    def run_paths(self, exp_id: int, repetitions: int) -> list[str]:
        """The folders of every repetition of an experiment (as ``run_dir``; one call per
        experiment, for the loops that plan 100,000 runs)."""
        base = self.experiment_path(exp_id)
        return [base] if repetitions == 1 else [f"{base}{os.sep}{r}" for r in range(repetitions)]

    def exists(self) -> bool:
        return Path(self.state).is_dir()
