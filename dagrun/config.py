"""Validation of ``basecfg`` and ``cfgs``, and the JSON view of a config.

Everything the user can get wrong in a config is checked here, up front, before anything is
written: each problem is a ``ConfigError`` naming the key and what is expected.
"""

from __future__ import annotations

import json
import math
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagrun.errors import ConfigError
from dagrun.record import field, field_names, record

RESERVED_CFG_KEYS = ("experiment_id", "run_id", "out_path")
STAGE_KEYS = ("pre", "fit", "post")
ONE_GB = 1 << 30

# basecfg aliases from the original tool's malocher backend -> dagrun's names.
KEY_ALIASES = {
    "malocher_machines": "hosts",
    "malocher_user": "ssh_user",
    "malocher_port": "ssh_port",
    "malocher_key": "ssh_key",
}
# basecfg["code"]: which of the user's code is copied with the sweep (dagrun.code.usercode)
CODE_KEYS = frozenset({"include", "exclude", "max_file_mb", "max_total_mb"})

# keys of the original tool that dagrun accepts and does not need (runs live in OUT)
IGNORED_KEYS = frozenset({"malocher_dir"})
# basecfg["search"]: an adaptive search over the workflow's ``space`` (checked by
# dagrun.search.settings; the scheduler passes it on untouched)
SEARCH_KEY = "search"


@record(frozen=True)
class Settings:
    """A validated basecfg without its stage functions."""

    out_path: str
    backend: str = "single"
    num_cpus: int = 1
    num_gpus: float = 0
    max_memory: int = ONE_GB
    address: str = "auto"
    redis_password: str | None = None
    verbose: bool = True
    repetitions: int = 1
    timeout: float = 0
    retries: int = 0
    hosts: tuple[str, ...] = ()
    ssh_user: str | None = None
    ssh_port: int = 22
    ssh_key: str | None = None
    ssh_config: str | None = None
    python: str | None = None
    report: bool = True  # write OUT/report.html after an execute that ran something
    report_metric: str | None = None  # the metric the report ranks by (None: post's first)
    gpu_ids: tuple[str, ...] | None = None  # local GPUs runs may use (None: CUDA_VISIBLE_DEVICES)
    lease_timeout: float = 60.0  # seconds without a heartbeat before a run's lease is stale
    workers: int | None = None  # slurm: array tasks (None: one per run to do, at most 100)
    # slurm: sbatch options (partition, time, ...; checked by the slurm backend)
    slurm: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # what of the user's code is copied: include/exclude lists, size limits (dagrun.code)
    code: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # cfg values of this many KiB or more are stored once in OUT/.dagrun/values and shown
    # as a summary in every JSON view (dagrun.code.values)
    inline_max_kb: float = 8.0


