"""The ``dagrun`` command: subcommands, and exceptions mapped to exit codes.

Exit codes: 0 every planned run is done; 1 some runs failed; 2 bad usage, workflow or
config, or an environment dagrun cannot work in (one line on stderr, no traceback); 3 a bug
in dagrun itself (its traceback, and a line saying so); 130 interrupted (SIGINT), 143
terminated (SIGTERM), 129 hung up (SIGHUP).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from dagrun.disk.layout import Stage
from dagrun.errors import DagrunError, Terminated, UsageError
from dagrun.run.signals import exit_code, received
from dagrun.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
A workflow file is plain Python defining `basecfg` (dict) and `cfgs` (list of dicts); pre, fit
and post are basecfg entries or module-level functions. Its `if __name__ == "__main__":` block
is not run. Command-line flags override basecfg.

exit codes: 0 all planned runs done, 1 some runs failed, 2 bad usage/workflow/config or an
environment dagrun cannot work in (read-only or full disk), 3 a bug in dagrun itself,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP). Finished stages
are kept in every case: run the same command again to resume."""


def _number(text: str, kind: type, minimum: int) -> Any:
    """``text`` as an int (or float) >= ``minimum``, or argparse's one-line error."""
    what = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what} >= {minimum}, got {text!r}") from None
    if value != value or value < minimum or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be {what} >= {minimum}, got {text}")
    return value


def _positive_int(text: str) -> int:
    value: int = _number(text, int, 1)
    return value


def _non_negative(kind: type) -> Any:
    def parse(text: str) -> Any:
        return _number(text, kind, 0)
    return parse


def _run_flags(p: argparse.ArgumentParser, with_out: bool) -> None:
    p.add_argument("--backend",
                   help="single, multiprocessing, ray, ssh (alias malocher) or slurm")
    if with_out:
        p.add_argument("--out", metavar="DIR", help="out_path of the sweep (overrides basecfg)")
    p.add_argument("-j", "--num-cpus", type=_positive_int, metavar="N",
                   help="multiprocessing: runs at once; ray: CPUs per run; slurm: workers")
    p.add_argument("--repetitions", type=_positive_int, metavar="R",
                   help="runs per experiment (a cfg's own 'repetitions' wins)")
    p.add_argument("--timeout", type=_non_negative(float), metavar="S",
                   help="seconds one run may take before it is stopped (0: none)")
    p.add_argument("--retries", type=_non_negative(int), metavar="N",
                   help="extra attempts for a failed run")
    p.add_argument("--hosts", metavar="H[:SLOTS],...", help="ssh backend: the machines to use")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run and why; run nothing, write nothing")
    p.add_argument("--rerun-changed", action="store_true",
                   help="recompute experiments whose config (or stages whose code) changed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dagrun", description="Run experiment sweeps the way Make runs builds.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dagrun {__version__}",
                        help="print dagrun's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("execute", help="run a workflow file's sweep (only what is not done)",
                       usage="dagrun execute WORKFLOW.py [options] [-- SCRIPT_ARGS ...]",
                       description="Arguments after `--` are the workflow script's own "
                       "sys.argv[1:] (as `python WORKFLOW.py ARGS` gives them), in every "
                       "process that loads it.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", metavar="WORKFLOW.py")
    _run_flags(p, with_out=True)
    p.add_argument("--detach", action="store_true",
                   help="slurm: submit the workers, print the job id and return")
    p = sub.add_parser("resume", help="continue a sweep from what OUT stores (no workflow file)")
    p.add_argument("out", metavar="OUT")
    _run_flags(p, with_out=False)
    p = sub.add_parser("status", help="counts per stage; failed runs with their error")
    p.add_argument("out", metavar="OUT")
    p = sub.add_parser("show", help="one run: config, markers, metrics, error, log tail")
    p.add_argument("out", metavar="OUT")
    p.add_argument("run", metavar="ID[/REP]")
    p.add_argument("-n", "--lines", type=_positive_int, default=15, help="log lines to show")
    p = sub.add_parser("reduce", help="rebuild OUT/results.jsonl from the runs on disk")
    p.add_argument("out", metavar="OUT")
    p = sub.add_parser("clean", help="invalidate stages so the next execute recomputes them; "
                       "--orphans: remove experiments no longer in the cfgs")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--orphans", action="store_true",
                   help="remove the folders of experiments no longer in the cfgs (kept by "
                        "every execute until then), and nothing else")
    p.add_argument("--stage", choices=[s.value for s in Stage], default="pre",
                   help="first stage to invalidate; later stages go too (default: pre, all)")
    p.add_argument("--ids", nargs="+", metavar="ID", help="experiment ids, e.g. 3 5-7 9,10")
    p.add_argument("--failed", action="store_true", help="only runs that failed")
    _results_parsers(sub)
    _worker_parsers(sub)
    return parser


