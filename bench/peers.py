#!/usr/bin/env python3
"""Time peer tools (Hydra multirun, Snakemake) on the same no-op sweep that dagrun runs.

Every peer runs N runs of a no-op "pre/fit/post" pipeline that writes, in one folder per run,
the files a dagrun run writes: ``config.json``, ``pre.pkl`` + ``pre.done``, ``fit.pkl`` +
``fit.done``, ``post.json`` + ``post.done`` (small files, each written atomically through a
temp file and ``os.replace``). What is measured is the wall time of the whole tool process,
interpreter start-up included, so the figures compare with dagrun's end-to-end times.

The peers live in their own virtual environment (default ``bench/.peers-venv``), created once
and reused while its marker file says it is complete; they are never installed into the
project's own environment. The same venv holds the cached-runner peers (labtech, exca) that
``cached_peers.py`` and ``behaviour.py`` time and hurt.

Measurements:

* ``hydra multirun (basic)``: ``app.py --multirun x=range(0,N)`` with the basic launcher,
  Hydra's own logging disabled.
* ``snakemake (threads)``: N jobs of a ``run:`` rule, ``--cores 2 --force-use-threads``.
* ``snakemake re-run (no-op)``: the same command again on the finished workflow of the
  largest size (nothing to do).
* ``snakemake (default)``: the default mode, where each ``run:`` job starts its own
  Snakemake process; only at ``DEFAULT_MODE_RUNS`` runs since it costs seconds per job.

Usage::

    python bench/peers.py                      # sizes 200,2000 + default mode at 40
    python bench/peers.py --sizes 200 --no-default-mode
    python bench/peers.py --json rows.json     # also dump the rows

Other scripts can ``from peers import measure_peers`` (with ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV = BENCH_DIR / ".peers-venv"
PEER_REQUIREMENTS: tuple[str, ...] = (
    "hydra-core~=1.3",
    "snakemake~=9.0",
    "labtech~=1.1",
    "exca~=0.6",
)
PEER_DISTRIBUTIONS: tuple[str, ...] = (
    "hydra-core",
    "omegaconf",
    "snakemake",
    "labtech",
    "exca",
    "submitit",
    "pydantic",
)
MARKER_NAME = ".peers-complete.json"
DEFAULT_SIZES: tuple[int, ...] = (200, 2000)
DEFAULT_MODE_RUNS = 40
TIMEOUT_S = 900.0
INSTALL_TIMEOUT_S = 1800.0
LOG_TAIL_CHARS = 2000
RUN_FILES: tuple[str, ...] = (
    "config.json",
    "pre.pkl",
    "pre.done",
    "fit.pkl",
    "fit.done",
    "post.json",
    "post.done",
)

# Shared by the Hydra app and the Snakefile: the per-run no-op work, written atomically.
WRITE_RUN_SRC = '''
import json as _json
import os as _os
import pickle as _pickle
import tempfile as _tempfile
import time as _time


def _write_atomic(path, data):
    fd, tmp = _tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with _os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _os.replace(tmp, path)
    except BaseException:
        try:
            _os.unlink(tmp)
        except OSError:
            pass
        raise


def _done(path, stage):
    _write_atomic(path, _json.dumps({"stage": stage, "finished": _time.time()}).encode())


def write_run(run_dir, params):
    """No-op pre/fit/post: the same files a dagrun run writes in its folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "config.json", _json.dumps(params, sort_keys=True).encode())
    pre = {"stage": "pre", "params": params}
    _write_atomic(run_dir / "pre.pkl", _pickle.dumps(pre))
    _done(run_dir / "pre.done", "pre")
    fit = {"stage": "fit", "pre": pre}
    _write_atomic(run_dir / "fit.pkl", _pickle.dumps(fit))
    _done(run_dir / "fit.done", "fit")
    _write_atomic(run_dir / "post.json", _json.dumps({"stage": "post", "params": params}).encode())
    _done(run_dir / "post.done", "post")
