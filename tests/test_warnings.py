"""A run's warnings: the first of each kind is printed, the others are counted (issue: your
code, exactly as Python runs it).

When every run of a sweep has the same warning (each ``pre`` returns an object that cannot
be pickled), ``dagrun execute`` prints it once, in full and naming its run, and its summary
says how many runs had it. The end-to-end test runs a real ``dagrun`` process with a
bounded timeout; the others check the warning's own round trips.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dagrun.backends.ssh.protocol import outcome_from_json, outcome_to_json
from dagrun.run.runwarning import RunWarning, WarningKind, WarningTally
from dagrun.run.stages import RunOutcome, RunTask
from tests.helpers import backend_flags, run_dagrun, write_workflow

pytestmark = pytest.mark.timeout(180)

# pre returns a model holding a lock (and a lambda): it cannot be pickled, so pre is not
# checkpointed, in every one of the 20 runs.
UNPICKLABLE_WORKFLOW = """
import threading


class Model:
    def __init__(self):
        self.lock = threading.Lock()
        self.act = lambda x: x


def pre(cfg):
    return Model()


def fit(cfg, model):
    return model.act(cfg["x"])


def post(cfg, y):
    return {"y": y}


basecfg = {"out_path": "out"}
cfgs = [{"x": x} for x in range(20)]
"""


@pytest.mark.parametrize("backend", ["single", "multiprocessing"])
def test_a_warning_every_run_has_is_printed_once_and_counted(tmp_path: Path,
                                                             backend: str) -> None:
    wf = write_workflow(tmp_path, UNPICKLABLE_WORKFLOW, name="wf.py")
    result = run_dagrun("execute", wf, *backend_flags(backend), cwd=tmp_path, timeout=150)
    assert result.rc == 0, result.stderr
    output = result.stdout + "\n".join(result.error_lines)
    assert output.count("pre is not checkpointed and reruns on resume") == 1, output
    warned = [line for line in result.error_lines if "not checkpointed" in line]
    assert warned[0].startswith("dagrun: warning: run ")
    assert "cannot be pickled (TypeError" in warned[0]
    first = warned[0].split("run ", 1)[1].split(":", 1)[0]  # the run it names
    counted = f"warnings: 20 × pre output cannot be pickled (first: run {first})"
    assert output.count(counted) == 1, output
    assert output.count("× ") == 1, output  # no other warning


def _warning() -> RunWarning:
    return RunWarning(WarningKind.UNPICKLABLE_OUTPUT, "pre output cannot be pickled",
                      "pre output of /out/0 cannot be pickled (...)", "pre")


def test_outcome_with_warnings_crosses_pickle_and_the_ssh_protocol() -> None:
    outcome = RunOutcome(RunTask(0, 0, "/out/0"), None, ("pre",), (_warning(),))
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    back, _recorded = outcome_from_json(outcome_to_json(outcome))
    assert back.warnings == outcome.warnings


def test_a_bare_string_or_unknown_kind_is_an_other_warning() -> None:
    assert RunWarning.from_json("old text") == RunWarning.other("old text")
    unknown = {"kind": "from_the_future", "topic": "t", "message": "m", "stage": ""}
    assert RunWarning.from_json(unknown) == RunWarning.other("m")


def test_tally_counts_by_kind_stage_and_topic() -> None:
    tally = WarningTally()
    assert tally.add("3/0", _warning())
    assert not tally.add("4/0", _warning())
    other_stage = RunWarning(WarningKind.UNPICKLABLE_OUTPUT, "fit output cannot be pickled",
                             "fit output of /out/3 cannot be pickled (...)", "fit")
    assert tally.add("3/0", other_stage)
    assert tally.lines() == ["warnings: 2 × pre output cannot be pickled (first: run 3/0)",
                             "warnings: 1 × fit output cannot be pickled (first: run 3/0)"]