def _expect(cond: bool, key: str, what: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"basecfg[{key!r}] must be {what}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_hosts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [h for h in value.split(",") if h.strip()]
    _expect(
        isinstance(value, Sequence) and all(isinstance(h, str) and h.strip() for h in value),
        "hosts", "a list of 'host' or 'host:slots' strings", value,
    )
    return tuple(h.strip() for h in value)  # each parsed strictly by the backend registry


def _check_gpu_ids(value: Any) -> tuple[str, ...]:
    """``gpu_ids``: a list of GPU indices (or CUDA UUIDs), each used once."""
    ok = (isinstance(value, Sequence) and not isinstance(value, str)
          and all((_is_int(g) and g >= 0) or (isinstance(g, str) and g.strip()) for g in value))
    _expect(ok, "gpu_ids", "a list of GPU ids such as [0, 1]", value)
    ids = tuple(str(g).strip() for g in value)
    _expect(len(set(ids)) == len(ids), "gpu_ids", "a list without repeated ids", value)
    return ids


def _validated_settings(values: dict[str, Any]) -> Settings:
    """Type and range checks of every non-function key."""
    out = values["out_path"]
    _expect(isinstance(out, (str, os.PathLike)) and str(out).strip() != "", "out_path",
            "a non-empty path", out)
    backend = values.get("backend", "single")
    _expect(isinstance(backend, str), "backend", "a backend name such as 'multiprocessing'",
            backend)
    checks: list[tuple[str, Callable[[Any], bool], str]] = [
        ("num_cpus", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("num_gpus", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
        ("max_memory", lambda v: _is_int(v) and v > 0, "a positive number of bytes"),
        ("address", lambda v: isinstance(v, str) and v != "", "a non-empty string"),
        ("redis_password", lambda v: v is None or isinstance(v, str), "a string or None"),
        ("verbose", lambda v: isinstance(v, bool), "True or False"),
        ("repetitions", lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        ("timeout", lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0 (0: none)"),
        ("retries", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        ("ssh_user", lambda v: v is None or (isinstance(v, str) and v != ""), "a user name"),
        ("ssh_port", lambda v: _is_int(v) and 1 <= v <= 65535, "a port number 1..65535"),
        ("ssh_key", lambda v: v is None or isinstance(v, (str, os.PathLike)), "a path"),
        ("ssh_config", lambda v: v is None or isinstance(v, (str, os.PathLike)), "a path"),
        ("python", lambda v: v is None or (isinstance(v, str) and v != ""), "an interpreter path"),
        ("report", lambda v: isinstance(v, bool), "True or False"),
        ("report_metric", lambda v: v is None or (isinstance(v, str) and v != ""), "a metric name"),
        ("lease_timeout", lambda v: _is_number(v) and v > 0, "a number of seconds > 0"),
        ("workers", lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1"),
        ("slurm", lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v),
         "a dict of sbatch options such as {'partition': 'gpu', 'time': '1:00:00'}"),
        ("code", lambda v: isinstance(v, Mapping) and set(v) <= CODE_KEYS,
         f"a dict with keys among {sorted(CODE_KEYS)} (see docs/workflows.md)"),
        ("inline_max_kb", lambda v: _is_number(v) and v > 0,
         "a size in KiB > 0 (cfg values this big are stored once and shown as a summary)"),
    ]
    for key, ok, what in checks:
        if key in values:
            _expect(ok(values[key]), key, what, values[key])
    kwargs = {k: values[k] for k, _, _ in checks if k in values}
    for key in ("ssh_key", "ssh_config"):
        if kwargs.get(key) is not None:
            kwargs[key] = os.path.expanduser(os.fspath(kwargs[key]))
    hosts = _check_hosts(values["hosts"]) if "hosts" in values else ()
    if values.get("gpu_ids") is not None:
        kwargs["gpu_ids"] = _check_gpu_ids(values["gpu_ids"])
    return Settings(out_path=os.fspath(out), backend=backend, hosts=hosts, **kwargs)


@record(frozen=True)
class BaseConfig:
    """A validated basecfg: its settings and the three stage functions."""

    settings: Settings
    pre: Callable[..., Any]
    fit: Callable[..., Any]
    post: Callable[..., Any]


KNOWN_KEYS = frozenset(
    {"out_path", *STAGE_KEYS, *field_names(Settings),
     *KEY_ALIASES, *IGNORED_KEYS, SEARCH_KEY}
)


def parse_basecfg(basecfg: Any) -> BaseConfig:
    """Check every key of ``basecfg``; raise ``ConfigError`` on the first problem.

    The backend's name is kept as written and host strings are only checked to be strings:
    both are the backend registry's to check (``dagrun.backends.validate_basecfg``, what
    every caller uses), which keeps this base module below the backends."""
    if not isinstance(basecfg, Mapping):
        raise ConfigError(f"basecfg must be a dict, got {type(basecfg).__name__}")
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}  # dagrun's name -> the key the user wrote (alias or not)
    for key, value in basecfg.items():
        if not isinstance(key, str) or key not in KNOWN_KEYS:
            import difflib  # only for a key that is not known

            close = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"basecfg has unknown key {key!r}{hint}")
        if key in IGNORED_KEYS:
            continue
        target = KEY_ALIASES.get(key, key)
        if target in given_as:
            raise ConfigError(f"basecfg sets both {given_as[target]!r} and {key!r}; use one")
        given_as[target] = key
        values[target] = value
    for key in ("out_path", *STAGE_KEYS):
        if key not in values or values[key] is None:
            raise ConfigError(f"basecfg[{key!r}] is required")
    for key in STAGE_KEYS:
        if not callable(values[key]):
            raise ConfigError(
                f"basecfg[{key!r}] must be a function {key}(cfg, ...), "
                f"got {type(values[key]).__name__}"
            )
    settings = _validated_settings(values)
    return BaseConfig(settings, values["pre"], values["fit"], values["post"])


def validate_cfgs(cfgs: Any, default_repetitions: int) -> list[dict[str, Any]]:
    """Check the list of experiment configs; returns it as a list of dicts."""
    if isinstance(cfgs, (str, bytes, Mapping)) or not isinstance(cfgs, Sequence):
        raise ConfigError(f"cfgs must be a list of dicts, got {type(cfgs).__name__}")
    if len(cfgs) == 0:
        raise ConfigError("cfgs is empty: there is nothing to run")
    out: list[dict[str, Any]] = []
    for i, cfg in enumerate(cfgs):
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"cfgs[{i}] must be a dict, got {type(cfg).__name__}")
        for key in RESERVED_CFG_KEYS:
            if key in cfg:
                raise ConfigError(
                    f"cfgs[{i}] sets reserved key {key!r}; dagrun sets "
                    f"{', '.join(RESERVED_CFG_KEYS)} itself"
                )
        if "scores" in cfg:
            raise ConfigError(f"cfgs[{i}] sets reserved key 'scores', where results.jsonl puts "
                              "the metrics; rename it")
        try:
            clash = _same_string_keys(cfg)
        except ConfigError as exc:
            raise ConfigError(f"cfgs[{i}]: {exc}") from None
        if clash is not None:
            where, first, second = clash
            raise ConfigError(f"cfgs[{i}]{where} has keys {first!r} and {second!r}, which "
                              "config.json writes as the same string; keep one")
        reps = cfg.get("repetitions", default_repetitions)
        if not _is_int(reps) or reps < 1:
            raise ConfigError(f"cfgs[{i}]['repetitions'] must be an integer >= 1, got {reps!r}")
        out.append(dict(cfg))
    return out


def _same_string_keys(value: Any, where: str = "",
                      inside: frozenset[int] = frozenset()) -> tuple[str, Any, Any] | None:
    """Two keys of one dict (at ``where`` inside a cfg) that JSON would write as one string
    (``1`` and ``"1"``), or ``None``; dicts whose keys are all strings are not compared. A
    container that holds itself (``inside``: the containers around ``where``) cannot be
    written as JSON at all: ``ConfigError``."""
    items: Any
    if type(value) is dict or isinstance(value, Mapping):
        if set(map(type, value)) != _STR_KEYS:  # C-speed scan: most dicts have str keys only
            seen: dict[str, Any] = {}
            for key in value:
                text = key if isinstance(key, str) else str(key)
                if text in seen:
                    return where, seen[text], key
                seen[text] = key
        items = value.items()
    elif type(value) is list or isinstance(value, tuple):
        items = enumerate(value)
    else:
        return None
    if id(value) in inside:
        raise ConfigError(f"it holds itself at {where or 'its top'} (a cycle): config.json "
                          "is JSON and cannot write it; keep such objects out of the cfg "
                          "(build them in pre)")
    inside = inside | {id(value)}
    for key, item in items:
        if type(item) not in _PLAIN:
            found = _same_string_keys(item, f"{where}[{key!r}]", inside)
            if found is not None:
                return found
    return None


_STR_KEYS = {str}


def repetitions_of(cfg: Mapping[str, Any], default: int) -> int:
    reps = cfg.get("repetitions", default)
    return int(reps)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def json_view(value: Any) -> Any:
    """The JSON form of a config value.

    numpy scalars and arrays, tuples, sets and paths become their JSON equivalents; anything
    else that JSON cannot hold (a function, an object) becomes a readable string that does
    not change between runs (no memory addresses), so configs compare equal on resume. A big
    value kept in the values store (``dagrun.code.values.ValueRef``) is its summary.
    """
    if type(value) is dict:  # the common case, kept fast for 100,000-config sweeps
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else json_view(v)
                for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_view(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_view(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [json_view(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    view = getattr(type(value), "__dagrun_view__", None)  # a stored value's summary
    if view is not None:
        return view(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist) and type(value).__module__.split(".")[0] == "numpy":
        return json_view(tolist())
    return _readable(value)


_READABLE: dict[int, tuple[weakref.ref[Any], str]] = {}  # id -> (the object, its text)
_READABLE_MAX = 4096


def _readable(value: Any) -> str:
    """The readable text of an object, kept per object while it lives: a fitted model's
    ``repr`` can take a millisecond (scikit-learn inspects signatures), and the same objects
    recur in every cfg and every run's config.json."""
    found = _READABLE.get(id(value))
    if found is not None and found[0]() is value:
        return found[1]
    text = _readable_text(value)
    try:
        ref = weakref.ref(value)
    except TypeError:  # no weak references (ints, tuples, some extension types): not kept
        return text
    if len(_READABLE) >= _READABLE_MAX:
        _READABLE.clear()
    _READABLE[id(value)] = (ref, text)
    return text


def _readable_text(value: Any) -> str:
    qualname = getattr(value, "__qualname__", None)
    module = getattr(value, "__module__", None)
    if qualname is not None:
        kind = "class" if isinstance(value, type) else "function"
        return f"<{kind} {module}.{qualname}>" if module else f"<{kind} {qualname}>"
    text = repr(value)
    if " at 0x" in text or len(text) > 500:
        cls = type(value)
        return f"<{cls.__module__}.{cls.__qualname__} object>"
    return text


def canonical(value: Any) -> str:
    """A stable string of a JSON value, for comparing configs."""
    return json.dumps(value, sort_keys=True, allow_nan=True, separators=(",", ":"))