def _results_parsers(sub: Any) -> None:
    """``dagrun results`` and ``dagrun report``."""
    from dagrun.results.formats import FORMATS
    from dagrun.results.table import SPREADS

    p = sub.add_parser("results", help="one row per experiment: varied keys, metrics "
                                        "(mean and spread over repetitions), state")
    p.add_argument("out", metavar="OUT", nargs="?")
    p.add_argument("--sort", metavar="COL",
                   help="sort by a column (mean_acc) or a metric (acc: its mean)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--desc", action="store_const", const=True, dest="desc",
                       help="sort largest first (--group-by: keep the largest)")
    order.add_argument("--asc", action="store_const", const=False, dest="desc",
                       help="sort smallest first, the default (--group-by: keep the "
                            "smallest)")
    p.add_argument("--top", type=_positive_int, metavar="K", help="only the first K rows")
    p.add_argument("--where", action="append", default=[], metavar="FILTER",
                   help="KEY OP VALUE, OP one of = != < <= > >= in (lr<0.1, 'dataset in "
                        "iris,digits'); on config keys, metrics and state; repeatable")
    p.add_argument("--group-by", metavar="KEY",
                   help="with --sort: the best row per KEY value, by the metric's "
                        "direction (from its name; --asc/--desc to choose)")
    p.add_argument("--include-incomplete", action="store_true",
                   help="rank (--sort, --top, --group-by) also experiments that are not "
                        "complete")
    p.add_argument("--columns", nargs="+", metavar="COL",
                   help="show these columns (config keys, columns, metric names)")
    p.add_argument("--spread", choices=SPREADS, default="std",
                   help="after ±: std (ddof=0, default), sem (standard error) or ci95 "
                        "(95%% confidence interval of the mean)")
    p.add_argument("--bold-best", action="store_true",
                   help="latex, markdown: the best mean of each metric in bold")
    p.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    p = sub.add_parser("report", help="write one self-contained HTML page about a sweep")
    p.add_argument("out", metavar="OUT")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where (default OUT/report.html; a folder: FOLDER/report.html)")


def _worker_parsers(sub: Any) -> None:
    """``dagrun plan`` and ``dagrun worker``: a sweep executed by workers that join it."""
    p = sub.add_parser("plan", help="write the plan and the workflow's code; run nothing "
                                    "(workers execute it)")
    p.add_argument("workflow", metavar="WORKFLOW.py")
    _run_flags(p, with_out=True)
    p = sub.add_parser("worker", help="claim and execute runs of the sweep in OUT until none "
                                      "is left (any machine that sees OUT)")
    p.add_argument("out", metavar="OUT")
    p.add_argument("-j", "--num-cpus", type=_positive_int, metavar="N",
                   help="runs at once (default: basecfg num_cpus)")
    p.add_argument("--lease-timeout", type=_positive_number, metavar="S",
                   help="seconds without a heartbeat before a run's lease is stale (60)")
    p.add_argument("--idle-exit", type=_non_negative(float), metavar="S",
                   help="leave after S seconds with nothing to claim while other workers "
                        "still hold runs, unless this is the last live worker (it stays to "
                        "take over leases that go stale); exit 0 only when every run is "
                        "done, else 1 (default: wait for them)")