'''

HYDRA_APP_SRC = (
    WRITE_RUN_SRC
    + """
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    write_run(out, OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
"""
)

HYDRA_CONFIG_SRC = "x: 0\n"

SNAKEFILE_SRC = (
    "from pathlib import Path\n"
    + WRITE_RUN_SRC
    + """
# Snakemake config keys need two or more characters ("n=5" is rejected).
N = int(config["runs"])

wildcard_constraints:
    i=r"\\d+"

rule all:
    input:
        expand("runs/{i}/post.done", i=range(N))

rule one_run:
    output:
        "runs/{i}/config.json",
        "runs/{i}/pre.pkl",
        "runs/{i}/pre.done",
        "runs/{i}/fit.pkl",
        "runs/{i}/fit.done",
        "runs/{i}/post.json",
        "runs/{i}/post.done",
    run:
        write_run(Path(output[0]).parent, {"x": int(wildcards.i)})
"""
)


@dataclass
class VenvInfo:
    """The peers' virtual environment, as found or created by :func:`ensure_venv`."""

    path: Path
    python: Path
    versions: dict[str, str]
    created: bool
    setup_seconds: float


@dataclass
class ToolRun:
    """Outcome of one timed tool process."""

    seconds: float
    returncode: int | None
    timed_out: bool
    log_tail: str
    log_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def clean_env(venv: Path) -> dict[str, str]:
    """Environment for the peer processes: the peers venv first, no leak from ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "PYTHONSTARTUP"}
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["HYDRA_FULL_ERROR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _read_marker(venv: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((venv / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _installed_versions(
    python: Path, env: dict[str, str], distributions: tuple[str, ...] = PEER_DISTRIBUTIONS
) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        f"names = {list(distributions)!r}\n"
        "print(json.dumps({n: m.version(n) for n in names}))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    versions: dict[str, str] = json.loads(out.stdout)
    versions["python"] = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return versions


def ensure_venv(
    venv: Path = DEFAULT_VENV,
    *,
    verbose: bool = True,
    requirements: tuple[str, ...] = PEER_REQUIREMENTS,
    distributions: tuple[str, ...] = PEER_DISTRIBUTIONS,
) -> VenvInfo:
    """Create the peers' virtual environment unless a complete one is already there.

    A venv is complete when its marker file lists the current ``requirements`` (default
    ``PEER_REQUIREMENTS``; ``distributions``: whose versions it records) and its
    interpreter exists. An incomplete venv (interrupted install, other requirements) is
    removed and built again; a non-empty folder that is not a venv is never removed.
    """
    venv = venv.resolve()
    python = _venv_python(venv)
    env = clean_env(venv)
    marker = _read_marker(venv)
    if (
        marker is not None
        and marker.get("requirements") == list(requirements)
        and python.exists()
    ):
        versions = marker.get("versions")
        if isinstance(versions, dict):
            return VenvInfo(venv, python, dict(versions), created=False, setup_seconds=0.0)

    if venv.exists() and any(venv.iterdir()):
        if not (venv / "pyvenv.cfg").exists():
            raise RuntimeError(f"{venv} exists and is not a virtual environment; not touching it")
        shutil.rmtree(venv)

    t0 = time.perf_counter()
    if verbose:
        print(f"creating peers venv {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *requirements,
        ],
        env=env,
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    versions = _installed_versions(python, env, distributions)
    setup_seconds = time.perf_counter() - t0
    (venv / MARKER_NAME).write_text(
        json.dumps(
            {
                "requirements": list(requirements),
                "versions": versions,
                "setup_seconds": round(setup_seconds, 1),
            },
            indent=2,
        )
    )
    if verbose:
        print(f"peers venv ready in {setup_seconds:.1f} s: {versions}", file=sys.stderr)
    return VenvInfo(venv, python, versions, created=True, setup_seconds=setup_seconds)


def run_timed(
    cmd: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> ToolRun:
    """Run ``cmd`` with output to ``log``; kill its whole process group on timeout."""
    with log.open("wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.perf_counter() - t0
    size = log.stat().st_size
    with log.open("rb") as fh:
        fh.seek(max(0, size - LOG_TAIL_CHARS))
        tail = fh.read().decode(errors="replace")
    return ToolRun(seconds, None if timed_out else proc.returncode, timed_out, tail, size)


def _count_complete_runs(root: Path) -> int:
    """Run folders directly under ``root`` that hold every expected file."""
    if not root.is_dir():
        return 0
    return sum(
        1 for d in root.iterdir() if d.is_dir() and all((d / name).is_file() for name in RUN_FILES)
    )


def _count_files(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def _row(
    tool: str, runs: int, result: ToolRun, complete: int, version: str, workdir: Path | None
) -> dict[str, Any]:
    if result.timed_out:
        status = "timeout"
    elif result.returncode != 0:
        status = f"error (exit {result.returncode})"
    elif complete != runs:
        status = f"error ({complete}/{runs} runs complete)"
    else:
        status = "ok"
    row: dict[str, Any] = {
        "tool": tool,
        "runs": runs,
        "seconds": round(result.seconds, 3),
        "ms_per_run": round(1000.0 * result.seconds / runs, 3) if runs else None,
        "status": status,
        "version": version,
        "log_bytes": result.log_bytes,
        "files": _count_files(workdir) if workdir is not None else None,
    }
    if status != "ok":
        row["log_tail"] = result.log_tail
    return row


def measure_hydra(n: int, info: VenvInfo, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """Hydra multirun, basic launcher, ``x=range(0,n)``; one folder per job."""
    tmp = Path(tempfile.mkdtemp(prefix="dagrun-peers-hydra-"))
    try:
        (tmp / "conf").mkdir()
        (tmp / "conf" / "config.yaml").write_text(HYDRA_CONFIG_SRC)
        (tmp / "app.py").write_text(HYDRA_APP_SRC)
        sweep = tmp / "sweep"
        cmd = [
            str(info.python),
            str(tmp / "app.py"),
            "--multirun",
            f"x=range(0,{n})",
            "hydra/launcher=basic",
            "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled",
            f"hydra.sweep.dir={sweep}",
        ]
        result = run_timed(cmd, tmp, clean_env(info.path), tmp / "tool.log", timeout)
        return _row(
            "hydra multirun (basic)",
            n,
            result,
            _count_complete_runs(sweep),
            f"hydra-core {info.versions.get('hydra-core', '?')}",
            sweep,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _snakemake_cmd(info: VenvInfo, workdir: Path, n: int, threads: bool) -> list[str]:
    cmd = [
        str(info.path / "bin" / "snakemake"),
        "--snakefile",
        str(workdir / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--config",
        f"runs={n}",
        "--quiet",
    ]
    if threads:
        cmd.append("--force-use-threads")
    return cmd


def measure_snakemake(
    n: int, info: VenvInfo, *, threads: bool, rerun: bool, timeout: float = TIMEOUT_S
) -> list[dict[str, Any]]:
    """Snakemake with one ``run:`` job per run; optionally time a no-op re-run afterwards."""
    version = f"snakemake {info.versions.get('snakemake', '?')}"
    tool = "snakemake (threads)" if threads else "snakemake (default)"
    tmp = Path(tempfile.mkdtemp(prefix="dagrun-peers-smk-"))
    env = clean_env(info.path)
    rows: list[dict[str, Any]] = []
    try:
        work = tmp / "wf"
        work.mkdir()
        (work / "Snakefile").write_text(SNAKEFILE_SRC)
        cmd = _snakemake_cmd(info, work, n, threads)
        result = run_timed(cmd, tmp, env, tmp / "tool.log", timeout)
        rows.append(_row(tool, n, result, _count_complete_runs(work / "runs"), version, work))
        if rerun and rows[-1]["status"] == "ok":
            again = run_timed(cmd, tmp, env, tmp / "rerun.log", timeout)
            rows.append(
                _row(
                    "snakemake re-run (no-op)" + ("" if threads else " default"),
                    n,
                    again,
                    _count_complete_runs(work / "runs"),
                    version,
                    None,
                )
            )
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_peers(
    sizes: list[int],
    venv: Path = DEFAULT_VENV,
    include_default_mode: bool = True,
    *,
    timeout: float = TIMEOUT_S,
    verbose: bool = True,
) -> list[dict[str, Any]]:
    """Time every peer at every size; return one row per measurement.

    Each row has ``tool``, ``runs``, ``seconds``, ``ms_per_run``, ``status`` (``"ok"`` or
    the reason it failed), ``version``, ``log_bytes`` (what the tool printed) and ``files``
    (files left in its work folder). The venv is created first if needed.
    """
    info = ensure_venv(venv, verbose=verbose)
    largest = max(sizes) if sizes else 0
    rows: list[dict[str, Any]] = []

    def note(row: dict[str, Any]) -> None:
        rows.append(row)
        if verbose:
            print(
                f"  {row['tool']:<28} N={row['runs']:<6} {row['seconds']:>9.2f} s {row['status']}",
                file=sys.stderr,
                flush=True,
            )

    for n in sizes:
        note(measure_hydra(n, info, timeout))
    for n in sizes:
        for row in measure_snakemake(n, info, threads=True, rerun=n == largest, timeout=timeout):
            note(row)
    if include_default_mode:
        for row in measure_snakemake(
            DEFAULT_MODE_RUNS, info, threads=False, rerun=False, timeout=timeout
        ):
            note(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a fixed-width text table."""
    header = (
        f"{'tool':<28} {'runs':>6} {'seconds':>9} {'ms/run':>9} {'files':>7}  {'status':<8} version"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        files = "" if r.get("files") is None else str(r["files"])
        ms = "" if r.get("ms_per_run") is None else f"{r['ms_per_run']:.1f}"
        lines.append(
            f"{r['tool']:<28} {r['runs']:>6} {r['seconds']:>9.2f} {ms:>9} {files:>7}  "
            f"{r['status']:<8} {r.get('version', '')}"
        )
    return "\n".join(lines)


def _parse_sizes(text: str) -> list[int]:
    sizes = [int(s) for s in text.split(",") if s.strip()]
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive integers, e.g. 200,2000")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Command line: set up the venv, run the measurements, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated run counts (default: 200,2000)",
    )
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"peers venv (default: {DEFAULT_VENV})"
    )
    parser.add_argument(
        "--no-default-mode",
        action="store_true",
        help=f"skip Snakemake's default (process-per-job) mode at N={DEFAULT_MODE_RUNS}",
    )
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help="seconds per measurement (default 900)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    info = ensure_venv(args.venv)
    if info.created:
        print(f"venv set up in {info.setup_seconds:.1f} s")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.versions.items()))
    rows = measure_peers(args.sizes, args.venv, not args.no_default_mode, timeout=args.timeout)
    print(format_table(rows))
    for r in rows:
        if "log_tail" in r:
            print(f"\n--- {r['tool']} N={r['runs']}: last output ---\n{r['log_tail']}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
