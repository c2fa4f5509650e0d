"""The version of OUT's on-disk format: which dagrun can read a sweep, and which may join it.

Every change to what dagrun writes under OUT (file names, JSON fields, the classes inside
``workflow.pkl``) bumps ``FORMAT``, says what changed in ``HISTORY``, and keeps a sweep
written by the previous release working: readers (``status``, ``show``, ``results``,
``report``) read every format from ``OLDEST`` on, and a driver (``execute``, ``resume``,
``plan``) migrates an older OUT when it writes its state (then writes ``format.json``).

A ``dagrun worker`` joins only an OUT of its own format: workers of two releases on one
sweep would each follow their own protocol on disk (leases, markers). An OUT from a newer
dagrun is refused by every command rather than misread.
"""

from __future__ import annotations

from dagrun.disk import atomic
from dagrun.disk.layout import SweepDir
from dagrun.errors import UsageError
from dagrun.version import __version__

#: the format this dagrun writes
FORMAT = 5
#: the version of config digests (``dagrun.code.digest``) the plan holds: a plan of an older
#: one is matched once by positions (``dagrun.disk.identity``)
DIGESTS = 2
#: the scheme of code fingerprints (``dagrun.code.fingerprint``) markers and code.json hold:
#: an older one is taken once as the code of now (``dagrun.disk.codecheck``)
FINGERPRINTS = 2
#: the oldest format this dagrun reads (and migrates)
OLDEST = 1
HISTORY = {
    1: "dagrun 0.1.0 until the package moved into wings: no format.json; workflow.pkl "
       "names dagrun's classes by their flat module paths (dagrun.workflow.Workflow)",
    2: "format.json; workflow.pkl names dagrun's classes by their paths in the wings "
       "(dagrun.code.workflow.Workflow); planned-code.json (the code and plan workers "
       "load); lease.json says its holder's timeout and heartbeat interval",
    3: "fenced leases: lease.json carries a token; every holder writes a run through its "
       "attempt folder RUN/.attempt-<token>-<holder> (a format-2 worker would write "
       "around the fence)",
    4: "the copy of the code holds the user's packages whole: OUT/.dagrun/code/files/<sha256> "
       "(each file content once), OUT/.dagrun/code/<digest>/ (the tree, hard links to "
       "those) and code/index.json (a stat cache); the snapshot in workflow.pkl names the "
       "copied top-level modules (tops), the script's argv and its layout (2); a format-3 "
       "worker would import the copy by the old flat layout",
    5: "experiments known by content: plan version 3 (each experiment's position in cfgs, "
       "aliases, orphans; ids are no longer positions), config digests of version 2, code "
       "fingerprints of scheme 2 (code.json says its scheme); workflow.pkl maps each cfg to "
       "its experiment id (a format-4 worker would take cfg i for experiment i); big cfg "
       "values in OUT/.dagrun/values/<digest>.npy|.pkl, referred to from workflow.pkl; "
       "provenance per version of the code (OUT/.dagrun/provenance/<code id>.json) named by "
       "each marker's origin",
}


def read(sweep: SweepDir) -> int:
    """The format of the sweep at ``sweep`` (1 when it predates format.json)."""
    data = atomic.read_json_or_none(sweep.format)
    if data is None:
        return 1
    version = data.get("format") if isinstance(data, dict) else None
    if type(version) is not int or version < 1:
        raise UsageError(f"{sweep.format} is damaged (no format number); write it again "
                         f"with `dagrun execute WORKFLOW.py` or remove it if OUT was written "
                         f"by dagrun {__version__} or older")
    return version


def check_readable(sweep: SweepDir) -> int:
    """The sweep's format; ``UsageError`` when this dagrun cannot read it."""
    version = read(sweep)
    if version > FORMAT:
        raise UsageError(
            f"{sweep.path} was written by a newer dagrun (on-disk format {version}); this "
            f"dagrun {__version__} reads formats {OLDEST} to {FORMAT}: upgrade dagrun")
    if version < OLDEST:
        raise UsageError(
            f"{sweep.path} has on-disk format {version}, older than this dagrun reads "
            f"({OLDEST} to {FORMAT}): run it with the dagrun that wrote it")
    return version


def check_joinable(sweep: SweepDir) -> None:
    """``UsageError`` unless a worker of this dagrun may join the sweep (same format)."""
    version = check_readable(sweep)
    if version != FORMAT:
        raise UsageError(
            f"{sweep.path} has on-disk format {version}, this dagrun worker format {FORMAT}: "
            f"run `dagrun plan WORKFLOW.py --out {sweep.path}` with this dagrun first (it "
            f"brings OUT to format {FORMAT}), or workers of the dagrun that wrote it")


def write(sweep: SweepDir) -> None:
    """Record that OUT now holds this dagrun's format (after its state was written)."""
    atomic.write_json(sweep.format, {"format": FORMAT, "dagrun": __version__}, indent=None)