def _positive_number(text: str) -> float:
    value: float = _number(text, float, 0)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a number > 0, got 0")
    return value


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    mapping = {"backend": "backend", "num_cpus": "num_cpus", "repetitions": "repetitions",
               "timeout": "timeout", "retries": "retries", "hosts": "hosts",
               "out": "out_path"}
    out = {key: getattr(args, attr) for attr, key in mapping.items()
           if getattr(args, attr, None) is not None}
    if args.quiet:
        out["verbose"] = False
    return out


def _cmd_execute(args: argparse.Namespace) -> int:
    from dagrun.code.workflow import workflow_from_file
    from dagrun.scheduler import Options, execute

    _script_argv(args)
    basecfg, cfgs = workflow_from_file(args.workflow)
    basecfg = _slurm_workers({**basecfg, **_overrides(args)}, args.num_cpus)
    options = Options(args.dry_run, args.rerun_changed, os.path.abspath(args.workflow),
                      detach=args.detach)
    if basecfg.get("search") is not None:  # an adaptive search (dagrun.optimize)
        from dagrun.optimize import run_search

        summary = run_search(basecfg, cfgs, None, options)
        return EXIT_OK if summary.ok or summary.dry_run or args.detach else EXIT_FAILED
    summary = execute(basecfg, cfgs, options)
    return EXIT_OK if summary.ok or summary.dry_run or args.detach else EXIT_FAILED


def _slurm_workers(basecfg: dict[str, Any], jobs: int | None) -> dict[str, Any]:
    """On the slurm backend ``-j N`` is how many workers (basecfg ``workers``)."""
    if jobs is not None and basecfg.get("backend") == "slurm":
        basecfg.pop("num_cpus", None)
        basecfg["workers"] = jobs
    return basecfg


def _cmd_resume(args: argparse.Namespace) -> int:
    from dagrun.api import resume

    summary = resume(args.out, _overrides(args), rerun_changed=args.rerun_changed,
                     dry_run=args.dry_run)
    return EXIT_OK if summary.ok or summary.dry_run else EXIT_FAILED


def _cmd_plan(args: argparse.Namespace) -> int:
    from dagrun.code.workflow import workflow_from_file
    from dagrun.scheduler import Options, execute

    _script_argv(args)
    basecfg, cfgs = workflow_from_file(args.workflow)
    basecfg = {**basecfg, **_overrides(args)}
    options = Options(args.dry_run, args.rerun_changed, os.path.abspath(args.workflow),
                      plan_only=True)
    if basecfg.get("search") is not None and not args.dry_run:  # workers extend the study
        from dagrun.optimize import plan_search

        summary = plan_search(basecfg, cfgs, None, options)
    else:
        summary = execute(basecfg, cfgs, options)
    if not summary.dry_run:
        todo = summary.planned - summary.skipped
        print(f"planned {summary.planned} runs in {summary.out_path} ({todo} to do); run "
              "them with: dagrun worker OUT (on any machine that sees OUT)")
    return EXIT_OK


def _cmd_worker(args: argparse.Namespace) -> int:
    from dagrun.optimize import run_search_worker
    from dagrun.worker import WorkerOptions

    # a search's workers ask trials themselves; any other sweep: dagrun.worker.run_worker
    return run_search_worker(args.out, WorkerOptions(args.num_cpus, args.lease_timeout,
                                                     args.idle_exit))


def _cmd_status(args: argparse.Namespace) -> int:
    from dagrun.status import status_lines

    for line in status_lines(args.out):
        print(line)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from dagrun.status import show_lines

    for line in show_lines(args.out, args.run, args.lines):
        print(line)
    return EXIT_OK


def _cmd_reduce(args: argparse.Namespace) -> int:
    from dagrun.disk.lock import driver_lock
    from dagrun.disk.planstore import read_plan, require_sweep
    from dagrun.results import reduce

    sweep = require_sweep(args.out)
    with driver_lock(sweep):
        lines = reduce.rewrite(sweep, read_plan(sweep).values())
    print(f"{sweep.results}: {lines} experiments")
    return EXIT_OK


def _cmd_clean(args: argparse.Namespace) -> int:
    from dagrun.clean import clean, clean_orphans, parse_ids
    from dagrun.disk.identity import id_ranges

    if args.orphans:
        if args.ids or args.failed or args.stage != "pre":
            raise UsageError("--orphans removes whole experiments: it takes no --ids, "
                             "--failed or --stage")
        removed = clean_orphans(args.out)
        shown = id_ranges(removed) if removed else "none"
        print(f"removed {len(removed)} orphan experiment(s) (ids {shown})")
        return EXIT_OK
    ids = parse_ids(args.ids) if args.ids else None
    result = clean(args.out, Stage(args.stage), ids, args.failed)
    print(f"invalidated {result.stages} stage(s) in {result.runs} run(s); "
          f"results.jsonl now lists {result.results_lines} experiments")
    return EXIT_OK


def _cmd_results(args: argparse.Namespace) -> int:
    from dagrun.results.formats import format_results
    from dagrun.results.read import gc_paused
    from dagrun.results.table import query

    out = _results_out(args)
    with gc_paused():  # (a process that reads, formats and exits)
        table = query(out, sort=args.sort, desc=args.desc, top=args.top, where=args.where,
                      group_by=args.group_by, columns=args.columns,
                      include_incomplete=args.include_incomplete, spread=args.spread)
        for note in table.notes:
            print(f"dagrun: note: {note}", file=sys.stderr)
        sys.stdout.write(format_results(table, args.format, bold_best=args.bold_best))
    return EXIT_OK


def _results_out(args: argparse.Namespace) -> str:
    """``results``' OUT: given before the options, or taken by ``--columns`` as its last
    name (``results --columns acc OUT``) when that is a folder."""
    if args.out is not None:
        return str(args.out)
    if args.columns and len(args.columns) > 1 and os.path.isdir(args.columns[-1]):
        return str(args.columns.pop())
    raise UsageError("results needs OUT, the sweep's folder (dagrun results OUT [options]; "
                     "--columns takes every name after it, so put OUT first)")


def _cmd_report(args: argparse.Namespace) -> int:
    from dagrun.results.html import write_report

    print(write_report(args.out, _report_path(args.output)))
    return EXIT_OK


def _report_path(output: str | None) -> str | None:
    """``report -o``: a file, or a folder (then ``FOLDER/report.html``), in a folder that
    exists."""
    if output is None:
        return None
    if os.path.isdir(output) or output.endswith(("/", os.sep)):
        output = os.path.join(output, "report.html")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write the report to {output}: the folder {folder} does "
                         "not exist")
    return output


COMMANDS = {"execute": _cmd_execute, "resume": _cmd_resume, "status": _cmd_status,
            "show": _cmd_show, "reduce": _cmd_reduce, "clean": _cmd_clean,
            "results": _cmd_results, "report": _cmd_report, "plan": _cmd_plan,
            "worker": _cmd_worker}


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` of the CLI: dagrun's own warnings (a ``DagrunWarning``, or
    one warned from dagrun's code) as one ``dagrun: warning:`` line; every other warning
    (a stage's, a library's) as Python shows it, with its category and location."""
    from dagrun.errors import DagrunWarning

    own = os.path.dirname(os.path.abspath(__file__)) + os.sep
    if issubclass(category, DagrunWarning) or os.path.abspath(filename).startswith(own):
        text = f"dagrun: warning: {message}\n"
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line)
    print(text, end="", file=file if file is not None else sys.stderr)


def split_script_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``execute``/``plan``: the arguments after ``--`` are the workflow script's own
    (``dagrun execute wf.py -- --scale 3``), kept out of dagrun's parser."""
    argv = list(argv)
    if "--" in argv and any(a in ("execute", "plan") for a in argv[:argv.index("--")]):
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def _script_argv(args: argparse.Namespace) -> None:
    """The workflow file sees ``sys.argv`` as ``python WORKFLOW.py ARGS...`` would give it
    (while it is loaded here, and in every process that loads its copy)."""
    sys.argv = [args.workflow, *getattr(args, "script_args", [])]


SWEEPS = ("execute", "resume")  # the commands that execute a sweep (maybe supervised)


def _supervised(args: argparse.Namespace) -> list[str] | None:
    """The command line to execute in a child (``dagrun.run.supervisor``) when this is the
    ``dagrun`` command executing a sweep whose stages may run in the sweep's own process
    (its flags do not rule out ``single`` without a timeout); None otherwise."""
    from dagrun.run import supervisor

    if args.dry_run or getattr(args, "detach", False):
        return None
    if args.backend not in (None, "single") or args.timeout:
        return None
    return supervisor.command_line()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dagrun`` command; returns the exit code.

    As the command (``argv`` None: the program's own arguments), ``execute`` and ``resume``
    run the sweep in a child of this process, which records a run whose stage ended the
    sweep's process and executes the rest (``dagrun.run.supervisor``); called with
    ``argv``, everything runs in this process."""
    as_command = argv is None
    argv, script_args = split_script_args(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.script_args = script_args
    if args.command not in SWEEPS:
        return _main(args)
    from dagrun.run import supervisor

    if supervisor.ENV in os.environ:  # the sweep's process of a supervising command
        return _main(args, supervised=True)
    command = _supervised(args) if as_command else None
    if command is None:
        return _main(args)
    return supervisor.Supervisor(command, args.quiet).run()


def _main(args: argparse.Namespace, supervised: bool = False) -> int:
    """Run the command here; ``supervised``: in the child of a supervising ``dagrun``
    command, told at the end that this one ends normally."""
    warnings.showwarning = _show_warning
    try:
        if supervised:  # (the stop signals the supervisor blocked wait until here)
            from dagrun.run.supervisor import attach

            attach()
        return COMMANDS[args.command](args)
    except DagrunError as exc:  # a user mistake, or an environment dagrun cannot work in
        print(f"dagrun: error: {exc}", file=sys.stderr)  # (a full disk, a lost cluster)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else received()
        if signum is not None:
            name = "terminated (SIGTERM)" if signum == signal.SIGTERM else "hung up (SIGHUP)"
            print(f"dagrun: {name}; finished stages are kept, run again to resume",
                  file=sys.stderr)
            return exit_code(signum)
        print("dagrun: interrupted; finished stages are kept, run again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # dagrun's own reads and writes: the environment, not a bug
        print(f"dagrun: error: {_os_problem(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # anything else is a bug in dagrun, not in the workflow
        traceback.print_exc()
        print("dagrun: internal error: the traceback above is a bug in dagrun itself, not in "
              "your workflow; please report it with that traceback. Finished stages are "
              "kept.", file=sys.stderr)
        return EXIT_BUG
    finally:
        if supervised:
            from dagrun.run.supervisor import ended

            ended()


def _os_problem(exc: OSError) -> str:
    """One line for an OSError of dagrun's own I/O: the file, what failed, what to do."""
    where = f" {exc.filename}" if exc.filename else ""
    hint = {errno.ENOSPC: "free some space", errno.EROFS: "use a writable out_path",
            errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
            errno.ENAMETOOLONG: "use a shorter out_path"}.get(exc.errno or 0,
                                                              "check the file and the disk")
    return f"cannot use{where}: {exc.strerror or exc} ({hint})"
