"""The ``__init__`` makers of dagrun's records, compiled with the package.

Written by ``scripts/record_inits.py`` (``make records``); do not edit. ``dagrun.record``
takes a maker from ``MAKERS`` by the exact source it would compile, so an entry that no
longer matches a record is only unused (``tests/test_record.py`` says when to rewrite).
"""

# ruff: noqa
# mypy: ignore-errors

from collections.abc import Callable
from typing import Any

def _make_0(__MISSING, __object_setattr):
 def __init__(self, initializer, initargs):
  __object_setattr(self, 'initializer', initializer)
  __object_setattr(self, 'initargs', initargs)
 return __init__

def _make_1(__MISSING, __object_setattr, __factory_queue, __default_next_seq, __default_since, __default_stopping_at, __default_ready, __default_handed, __factory_outbox):
 def __init__(self, process, conn, permits, grants, queue=__MISSING, next_seq=__default_next_seq, since=__default_since, stopping_at=__default_stopping_at, ready=__default_ready, handed=__default_handed, outbox=__MISSING):
  self.process = process
  self.conn = conn
  self.permits = permits
  self.grants = grants
  self.queue = __factory_queue() if queue is __MISSING else queue
  self.next_seq = next_seq
  self.since = since
  self.stopping_at = stopping_at
  self.ready = ready
  self.handed = handed
  self.outbox = __factory_outbox() if outbox is __MISSING else outbox
 return __init__

def _make_2(__MISSING, __object_setattr, __default_busy, __default_locks, __default_held):
 def __init__(self, pool, busy=__default_busy, locks=__default_locks, held=__default_held):
  self.pool = pool
  self.busy = busy
  self.locks = locks
  self.held = held
 return __init__

def _make_3(__MISSING, __object_setattr):
 def __init__(self, future, function, args, timeout):
  self.future = future
  self.function = function
  self.args = args
  self.timeout = timeout
 return __init__

def _make_4(__MISSING, __object_setattr, __default_local, __default_owned, __default_watchdog):
 def __init__(self, address, local=__default_local, owned=__default_owned, watchdog=__default_watchdog):
  __object_setattr(self, 'address', address)
  __object_setattr(self, 'local', local)
  __object_setattr(self, 'owned', owned)
  __object_setattr(self, 'watchdog', watchdog)
 return __init__

def _make_5(__MISSING, __object_setattr, __default_cancelled, __default_cancelled_at, __default_reason):
 def __init__(self, task, request, submitted, cancelled=__default_cancelled, cancelled_at=__default_cancelled_at, reason=__default_reason):
  self.task = task
  self.request = request
  self.submitted = submitted
  self.cancelled = cancelled
  self.cancelled_at = cancelled_at
  self.reason = reason
 return __init__

def _make_6(__MISSING, __object_setattr):
 def __init__(self, what, host, port):
  __object_setattr(self, 'what', what)
  __object_setattr(self, 'host', host)
  __object_setattr(self, 'port', port)
 return __init__

def _make_7(__MISSING, __object_setattr):
 def __init__(self, num_cpus, num_gpus, memory):
  __object_setattr(self, 'num_cpus', num_cpus)
  __object_setattr(self, 'num_gpus', num_gpus)
  __object_setattr(self, 'memory', memory)
 return __init__

def _make_8(__MISSING, __object_setattr):
 def __init__(self, task_id, state, reason):
  __object_setattr(self, 'task_id', task_id)
  __object_setattr(self, 'state', state)
  __object_setattr(self, 'reason', reason)
 return __init__

def _make_9(__MISSING, __object_setattr, __factory_jobs, __factory_submitted):
 def __init__(self, jobs=__MISSING, submitted=__MISSING):
  self.jobs = __factory_jobs() if jobs is __MISSING else jobs
  self.submitted = __factory_submitted() if submitted is __MISSING else submitted
 return __init__

def _make_10(__MISSING, __object_setattr, __default_flags, __default_extra, __default_setup):
 def __init__(self, flags=__default_flags, extra=__default_extra, setup=__default_setup):
  __object_setattr(self, 'flags', flags)
  __object_setattr(self, 'extra', extra)
  __object_setattr(self, 'setup', setup)
 return __init__

def _make_11(__MISSING, __object_setattr, __factory_pending, __default_done, __factory_failed, __factory_running, __default_held, __factory__errors_before, __default__next_scan):
 def __init__(self, retries, pending=__MISSING, done=__default_done, failed=__MISSING, running=__MISSING, held=__default_held, _errors_before=__MISSING, _next_scan=__default__next_scan):
  self.retries = retries
  self.pending = __factory_pending() if pending is __MISSING else pending
  self.done = done
  self.failed = __factory_failed() if failed is __MISSING else failed
  self.running = __factory_running() if running is __MISSING else running
  self.held = held
  self._errors_before = __factory__errors_before() if _errors_before is __MISSING else _errors_before
  self._next_scan = _next_scan
 return __init__

def _make_12(__MISSING, __object_setattr, __default_slots):
 def __init__(self, name, slots=__default_slots):
  __object_setattr(self, 'name', name)
  __object_setattr(self, 'slots', slots)
 return __init__

def _make_13(__MISSING, __object_setattr, __default_config, __default_user, __default_port, __default_key, __default_connect_timeout, __default_alive_interval, __default_alive_count):
 def __init__(self, program, config=__default_config, user=__default_user, port=__default_port, key=__default_key, connect_timeout=__default_connect_timeout, alive_interval=__default_alive_interval, alive_count=__default_alive_count):
  __object_setattr(self, 'program', program)
  __object_setattr(self, 'config', config)
  __object_setattr(self, 'user', user)
  __object_setattr(self, 'port', port)
  __object_setattr(self, 'key', key)
  __object_setattr(self, 'connect_timeout', connect_timeout)
  __object_setattr(self, 'alive_interval', alive_interval)
  __object_setattr(self, 'alive_count', alive_count)
 return __init__

def _make_14(__MISSING, __object_setattr, __default_state, __default_busy, __default_failures, __factory_reasons, __default_trouble, __default_requeued, __default_moved, __default_rerun, __default_master, __default__started, __default__retry_at, __default__log_path):
 def __init__(self, spec, control_path, ssh, state=__default_state, busy=__default_busy, failures=__default_failures, reasons=__MISSING, trouble=__default_trouble, requeued=__default_requeued, moved=__default_moved, rerun=__default_rerun, master=__default_master, _started=__default__started, _retry_at=__default__retry_at, _log_path=__default__log_path):
  self.spec = spec
  self.control_path = control_path
  self.ssh = ssh
  self.state = state
  self.busy = busy
  self.failures = failures
  self.reasons = __factory_reasons() if reasons is __MISSING else reasons
  self.trouble = trouble
  self.requeued = requeued
  self.moved = moved
  self.rerun = rerun
  self.master = master
  self._started = _started
  self._retry_at = _retry_at
  self._log_path = _log_path
 return __init__

def _make_15(__MISSING, __object_setattr, __factory_fingerprints, __default_heartbeat_timeout, __default_trust_group, __default_cwd, __default_sys_path):
 def __init__(self, task, out_path, fingerprints=__MISSING, heartbeat_timeout=__default_heartbeat_timeout, trust_group=__default_trust_group, cwd=__default_cwd, sys_path=__default_sys_path):
  __object_setattr(self, 'task', task)
  __object_setattr(self, 'out_path', out_path)
  __object_setattr(self, 'fingerprints', __factory_fingerprints() if fingerprints is __MISSING else fingerprints)
  __object_setattr(self, 'heartbeat_timeout', heartbeat_timeout)
  __object_setattr(self, 'trust_group', trust_group)
  __object_setattr(self, 'cwd', cwd)
  __object_setattr(self, 'sys_path', sys_path)
 return __init__

def _make_16(__MISSING, __object_setattr, __factory_started, __default_remote_started, __default_outcome_json, __default_watchdog, __default_stop_reason, __default_kill_at, __default_open_streams, __factory__out, __factory__err):
 def __init__(self, task, host, proc, started=__MISSING, remote_started=__default_remote_started, outcome_json=__default_outcome_json, watchdog=__default_watchdog, stop_reason=__default_stop_reason, kill_at=__default_kill_at, open_streams=__default_open_streams, _out=__MISSING, _err=__MISSING):
  self.task = task
  self.host = host
  self.proc = proc
  self.started = __factory_started() if started is __MISSING else started
  self.remote_started = remote_started
  self.outcome_json = outcome_json
  self.watchdog = watchdog
  self.stop_reason = stop_reason
  self.kill_at = kill_at
  self.open_streams = open_streams
  self._out = __factory__out() if _out is __MISSING else _out
  self._err = __factory__err() if _err is __MISSING else _err
  self.__post_init__()
 return __init__

def _make_17(__MISSING, __object_setattr):
 def __init__(self, runs, stages, results_lines):
  __object_setattr(self, 'runs', runs)
  __object_setattr(self, 'stages', stages)
  __object_setattr(self, 'results_lines', results_lines)
 return __init__

def _make_18(__MISSING, __object_setattr, __factory_files, __factory_skipped, __default_hasher):
 def __init__(self, files=__MISSING, skipped=__MISSING, hasher=__default_hasher):
  self.files = __factory_files() if files is __MISSING else files
  self.skipped = __factory_skipped() if skipped is __MISSING else skipped
  self.hasher = hasher
 return __init__

def _make_19(__MISSING, __object_setattr, __default_max_file, __default_max_total):
 def __init__(self, max_file=__default_max_file, max_total=__default_max_total):
  __object_setattr(self, 'max_file', max_file)
  __object_setattr(self, 'max_total', max_total)
 return __init__

def _make_20(__MISSING, __object_setattr, __default_data):
 def __init__(self, path, size, sha, data=__default_data):
  __object_setattr(self, 'path', path)
  __object_setattr(self, 'size', size)
  __object_setattr(self, 'sha', sha)
  __object_setattr(self, 'data', data)
 return __init__

def _make_21(__MISSING, __object_setattr):
 def __init__(self, text, source, globals, chains, imports, strings, getattr_on):
  __object_setattr(self, 'text', text)
  __object_setattr(self, 'source', source)
  __object_setattr(self, 'globals', globals)
  __object_setattr(self, 'chains', chains)
  __object_setattr(self, 'imports', imports)
  __object_setattr(self, 'strings', strings)
  __object_setattr(self, 'getattr_on', getattr_on)
 return __init__

def _make_22(__MISSING, __object_setattr, __default_from_main):
 def __init__(self, source, module, functions, rule, limits, state_dir, avoid, argv, from_main=__default_from_main):
  __object_setattr(self, 'source', source)
  __object_setattr(self, 'module', module)
  __object_setattr(self, 'functions', functions)
  __object_setattr(self, 'rule', rule)
  __object_setattr(self, 'limits', limits)
  __object_setattr(self, 'state_dir', state_dir)
  __object_setattr(self, 'avoid', avoid)
  __object_setattr(self, 'argv', argv)
  __object_setattr(self, 'from_main', from_main)
 return __init__

def _make_23(__MISSING, __object_setattr, __default_sys_path, __default_main_only, __default_modules, __default_tops, __default_argv, __default_workflow_file, __default_layout):
 def __init__(self, folder, module, source, sys_path=__default_sys_path, main_only=__default_main_only, modules=__default_modules, tops=__default_tops, argv=__default_argv, workflow_file=__default_workflow_file, layout=__default_layout):
  __object_setattr(self, 'folder', folder)
  __object_setattr(self, 'module', module)
  __object_setattr(self, 'source', source)
  __object_setattr(self, 'sys_path', sys_path)
  __object_setattr(self, 'main_only', main_only)
  __object_setattr(self, 'modules', modules)
  __object_setattr(self, 'tops', tops)
  __object_setattr(self, 'argv', argv)
  __object_setattr(self, 'workflow_file', workflow_file)
  __object_setattr(self, 'layout', layout)
 return __init__

def _make_24(__MISSING, __object_setattr):
 def __init__(self, module, level, name):
  __object_setattr(self, 'module', module)
  __object_setattr(self, 'level', level)
  __object_setattr(self, 'name', name)
 return __init__

def _make_25(__MISSING, __object_setattr):
 def __init__(self, origin, locations):
  __object_setattr(self, 'origin', origin)
  __object_setattr(self, 'locations', locations)
 return __init__

def _make_26(__MISSING, __object_setattr, __default_include, __default_exclude):
 def __init__(self, include=__default_include, exclude=__default_exclude):
  __object_setattr(self, 'include', include)
  __object_setattr(self, 'exclude', exclude)
 return __init__

def _make_27(__MISSING, __object_setattr):
 def __init__(self, name, path, entry, package):
  __object_setattr(self, 'name', name)
  __object_setattr(self, 'path', path)
  __object_setattr(self, 'entry', entry)
  __object_setattr(self, 'package', package)
 return __init__

def _make_28(__MISSING, __object_setattr):
 def __init__(self, digest, kind, summary):
  __object_setattr(self, 'digest', digest)
  __object_setattr(self, 'kind', kind)
  __object_setattr(self, 'summary', summary)
 return __init__

def _make_29(__MISSING, __object_setattr, __default_stored_values):
 def __init__(self, exp_id, cfg, digest, stored_values=__default_stored_values):
  __object_setattr(self, 'exp_id', exp_id)
  __object_setattr(self, 'cfg', cfg)
  __object_setattr(self, 'digest', digest)
  __object_setattr(self, 'stored_values', stored_values)
 return __init__

def _make_30(__MISSING, __object_setattr):
 def __init__(self, qualname):
  __object_setattr(self, 'qualname', qualname)
 return __init__

def _make_31(__MISSING, __object_setattr, __factory_basecfg, __factory_sys_path, __default_source, __factory_fingerprints, __factory_digests, __default_snapshot, __factory_ids, __default_stored_values, __default_code_id):
 def __init__(self, pre, fit, post, cfgs, basecfg=__MISSING, sys_path=__MISSING, source=__default_source, fingerprints=__MISSING, digests=__MISSING, snapshot=__default_snapshot, ids=__MISSING, stored_values=__default_stored_values, code_id=__default_code_id):
  self.pre = pre
  self.fit = fit
  self.post = post
  self.cfgs = cfgs
  self.basecfg = __factory_basecfg() if basecfg is __MISSING else basecfg
  self.sys_path = __factory_sys_path() if sys_path is __MISSING else sys_path
  self.source = source
  self.fingerprints = __factory_fingerprints() if fingerprints is __MISSING else fingerprints
  self.digests = __factory_digests() if digests is __MISSING else digests
  self.snapshot = snapshot
  self.ids = __factory_ids() if ids is __MISSING else ids
  self.stored_values = stored_values
  self.code_id = code_id
 return __init__

def _make_32(__MISSING, __object_setattr):
 def __init__(self, settings, pre, fit, post):
  __object_setattr(self, 'settings', settings)
  __object_setattr(self, 'pre', pre)
  __object_setattr(self, 'fit', fit)
  __object_setattr(self, 'post', post)
 return __init__

def _make_33(__MISSING, __object_setattr, __default_backend, __default_num_cpus, __default_num_gpus, __default_max_memory, __default_address, __default_redis_password, __default_verbose, __default_repetitions, __default_timeout, __default_retries, __default_hosts, __default_ssh_user, __default_ssh_port, __default_ssh_key, __default_ssh_config, __default_python, __default_report, __default_report_metric, __default_gpu_ids, __default_lease_timeout, __default_workers, __factory_slurm, __factory_code, __default_inline_max_kb):
 def __init__(self, out_path, backend=__default_backend, num_cpus=__default_num_cpus, num_gpus=__default_num_gpus, max_memory=__default_max_memory, address=__default_address, redis_password=__default_redis_password, verbose=__default_verbose, repetitions=__default_repetitions, timeout=__default_timeout, retries=__default_retries, hosts=__default_hosts, ssh_user=__default_ssh_user, ssh_port=__default_ssh_port, ssh_key=__default_ssh_key, ssh_config=__default_ssh_config, python=__default_python, report=__default_report, report_metric=__default_report_metric, gpu_ids=__default_gpu_ids, lease_timeout=__default_lease_timeout, workers=__default_workers, slurm=__MISSING, code=__MISSING, inline_max_kb=__default_inline_max_kb):
  __object_setattr(self, 'out_path', out_path)
  __object_setattr(self, 'backend', backend)
  __object_setattr(self, 'num_cpus', num_cpus)
  __object_setattr(self, 'num_gpus', num_gpus)
  __object_setattr(self, 'max_memory', max_memory)
  __object_setattr(self, 'address', address)
  __object_setattr(self, 'redis_password', redis_password)
  __object_setattr(self, 'verbose', verbose)
  __object_setattr(self, 'repetitions', repetitions)
  __object_setattr(self, 'timeout', timeout)
  __object_setattr(self, 'retries', retries)
  __object_setattr(self, 'hosts', hosts)
  __object_setattr(self, 'ssh_user', ssh_user)
  __object_setattr(self, 'ssh_port', ssh_port)
  __object_setattr(self, 'ssh_key', ssh_key)
  __object_setattr(self, 'ssh_config', ssh_config)
  __object_setattr(self, 'python', python)
  __object_setattr(self, 'report', report)
  __object_setattr(self, 'report_metric', report_metric)
  __object_setattr(self, 'gpu_ids', gpu_ids)
  __object_setattr(self, 'lease_timeout', lease_timeout)
  __object_setattr(self, 'workers', workers)
  __object_setattr(self, 'slurm', __factory_slurm() if slurm is __MISSING else slurm)
  __object_setattr(self, 'code', __factory_code() if code is __MISSING else code)
  __object_setattr(self, 'inline_max_kb', inline_max_kb)
 return __init__

def _make_34(__MISSING, __object_setattr, __default_equivalent):
 def __init__(self, stale, equivalent=__default_equivalent):
  __object_setattr(self, 'stale', stale)
  __object_setattr(self, 'equivalent', equivalent)
 return __init__

def _make_35(__MISSING, __object_setattr, __default_legacy):
 def __init__(self, experiments, orphans, moves, stored_digest, legacy=__default_legacy):
  self.experiments = experiments
  self.orphans = orphans
  self.moves = moves
  self.stored_digest = stored_digest
  self.legacy = legacy
 return __init__

def _make_36(__MISSING, __object_setattr, __default_reordered, __default_new, __factory_edited, __factory_gone, __default_back, __default_found, __default_migrated, __default_relaid, __default_diff):
 def __init__(self, reordered=__default_reordered, new=__default_new, edited=__MISSING, gone=__MISSING, back=__default_back, found=__default_found, migrated=__default_migrated, relaid=__default_relaid, diff=__default_diff):
  self.reordered = reordered
  self.new = new
  self.edited = __factory_edited() if edited is __MISSING else edited
  self.gone = __factory_gone() if gone is __MISSING else gone
  self.back = back
  self.found = found
  self.migrated = migrated
  self.relaid = relaid
  self.diff = diff
 return __init__

def _make_37(__MISSING, __object_setattr):
 def __init__(self, path):
  __object_setattr(self, 'path', path)
 return __init__

def _make_38(__MISSING, __object_setattr, __default_timeout, __default_role):
 def __init__(self, host, pid, worker, slurm, timeout=__default_timeout, role=__default_role):
  __object_setattr(self, 'host', host)
  __object_setattr(self, 'pid', pid)
  __object_setattr(self, 'worker', worker)
  __object_setattr(self, 'slurm', slurm)
  __object_setattr(self, 'timeout', timeout)
  __object_setattr(self, 'role', role)
 return __init__

def _make_39(__MISSING, __object_setattr):
 def __init__(self, signature, since, info):
  __object_setattr(self, 'signature', signature)
  __object_setattr(self, 'since', since)
  __object_setattr(self, 'info', info)
 return __init__

def _make_40(__MISSING, __object_setattr, __factory_code, __default_stored_same):
 def __init__(self, sweep, experiments, runs, code=__MISSING, stored_same=__default_stored_same):
  self.sweep = sweep
  self.experiments = experiments
  self.runs = runs
  self.code = __factory_code() if code is __MISSING else code
  self.stored_same = stored_same
 return __init__

def _make_41(__MISSING, __object_setattr, __default_pid):
 def __init__(self, stage, kind, message, traceback, attempt, host, time, pid=__default_pid):
  __object_setattr(self, 'stage', stage)
  __object_setattr(self, 'kind', kind)
  __object_setattr(self, 'message', message)
  __object_setattr(self, 'traceback', traceback)
  __object_setattr(self, 'attempt', attempt)
  __object_setattr(self, 'host', host)
  __object_setattr(self, 'time', time)
  __object_setattr(self, 'pid', pid)
 return __init__

def _make_42(__MISSING, __object_setattr, __default_code, __default_config, __default_token, __default_origin):
 def __init__(self, stage, started, finished, seconds, host, pid, attempt, code=__default_code, config=__default_config, token=__default_token, origin=__default_origin):
  __object_setattr(self, 'stage', stage)
  __object_setattr(self, 'started', started)
  __object_setattr(self, 'finished', finished)
  __object_setattr(self, 'seconds', seconds)
  __object_setattr(self, 'host', host)
  __object_setattr(self, 'pid', pid)
  __object_setattr(self, 'attempt', attempt)
  __object_setattr(self, 'code', code)
  __object_setattr(self, 'config', config)
  __object_setattr(self, 'token', token)
  __object_setattr(self, 'origin', origin)
 return __init__

def _make_43(__MISSING, __object_setattr):
 def __init__(self, exp_id, rep, path, failure, reason):
  __object_setattr(self, 'exp_id', exp_id)
  __object_setattr(self, 'rep', rep)
  __object_setattr(self, 'path', path)
  __object_setattr(self, 'failure', failure)
  __object_setattr(self, 'reason', reason)
 return __init__

def _make_44(__MISSING, __object_setattr, __default_outcome):
 def __init__(self, record, cfg, number, outcome=__default_outcome):
  self.record = record
  self.cfg = cfg
  self.number = number
  self.outcome = outcome
 return __init__

def _make_45(__MISSING, __object_setattr):
 def __init__(self, ids, config, means, stds, counts, others):
  self.ids = ids
  self.config = config
  self.means = means
  self.stds = stds
  self.counts = counts
  self.others = others
 return __init__

def _make_46(__MISSING, __object_setattr, __default_state_column, __default_n_column):
 def __init__(self, sweep, ids, repetitions, states, done, config, means, stds, counts, others, runs, varied, constant, metrics, single, state_column=__default_state_column, n_column=__default_n_column):
  self.sweep = sweep
  self.ids = ids
  self.repetitions = repetitions
  self.states = states
  self.done = done
  self.config = config
  self.means = means
  self.stds = stds
  self.counts = counts
  self.others = others
  self.runs = runs
  self.varied = varied
  self.constant = constant
  self.metrics = metrics
  self.single = single
  self.state_column = state_column
  self.n_column = n_column
 return __init__

def _make_47(__MISSING, __object_setattr):
 def __init__(self, metric, direction):
  __object_setattr(self, 'metric', metric)
  __object_setattr(self, 'direction', direction)
 return __init__

def _make_48(__MISSING, __object_setattr):
 def __init__(self, key, op, value, text):
  __object_setattr(self, 'key', key)
  __object_setattr(self, 'op', op)
  __object_setattr(self, 'value', value)
  __object_setattr(self, 'text', text)
 return __init__

def _make_49(__MISSING, __object_setattr, __factory_counts, __default_done, __default_spread, __factory_best, __default_state, __factory_notes):
 def __init__(self, columns, metrics, single, counts=__MISSING, done=__default_done, spread=__default_spread, best=__MISSING, state=__default_state, notes=__MISSING):
  self.columns = columns
  self.metrics = metrics
  self.single = single
  self.counts = __factory_counts() if counts is __MISSING else counts
  self.done = done
  self.spread = spread
  self.best = __factory_best() if best is __MISSING else best
  self.state = state
  self.notes = __factory_notes() if notes is __MISSING else notes
 return __init__

def _make_50(__MISSING, __object_setattr, __default_reusable):
 def __init__(self, cwd, environ, path_object, path, streams, loggers, handlers, settings, disable, registered, reusable=__default_reusable):
  self.cwd = cwd
  self.environ = environ
  self.path_object = path_object
  self.path = path
  self.streams = streams
  self.loggers = loggers
  self.handlers = handlers
  self.settings = settings
  self.disable = disable
  self.registered = registered
  self.reusable = reusable
 return __init__

def _make_51(__MISSING, __object_setattr, __default_stage):
 def __init__(self, kind, topic, message, stage=__default_stage):
  __object_setattr(self, 'kind', kind)
  __object_setattr(self, 'topic', topic)
  __object_setattr(self, 'message', message)
  __object_setattr(self, 'stage', stage)
 return __init__

def _make_52(__MISSING, __object_setattr, __factory_counts):
 def __init__(self, counts=__MISSING):
  self.counts = __factory_counts() if counts is __MISSING else counts
 return __init__

def _make_53(__MISSING, __object_setattr, __default_count):
 def __init__(self, first, count=__default_count):
  self.first = first
  self.count = count
 return __init__

def _make_54(__MISSING, __object_setattr, __factory_unpicklable, __factory_warned):
 def __init__(self, unpicklable=__MISSING, warned=__MISSING):
  self.unpicklable = __factory_unpicklable() if unpicklable is __MISSING else unpicklable
  self.warned = __factory_warned() if warned is __MISSING else warned
 return __init__

def _make_55(__MISSING, __object_setattr, __default_failure, __default_ran, __default_warnings, __default_scores, __default_superseded):
 def __init__(self, task, failure=__default_failure, ran=__default_ran, warnings=__default_warnings, scores=__default_scores, superseded=__default_superseded):
  __object_setattr(self, 'task', task)
  __object_setattr(self, 'failure', failure)
  __object_setattr(self, 'ran', ran)
  __object_setattr(self, 'warnings', warnings)
  __object_setattr(self, 'scores', scores)
  __object_setattr(self, 'superseded', superseded)
 return __init__

def _make_56(__MISSING, __object_setattr, __default_attempt, __default_folder, __default_adds, __default_new_folder):
 def __init__(self, exp_id, rep, path, attempt=__default_attempt, folder=__default_folder, adds=__default_adds, new_folder=__default_new_folder):
  __object_setattr(self, 'exp_id', exp_id)
  __object_setattr(self, 'rep', rep)
  __object_setattr(self, 'path', path)
  __object_setattr(self, 'attempt', attempt)
  __object_setattr(self, 'folder', folder)
  __object_setattr(self, 'adds', adds)
  __object_setattr(self, 'new_folder', new_folder)
 return __init__

def _make_57(__MISSING, __object_setattr, __default_value, __default_fit_time, __factory_warnings, __default_names):
 def __init__(self, start, value=__default_value, fit_time=__default_fit_time, warnings=__MISSING, names=__default_names):
  self.start = start
  self.value = value
  self.fit_time = fit_time
  self.warnings = __factory_warnings() if warnings is __MISSING else warnings
  self.names = names
 return __init__

def _make_58(__MISSING, __object_setattr, __default_record_error):
 def __init__(self, label, path, stage, kind, message, record_error=__default_record_error):
  __object_setattr(self, 'label', label)
  __object_setattr(self, 'path', path)
  __object_setattr(self, 'stage', stage)
  __object_setattr(self, 'kind', kind)
  __object_setattr(self, 'message', message)
  __object_setattr(self, 'record_error', record_error)
 return __init__

def _make_59(__MISSING, __object_setattr, __default_planned, __default_done, __default_skipped, __default_failed, __factory_failed_runs, __default_interrupted, __default_dry_run, __default_seconds, __default_results_lines, __default_results_error, __factory_notes, __factory_warnings):
 def __init__(self, out_path, planned=__default_planned, done=__default_done, skipped=__default_skipped, failed=__default_failed, failed_runs=__MISSING, interrupted=__default_interrupted, dry_run=__default_dry_run, seconds=__default_seconds, results_lines=__default_results_lines, results_error=__default_results_error, notes=__MISSING, warnings=__MISSING):
  self.out_path = out_path
  self.planned = planned
  self.done = done
  self.skipped = skipped
  self.failed = failed
  self.failed_runs = __factory_failed_runs() if failed_runs is __MISSING else failed_runs
  self.interrupted = interrupted
  self.dry_run = dry_run
  self.seconds = seconds
  self.results_lines = results_lines
  self.results_error = results_error
  self.notes = __factory_notes() if notes is __MISSING else notes
  self.warnings = __factory_warnings() if warnings is __MISSING else warnings
 return __init__

def _make_60(__MISSING, __object_setattr):
 def __init__(self, fd, pid, crashed):
  __object_setattr(self, 'fd', fd)
  __object_setattr(self, 'pid', pid)
  __object_setattr(self, 'crashed', crashed)
 return __init__

def _make_61(__MISSING, __object_setattr):
 def __init__(self, status, said, announced):
  __object_setattr(self, 'status', status)
  __object_setattr(self, 'said', said)
  __object_setattr(self, 'announced', announced)
 return __init__

def _make_62(__MISSING, __object_setattr, __default_dry_run, __default_rerun_changed, __default_source, __default_fingerprints, __default_digests, __default_snapshot, __default_plan_only, __default_detach, __default_only, __default_grows, __default_feed):
 def __init__(self, dry_run=__default_dry_run, rerun_changed=__default_rerun_changed, source=__default_source, fingerprints=__default_fingerprints, digests=__default_digests, snapshot=__default_snapshot, plan_only=__default_plan_only, detach=__default_detach, only=__default_only, grows=__default_grows, feed=__default_feed):
  __object_setattr(self, 'dry_run', dry_run)
  __object_setattr(self, 'rerun_changed', rerun_changed)
  __object_setattr(self, 'source', source)
  __object_setattr(self, 'fingerprints', fingerprints)
  __object_setattr(self, 'digests', digests)
  __object_setattr(self, 'snapshot', snapshot)
  __object_setattr(self, 'plan_only', plan_only)
  __object_setattr(self, 'detach', detach)
  __object_setattr(self, 'only', only)
  __object_setattr(self, 'grows', grows)
  __object_setattr(self, 'feed', feed)
 return __init__

def _make_63(__MISSING, __object_setattr, __default_collected, __default_digests_key, __default_identity, __factory_values, __factory_cfgs):
 def __init__(self, base, settings, sweep, workflow, experiments, fingerprints, collected=__default_collected, digests_key=__default_digests_key, identity=__default_identity, values=__MISSING, cfgs=__MISSING):
  self.base = base
  self.settings = settings
  self.sweep = sweep
  self.workflow = workflow
  self.experiments = experiments
  self.fingerprints = fingerprints
  self.collected = collected
  self.digests_key = digests_key
  self.identity = identity
  self.values = __factory_values() if values is __MISSING else values
  self.cfgs = __factory_cfgs() if cfgs is __MISSING else cfgs
 return __init__

def _make_64(__MISSING, __object_setattr, __default_direction, __default_n_trials, __default_sampler, __default_seed, __default_pruner, __default_space):
 def __init__(self, metric, direction=__default_direction, n_trials=__default_n_trials, sampler=__default_sampler, seed=__default_seed, pruner=__default_pruner, space=__default_space):
  __object_setattr(self, 'metric', metric)
  __object_setattr(self, 'direction', direction)
  __object_setattr(self, 'n_trials', n_trials)
  __object_setattr(self, 'sampler', sampler)
  __object_setattr(self, 'seed', seed)
  __object_setattr(self, 'pruner', pruner)
  __object_setattr(self, 'space', space)
 return __init__

def _make_65(__MISSING, __object_setattr):
 def __init__(self, choices):
  __object_setattr(self, 'choices', choices)
 return __init__

def _make_66(__MISSING, __object_setattr, __default_log):
 def __init__(self, low, high, log=__default_log):
  __object_setattr(self, 'low', low)
  __object_setattr(self, 'high', high)
  __object_setattr(self, 'log', log)
  self.__post_init__()
 return __init__

def _make_67(__MISSING, __object_setattr, __default_log, __default_step):
 def __init__(self, low, high, log=__default_log, step=__default_step):
  __object_setattr(self, 'low', low)
  __object_setattr(self, 'high', high)
  __object_setattr(self, 'log', log)
  __object_setattr(self, 'step', step)
  self.__post_init__()
 return __init__

def _make_68(__MISSING, __object_setattr, __default_value, __factory_intermediate, __factory_system_attrs):
 def __init__(self, state, value=__default_value, intermediate=__MISSING, system_attrs=__MISSING):
  self.state = state
  self.value = value
  self.intermediate = __factory_intermediate() if intermediate is __MISSING else intermediate
  self.system_attrs = __factory_system_attrs() if system_attrs is __MISSING else system_attrs
 return __init__

def _make_69(__MISSING, __object_setattr, __default_cfg_index, __default_same_as, __default_sampler, __default_sampler_key):
 def __init__(self, number, digest, params, distributions, cfg_index=__default_cfg_index, same_as=__default_same_as, sampler=__default_sampler, sampler_key=__default_sampler_key):
  self.number = number
  self.digest = digest
  self.params = params
  self.distributions = distributions
  self.cfg_index = cfg_index
  self.same_as = same_as
  self.sampler = sampler
  self.sampler_key = sampler_key
 return __init__

def _make_70(__MISSING, __object_setattr, __default_abandoned):
 def __init__(self, task, abandoned=__default_abandoned):
  self.task = task
  self.abandoned = abandoned
 return __init__

def _make_71(__MISSING, __object_setattr, __default_jobs, __default_lease_timeout, __default_idle_exit, __default_experiments, __default_leave_idle):
 def __init__(self, jobs=__default_jobs, lease_timeout=__default_lease_timeout, idle_exit=__default_idle_exit, experiments=__default_experiments, leave_idle=__default_leave_idle):
  __object_setattr(self, 'jobs', jobs)
  __object_setattr(self, 'lease_timeout', lease_timeout)
  __object_setattr(self, 'idle_exit', idle_exit)
  __object_setattr(self, 'experiments', experiments)
  __object_setattr(self, 'leave_idle', leave_idle)
 return __init__

def _make_72(__MISSING, __object_setattr):
 def __init__(self, task, errors):
  self.task = task
  self.errors = errors
 return __init__


MAKERS: dict[str, Callable[..., Any]] = {
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, initializer, initargs):\n  __object_setattr(self, 'initializer', initializer)\n  __object_setattr(self, 'initargs', initargs)\n return __init__\n": _make_0,
    'def __make__(__MISSING, __object_setattr, __factory_queue, __default_next_seq, __default_since, __default_stopping_at, __default_ready, __default_handed, __factory_outbox):\n def __init__(self, process, conn, permits, grants, queue=__MISSING, next_seq=__default_next_seq, since=__default_since, stopping_at=__default_stopping_at, ready=__default_ready, handed=__default_handed, outbox=__MISSING):\n  self.process = process\n  self.conn = conn\n  self.permits = permits\n  self.grants = grants\n  self.queue = __factory_queue() if queue is __MISSING else queue\n  self.next_seq = next_seq\n  self.since = since\n  self.stopping_at = stopping_at\n  self.ready = ready\n  self.handed = handed\n  self.outbox = __factory_outbox() if outbox is __MISSING else outbox\n return __init__\n': _make_1,
    'def __make__(__MISSING, __object_setattr, __default_busy, __default_locks, __default_held):\n def __init__(self, pool, busy=__default_busy, locks=__default_locks, held=__default_held):\n  self.pool = pool\n  self.busy = busy\n  self.locks = locks\n  self.held = held\n return __init__\n': _make_2,
    'def __make__(__MISSING, __object_setattr):\n def __init__(self, future, function, args, timeout):\n  self.future = future\n  self.function = function\n  self.args = args\n  self.timeout = timeout\n return __init__\n': _make_3,
    "def __make__(__MISSING, __object_setattr, __default_local, __default_owned, __default_watchdog):\n def __init__(self, address, local=__default_local, owned=__default_owned, watchdog=__default_watchdog):\n  __object_setattr(self, 'address', address)\n  __object_setattr(self, 'local', local)\n  __object_setattr(self, 'owned', owned)\n  __object_setattr(self, 'watchdog', watchdog)\n return __init__\n": _make_4,
    'def __make__(__MISSING, __object_setattr, __default_cancelled, __default_cancelled_at, __default_reason):\n def __init__(self, task, request, submitted, cancelled=__default_cancelled, cancelled_at=__default_cancelled_at, reason=__default_reason):\n  self.task = task\n  self.request = request\n  self.submitted = submitted\n  self.cancelled = cancelled\n  self.cancelled_at = cancelled_at\n  self.reason = reason\n return __init__\n': _make_5,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, what, host, port):\n  __object_setattr(self, 'what', what)\n  __object_setattr(self, 'host', host)\n  __object_setattr(self, 'port', port)\n return __init__\n": _make_6,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, num_cpus, num_gpus, memory):\n  __object_setattr(self, 'num_cpus', num_cpus)\n  __object_setattr(self, 'num_gpus', num_gpus)\n  __object_setattr(self, 'memory', memory)\n return __init__\n": _make_7,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, task_id, state, reason):\n  __object_setattr(self, 'task_id', task_id)\n  __object_setattr(self, 'state', state)\n  __object_setattr(self, 'reason', reason)\n return __init__\n": _make_8,
    'def __make__(__MISSING, __object_setattr, __factory_jobs, __factory_submitted):\n def __init__(self, jobs=__MISSING, submitted=__MISSING):\n  self.jobs = __factory_jobs() if jobs is __MISSING else jobs\n  self.submitted = __factory_submitted() if submitted is __MISSING else submitted\n return __init__\n': _make_9,
    "def __make__(__MISSING, __object_setattr, __default_flags, __default_extra, __default_setup):\n def __init__(self, flags=__default_flags, extra=__default_extra, setup=__default_setup):\n  __object_setattr(self, 'flags', flags)\n  __object_setattr(self, 'extra', extra)\n  __object_setattr(self, 'setup', setup)\n return __init__\n": _make_10,
    'def __make__(__MISSING, __object_setattr, __factory_pending, __default_done, __factory_failed, __factory_running, __default_held, __factory__errors_before, __default__next_scan):\n def __init__(self, retries, pending=__MISSING, done=__default_done, failed=__MISSING, running=__MISSING, held=__default_held, _errors_before=__MISSING, _next_scan=__default__next_scan):\n  self.retries = retries\n  self.pending = __factory_pending() if pending is __MISSING else pending\n  self.done = done\n  self.failed = __factory_failed() if failed is __MISSING else failed\n  self.running = __factory_running() if running is __MISSING else running\n  self.held = held\n  self._errors_before = __factory__errors_before() if _errors_before is __MISSING else _errors_before\n  self._next_scan = _next_scan\n return __init__\n': _make_11,
    "def __make__(__MISSING, __object_setattr, __default_slots):\n def __init__(self, name, slots=__default_slots):\n  __object_setattr(self, 'name', name)\n  __object_setattr(self, 'slots', slots)\n return __init__\n": _make_12,
    "def __make__(__MISSING, __object_setattr, __default_config, __default_user, __default_port, __default_key, __default_connect_timeout, __default_alive_interval, __default_alive_count):\n def __init__(self, program, config=__default_config, user=__default_user, port=__default_port, key=__default_key, connect_timeout=__default_connect_timeout, alive_interval=__default_alive_interval, alive_count=__default_alive_count):\n  __object_setattr(self, 'program', program)\n  __object_setattr(self, 'config', config)\n  __object_setattr(self, 'user', user)\n  __object_setattr(self, 'port', port)\n  __object_setattr(self, 'key', key)\n  __object_setattr(self, 'connect_timeout', connect_timeout)\n  __object_setattr(self, 'alive_interval', alive_interval)\n  __object_setattr(self, 'alive_count', alive_count)\n return __init__\n": _make_13,
    'def __make__(__MISSING, __object_setattr, __default_state, __default_busy, __default_failures, __factory_reasons, __default_trouble, __default_requeued, __default_moved, __default_rerun, __default_master, __default__started, __default__retry_at, __default__log_path):\n def __init__(self, spec, control_path, ssh, state=__default_state, busy=__default_busy, failures=__default_failures, reasons=__MISSING, trouble=__default_trouble, requeued=__default_requeued, moved=__default_moved, rerun=__default_rerun, master=__default_master, _started=__default__started, _retry_at=__default__retry_at, _log_path=__default__log_path):\n  self.spec = spec\n  self.control_path = control_path\n  self.ssh = ssh\n  self.state = state\n  self.busy = busy\n  self.failures = failures\n  self.reasons = __factory_reasons() if reasons is __MISSING else reasons\n  self.trouble = trouble\n  self.requeued = requeued\n  self.moved = moved\n  self.rerun = rerun\n  self.master = master\n  self._started = _started\n  self._retry_at = _retry_at\n  self._log_path = _log_path\n return __init__\n': _make_14,
    "def __make__(__MISSING, __object_setattr, __factory_fingerprints, __default_heartbeat_timeout, __default_trust_group, __default_cwd, __default_sys_path):\n def __init__(self, task, out_path, fingerprints=__MISSING, heartbeat_timeout=__default_heartbeat_timeout, trust_group=__default_trust_group, cwd=__default_cwd, sys_path=__default_sys_path):\n  __object_setattr(self, 'task', task)\n  __object_setattr(self, 'out_path', out_path)\n  __object_setattr(self, 'fingerprints', __factory_fingerprints() if fingerprints is __MISSING else fingerprints)\n  __object_setattr(self, 'heartbeat_timeout', heartbeat_timeout)\n  __object_setattr(self, 'trust_group', trust_group)\n  __object_setattr(self, 'cwd', cwd)\n  __object_setattr(self, 'sys_path', sys_path)\n return __init__\n": _make_15,
    'def __make__(__MISSING, __object_setattr, __factory_started, __default_remote_started, __default_outcome_json, __default_watchdog, __default_stop_reason, __default_kill_at, __default_open_streams, __factory__out, __factory__err):\n def __init__(self, task, host, proc, started=__MISSING, remote_started=__default_remote_started, outcome_json=__default_outcome_json, watchdog=__default_watchdog, stop_reason=__default_stop_reason, kill_at=__default_kill_at, open_streams=__default_open_streams, _out=__MISSING, _err=__MISSING):\n  self.task = task\n  self.host = host\n  self.proc = proc\n  self.started = __factory_started() if started is __MISSING else started\n  self.remote_started = remote_started\n  self.outcome_json = outcome_json\n  self.watchdog = watchdog\n  self.stop_reason = stop_reason\n  self.kill_at = kill_at\n  self.open_streams = open_streams\n  self._out = __factory__out() if _out is __MISSING else _out\n  self._err = __factory__err() if _err is __MISSING else _err\n  self.__post_init__()\n return __init__\n': _make_16,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, runs, stages, results_lines):\n  __object_setattr(self, 'runs', runs)\n  __object_setattr(self, 'stages', stages)\n  __object_setattr(self, 'results_lines', results_lines)\n return __init__\n": _make_17,
    'def __make__(__MISSING, __object_setattr, __factory_files, __factory_skipped, __default_hasher):\n def __init__(self, files=__MISSING, skipped=__MISSING, hasher=__default_hasher):\n  self.files = __factory_files() if files is __MISSING else files\n  self.skipped = __factory_skipped() if skipped is __MISSING else skipped\n  self.hasher = hasher\n return __init__\n': _make_18,
    "def __make__(__MISSING, __object_setattr, __default_max_file, __default_max_total):\n def __init__(self, max_file=__default_max_file, max_total=__default_max_total):\n  __object_setattr(self, 'max_file', max_file)\n  __object_setattr(self, 'max_total', max_total)\n return __init__\n": _make_19,
    "def __make__(__MISSING, __object_setattr, __default_data):\n def __init__(self, path, size, sha, data=__default_data):\n  __object_setattr(self, 'path', path)\n  __object_setattr(self, 'size', size)\n  __object_setattr(self, 'sha', sha)\n  __object_setattr(self, 'data', data)\n return __init__\n": _make_20,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, text, source, globals, chains, imports, strings, getattr_on):\n  __object_setattr(self, 'text', text)\n  __object_setattr(self, 'source', source)\n  __object_setattr(self, 'globals', globals)\n  __object_setattr(self, 'chains', chains)\n  __object_setattr(self, 'imports', imports)\n  __object_setattr(self, 'strings', strings)\n  __object_setattr(self, 'getattr_on', getattr_on)\n return __init__\n": _make_21,
    "def __make__(__MISSING, __object_setattr, __default_from_main):\n def __init__(self, source, module, functions, rule, limits, state_dir, avoid, argv, from_main=__default_from_main):\n  __object_setattr(self, 'source', source)\n  __object_setattr(self, 'module', module)\n  __object_setattr(self, 'functions', functions)\n  __object_setattr(self, 'rule', rule)\n  __object_setattr(self, 'limits', limits)\n  __object_setattr(self, 'state_dir', state_dir)\n  __object_setattr(self, 'avoid', avoid)\n  __object_setattr(self, 'argv', argv)\n  __object_setattr(self, 'from_main', from_main)\n return __init__\n": _make_22,
    "def __make__(__MISSING, __object_setattr, __default_sys_path, __default_main_only, __default_modules, __default_tops, __default_argv, __default_workflow_file, __default_layout):\n def __init__(self, folder, module, source, sys_path=__default_sys_path, main_only=__default_main_only, modules=__default_modules, tops=__default_tops, argv=__default_argv, workflow_file=__default_workflow_file, layout=__default_layout):\n  __object_setattr(self, 'folder', folder)\n  __object_setattr(self, 'module', module)\n  __object_setattr(self, 'source', source)\n  __object_setattr(self, 'sys_path', sys_path)\n  __object_setattr(self, 'main_only', main_only)\n  __object_setattr(self, 'modules', modules)\n  __object_setattr(self, 'tops', tops)\n  __object_setattr(self, 'argv', argv)\n  __object_setattr(self, 'workflow_file', workflow_file)\n  __object_setattr(self, 'layout', layout)\n return __init__\n": _make_23,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, module, level, name):\n  __object_setattr(self, 'module', module)\n  __object_setattr(self, 'level', level)\n  __object_setattr(self, 'name', name)\n return __init__\n": _make_24,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, origin, locations):\n  __object_setattr(self, 'origin', origin)\n  __object_setattr(self, 'locations', locations)\n return __init__\n": _make_25,
    "def __make__(__MISSING, __object_setattr, __default_include, __default_exclude):\n def __init__(self, include=__default_include, exclude=__default_exclude):\n  __object_setattr(self, 'include', include)\n  __object_setattr(self, 'exclude', exclude)\n return __init__\n": _make_26,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, name, path, entry, package):\n  __object_setattr(self, 'name', name)\n  __object_setattr(self, 'path', path)\n  __object_setattr(self, 'entry', entry)\n  __object_setattr(self, 'package', package)\n return __init__\n": _make_27,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, digest, kind, summary):\n  __object_setattr(self, 'digest', digest)\n  __object_setattr(self, 'kind', kind)\n  __object_setattr(self, 'summary', summary)\n return __init__\n": _make_28,
    "def __make__(__MISSING, __object_setattr, __default_stored_values):\n def __init__(self, exp_id, cfg, digest, stored_values=__default_stored_values):\n  __object_setattr(self, 'exp_id', exp_id)\n  __object_setattr(self, 'cfg', cfg)\n  __object_setattr(self, 'digest', digest)\n  __object_setattr(self, 'stored_values', stored_values)\n return __init__\n": _make_29,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, qualname):\n  __object_setattr(self, 'qualname', qualname)\n return __init__\n": _make_30,
    'def __make__(__MISSING, __object_setattr, __factory_basecfg, __factory_sys_path, __default_source, __factory_fingerprints, __factory_digests, __default_snapshot, __factory_ids, __default_stored_values, __default_code_id):\n def __init__(self, pre, fit, post, cfgs, basecfg=__MISSING, sys_path=__MISSING, source=__default_source, fingerprints=__MISSING, digests=__MISSING, snapshot=__default_snapshot, ids=__MISSING, stored_values=__default_stored_values, code_id=__default_code_id):\n  self.pre = pre\n  self.fit = fit\n  self.post = post\n  self.cfgs = cfgs\n  self.basecfg = __factory_basecfg() if basecfg is __MISSING else basecfg\n  self.sys_path = __factory_sys_path() if sys_path is __MISSING else sys_path\n  self.source = source\n  self.fingerprints = __factory_fingerprints() if fingerprints is __MISSING else fingerprints\n  self.digests = __factory_digests() if digests is __MISSING else digests\n  self.snapshot = snapshot\n  self.ids = __factory_ids() if ids is __MISSING else ids\n  self.stored_values = stored_values\n  self.code_id = code_id\n return __init__\n': _make_31,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, settings, pre, fit, post):\n  __object_setattr(self, 'settings', settings)\n  __object_setattr(self, 'pre', pre)\n  __object_setattr(self, 'fit', fit)\n  __object_setattr(self, 'post', post)\n return __init__\n": _make_32,
    "def __make__(__MISSING, __object_setattr, __default_backend, __default_num_cpus, __default_num_gpus, __default_max_memory, __default_address, __default_redis_password, __default_verbose, __default_repetitions, __default_timeout, __default_retries, __default_hosts, __default_ssh_user, __default_ssh_port, __default_ssh_key, __default_ssh_config, __default_python, __default_report, __default_report_metric, __default_gpu_ids, __default_lease_timeout, __default_workers, __factory_slurm, __factory_code, __default_inline_max_kb):\n def __init__(self, out_path, backend=__default_backend, num_cpus=__default_num_cpus, num_gpus=__default_num_gpus, max_memory=__default_max_memory, address=__default_address, redis_password=__default_redis_password, verbose=__default_verbose, repetitions=__default_repetitions, timeout=__default_timeout, retries=__default_retries, hosts=__default_hosts, ssh_user=__default_ssh_user, ssh_port=__default_ssh_port, ssh_key=__default_ssh_key, ssh_config=__default_ssh_config, python=__default_python, report=__default_report, report_metric=__default_report_metric, gpu_ids=__default_gpu_ids, lease_timeout=__default_lease_timeout, workers=__default_workers, slurm=__MISSING, code=__MISSING, inline_max_kb=__default_inline_max_kb):\n  __object_setattr(self, 'out_path', out_path)\n  __object_setattr(self, 'backend', backend)\n  __object_setattr(self, 'num_cpus', num_cpus)\n  __object_setattr(self, 'num_gpus', num_gpus)\n  __object_setattr(self, 'max_memory', max_memory)\n  __object_setattr(self, 'address', address)\n  __object_setattr(self, 'redis_password', redis_password)\n  __object_setattr(self, 'verbose', verbose)\n  __object_setattr(self, 'repetitions', repetitions)\n  __object_setattr(self, 'timeout', timeout)\n  __object_setattr(self, 'retries', retries)\n  __object_setattr(self, 'hosts', hosts)\n  __object_setattr(self, 'ssh_user', ssh_user)\n  __object_setattr(self, 'ssh_port', ssh_port)\n  __object_setattr(self, 'ssh_key', ssh_key)\n  __object_setattr(self, 'ssh_config', ssh_config)\n  __object_setattr(self, 'python', python)\n  __object_setattr(self, 'report', report)\n  __object_setattr(self, 'report_metric', report_metric)\n  __object_setattr(self, 'gpu_ids', gpu_ids)\n  __object_setattr(self, 'lease_timeout', lease_timeout)\n  __object_setattr(self, 'workers', workers)\n  __object_setattr(self, 'slurm', __factory_slurm() if slurm is __MISSING else slurm)\n  __object_setattr(self, 'code', __factory_code() if code is __MISSING else code)\n  __object_setattr(self, 'inline_max_kb', inline_max_kb)\n return __init__\n": _make_33,
    "def __make__(__MISSING, __object_setattr, __default_equivalent):\n def __init__(self, stale, equivalent=__default_equivalent):\n  __object_setattr(self, 'stale', stale)\n  __object_setattr(self, 'equivalent', equivalent)\n return __init__\n": _make_34,
    'def __make__(__MISSING, __object_setattr, __default_legacy):\n def __init__(self, experiments, orphans, moves, stored_digest, legacy=__default_legacy):\n  self.experiments = experiments\n  self.orphans = orphans\n  self.moves = moves\n  self.stored_digest = stored_digest\n  self.legacy = legacy\n return __init__\n': _make_35,
    'def __make__(__MISSING, __object_setattr, __default_reordered, __default_new, __factory_edited, __factory_gone, __default_back, __default_found, __default_migrated, __default_relaid, __default_diff):\n def __init__(self, reordered=__default_reordered, new=__default_new, edited=__MISSING, gone=__MISSING, back=__default_back, found=__default_found, migrated=__default_migrated, relaid=__default_relaid, diff=__default_diff):\n  self.reordered = reordered\n  self.new = new\n  self.edited = __factory_edited() if edited is __MISSING else edited\n  self.gone = __factory_gone() if gone is __MISSING else gone\n  self.back = back\n  self.found = found\n  self.migrated = migrated\n  self.relaid = relaid\n  self.diff = diff\n return __init__\n': _make_36,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, path):\n  __object_setattr(self, 'path', path)\n return __init__\n": _make_37,
    "def __make__(__MISSING, __object_setattr, __default_timeout, __default_role):\n def __init__(self, host, pid, worker, slurm, timeout=__default_timeout, role=__default_role):\n  __object_setattr(self, 'host', host)\n  __object_setattr(self, 'pid', pid)\n  __object_setattr(self, 'worker', worker)\n  __object_setattr(self, 'slurm', slurm)\n  __object_setattr(self, 'timeout', timeout)\n  __object_setattr(self, 'role', role)\n return __init__\n": _make_38,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, signature, since, info):\n  __object_setattr(self, 'signature', signature)\n  __object_setattr(self, 'since', since)\n  __object_setattr(self, 'info', info)\n return __init__\n": _make_39,
    'def __make__(__MISSING, __object_setattr, __factory_code, __default_stored_same):\n def __init__(self, sweep, experiments, runs, code=__MISSING, stored_same=__default_stored_same):\n  self.sweep = sweep\n  self.experiments = experiments\n  self.runs = runs\n  self.code = __factory_code() if code is __MISSING else code\n  self.stored_same = stored_same\n return __init__\n': _make_40,
    "def __make__(__MISSING, __object_setattr, __default_pid):\n def __init__(self, stage, kind, message, traceback, attempt, host, time, pid=__default_pid):\n  __object_setattr(self, 'stage', stage)\n  __object_setattr(self, 'kind', kind)\n  __object_setattr(self, 'message', message)\n  __object_setattr(self, 'traceback', traceback)\n  __object_setattr(self, 'attempt', attempt)\n  __object_setattr(self, 'host', host)\n  __object_setattr(self, 'time', time)\n  __object_setattr(self, 'pid', pid)\n return __init__\n": _make_41,
    "def __make__(__MISSING, __object_setattr, __default_code, __default_config, __default_token, __default_origin):\n def __init__(self, stage, started, finished, seconds, host, pid, attempt, code=__default_code, config=__default_config, token=__default_token, origin=__default_origin):\n  __object_setattr(self, 'stage', stage)\n  __object_setattr(self, 'started', started)\n  __object_setattr(self, 'finished', finished)\n  __object_setattr(self, 'seconds', seconds)\n  __object_setattr(self, 'host', host)\n  __object_setattr(self, 'pid', pid)\n  __object_setattr(self, 'attempt', attempt)\n  __object_setattr(self, 'code', code)\n  __object_setattr(self, 'config', config)\n  __object_setattr(self, 'token', token)\n  __object_setattr(self, 'origin', origin)\n return __init__\n": _make_42,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, exp_id, rep, path, failure, reason):\n  __object_setattr(self, 'exp_id', exp_id)\n  __object_setattr(self, 'rep', rep)\n  __object_setattr(self, 'path', path)\n  __object_setattr(self, 'failure', failure)\n  __object_setattr(self, 'reason', reason)\n return __init__\n": _make_43,
    'def __make__(__MISSING, __object_setattr, __default_outcome):\n def __init__(self, record, cfg, number, outcome=__default_outcome):\n  self.record = record\n  self.cfg = cfg\n  self.number = number\n  self.outcome = outcome\n return __init__\n': _make_44,
    'def __make__(__MISSING, __object_setattr):\n def __init__(self, ids, config, means, stds, counts, others):\n  self.ids = ids\n  self.config = config\n  self.means = means\n  self.stds = stds\n  self.counts = counts\n  self.others = others\n return __init__\n': _make_45,
    'def __make__(__MISSING, __object_setattr, __default_state_column, __default_n_column):\n def __init__(self, sweep, ids, repetitions, states, done, config, means, stds, counts, others, runs, varied, constant, metrics, single, state_column=__default_state_column, n_column=__default_n_column):\n  self.sweep = sweep\n  self.ids = ids\n  self.repetitions = repetitions\n  self.states = states\n  self.done = done\n  self.config = config\n  self.means = means\n  self.stds = stds\n  self.counts = counts\n  self.others = others\n  self.runs = runs\n  self.varied = varied\n  self.constant = constant\n  self.metrics = metrics\n  self.single = single\n  self.state_column = state_column\n  self.n_column = n_column\n return __init__\n': _make_46,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, metric, direction):\n  __object_setattr(self, 'metric', metric)\n  __object_setattr(self, 'direction', direction)\n return __init__\n": _make_47,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, key, op, value, text):\n  __object_setattr(self, 'key', key)\n  __object_setattr(self, 'op', op)\n  __object_setattr(self, 'value', value)\n  __object_setattr(self, 'text', text)\n return __init__\n": _make_48,
    'def __make__(__MISSING, __object_setattr, __factory_counts, __default_done, __default_spread, __factory_best, __default_state, __factory_notes):\n def __init__(self, columns, metrics, single, counts=__MISSING, done=__default_done, spread=__default_spread, best=__MISSING, state=__default_state, notes=__MISSING):\n  self.columns = columns\n  self.metrics = metrics\n  self.single = single\n  self.counts = __factory_counts() if counts is __MISSING else counts\n  self.done = done\n  self.spread = spread\n  self.best = __factory_best() if best is __MISSING else best\n  self.state = state\n  self.notes = __factory_notes() if notes is __MISSING else notes\n return __init__\n': _make_49,
    'def __make__(__MISSING, __object_setattr, __default_reusable):\n def __init__(self, cwd, environ, path_object, path, streams, loggers, handlers, settings, disable, registered, reusable=__default_reusable):\n  self.cwd = cwd\n  self.environ = environ\n  self.path_object = path_object\n  self.path = path\n  self.streams = streams\n  self.loggers = loggers\n  self.handlers = handlers\n  self.settings = settings\n  self.disable = disable\n  self.registered = registered\n  self.reusable = reusable\n return __init__\n': _make_50,
    "def __make__(__MISSING, __object_setattr, __default_stage):\n def __init__(self, kind, topic, message, stage=__default_stage):\n  __object_setattr(self, 'kind', kind)\n  __object_setattr(self, 'topic', topic)\n  __object_setattr(self, 'message', message)\n  __object_setattr(self, 'stage', stage)\n return __init__\n": _make_51,
    'def __make__(__MISSING, __object_setattr, __factory_counts):\n def __init__(self, counts=__MISSING):\n  self.counts = __factory_counts() if counts is __MISSING else counts\n return __init__\n': _make_52,
    'def __make__(__MISSING, __object_setattr, __default_count):\n def __init__(self, first, count=__default_count):\n  self.first = first\n  self.count = count\n return __init__\n': _make_53,
    'def __make__(__MISSING, __object_setattr, __factory_unpicklable, __factory_warned):\n def __init__(self, unpicklable=__MISSING, warned=__MISSING):\n  self.unpicklable = __factory_unpicklable() if unpicklable is __MISSING else unpicklable\n  self.warned = __factory_warned() if warned is __MISSING else warned\n return __init__\n': _make_54,
    "def __make__(__MISSING, __object_setattr, __default_failure, __default_ran, __default_warnings, __default_scores, __default_superseded):\n def __init__(self, task, failure=__default_failure, ran=__default_ran, warnings=__default_warnings, scores=__default_scores, superseded=__default_superseded):\n  __object_setattr(self, 'task', task)\n  __object_setattr(self, 'failure', failure)\n  __object_setattr(self, 'ran', ran)\n  __object_setattr(self, 'warnings', warnings)\n  __object_setattr(self, 'scores', scores)\n  __object_setattr(self, 'superseded', superseded)\n return __init__\n": _make_55,
    "def __make__(__MISSING, __object_setattr, __default_attempt, __default_folder, __default_adds, __default_new_folder):\n def __init__(self, exp_id, rep, path, attempt=__default_attempt, folder=__default_folder, adds=__default_adds, new_folder=__default_new_folder):\n  __object_setattr(self, 'exp_id', exp_id)\n  __object_setattr(self, 'rep', rep)\n  __object_setattr(self, 'path', path)\n  __object_setattr(self, 'attempt', attempt)\n  __object_setattr(self, 'folder', folder)\n  __object_setattr(self, 'adds', adds)\n  __object_setattr(self, 'new_folder', new_folder)\n return __init__\n": _make_56,
    'def __make__(__MISSING, __object_setattr, __default_value, __default_fit_time, __factory_warnings, __default_names):\n def __init__(self, start, value=__default_value, fit_time=__default_fit_time, warnings=__MISSING, names=__default_names):\n  self.start = start\n  self.value = value\n  self.fit_time = fit_time\n  self.warnings = __factory_warnings() if warnings is __MISSING else warnings\n  self.names = names\n return __init__\n': _make_57,
    "def __make__(__MISSING, __object_setattr, __default_record_error):\n def __init__(self, label, path, stage, kind, message, record_error=__default_record_error):\n  __object_setattr(self, 'label', label)\n  __object_setattr(self, 'path', path)\n  __object_setattr(self, 'stage', stage)\n  __object_setattr(self, 'kind', kind)\n  __object_setattr(self, 'message', message)\n  __object_setattr(self, 'record_error', record_error)\n return __init__\n": _make_58,
    'def __make__(__MISSING, __object_setattr, __default_planned, __default_done, __default_skipped, __default_failed, __factory_failed_runs, __default_interrupted, __default_dry_run, __default_seconds, __default_results_lines, __default_results_error, __factory_notes, __factory_warnings):\n def __init__(self, out_path, planned=__default_planned, done=__default_done, skipped=__default_skipped, failed=__default_failed, failed_runs=__MISSING, interrupted=__default_interrupted, dry_run=__default_dry_run, seconds=__default_seconds, results_lines=__default_results_lines, results_error=__default_results_error, notes=__MISSING, warnings=__MISSING):\n  self.out_path = out_path\n  self.planned = planned\n  self.done = done\n  self.skipped = skipped\n  self.failed = failed\n  self.failed_runs = __factory_failed_runs() if failed_runs is __MISSING else failed_runs\n  self.interrupted = interrupted\n  self.dry_run = dry_run\n  self.seconds = seconds\n  self.results_lines = results_lines\n  self.results_error = results_error\n  self.notes = __factory_notes() if notes is __MISSING else notes\n  self.warnings = __factory_warnings() if warnings is __MISSING else warnings\n return __init__\n': _make_59,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, fd, pid, crashed):\n  __object_setattr(self, 'fd', fd)\n  __object_setattr(self, 'pid', pid)\n  __object_setattr(self, 'crashed', crashed)\n return __init__\n": _make_60,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, status, said, announced):\n  __object_setattr(self, 'status', status)\n  __object_setattr(self, 'said', said)\n  __object_setattr(self, 'announced', announced)\n return __init__\n": _make_61,
    "def __make__(__MISSING, __object_setattr, __default_dry_run, __default_rerun_changed, __default_source, __default_fingerprints, __default_digests, __default_snapshot, __default_plan_only, __default_detach, __default_only, __default_grows, __default_feed):\n def __init__(self, dry_run=__default_dry_run, rerun_changed=__default_rerun_changed, source=__default_source, fingerprints=__default_fingerprints, digests=__default_digests, snapshot=__default_snapshot, plan_only=__default_plan_only, detach=__default_detach, only=__default_only, grows=__default_grows, feed=__default_feed):\n  __object_setattr(self, 'dry_run', dry_run)\n  __object_setattr(self, 'rerun_changed', rerun_changed)\n  __object_setattr(self, 'source', source)\n  __object_setattr(self, 'fingerprints', fingerprints)\n  __object_setattr(self, 'digests', digests)\n  __object_setattr(self, 'snapshot', snapshot)\n  __object_setattr(self, 'plan_only', plan_only)\n  __object_setattr(self, 'detach', detach)\n  __object_setattr(self, 'only', only)\n  __object_setattr(self, 'grows', grows)\n  __object_setattr(self, 'feed', feed)\n return __init__\n": _make_62,
    'def __make__(__MISSING, __object_setattr, __default_collected, __default_digests_key, __default_identity, __factory_values, __factory_cfgs):\n def __init__(self, base, settings, sweep, workflow, experiments, fingerprints, collected=__default_collected, digests_key=__default_digests_key, identity=__default_identity, values=__MISSING, cfgs=__MISSING):\n  self.base = base\n  self.settings = settings\n  self.sweep = sweep\n  self.workflow = workflow\n  self.experiments = experiments\n  self.fingerprints = fingerprints\n  self.collected = collected\n  self.digests_key = digests_key\n  self.identity = identity\n  self.values = __factory_values() if values is __MISSING else values\n  self.cfgs = __factory_cfgs() if cfgs is __MISSING else cfgs\n return __init__\n': _make_63,
    "def __make__(__MISSING, __object_setattr, __default_direction, __default_n_trials, __default_sampler, __default_seed, __default_pruner, __default_space):\n def __init__(self, metric, direction=__default_direction, n_trials=__default_n_trials, sampler=__default_sampler, seed=__default_seed, pruner=__default_pruner, space=__default_space):\n  __object_setattr(self, 'metric', metric)\n  __object_setattr(self, 'direction', direction)\n  __object_setattr(self, 'n_trials', n_trials)\n  __object_setattr(self, 'sampler', sampler)\n  __object_setattr(self, 'seed', seed)\n  __object_setattr(self, 'pruner', pruner)\n  __object_setattr(self, 'space', space)\n return __init__\n": _make_64,
    "def __make__(__MISSING, __object_setattr):\n def __init__(self, choices):\n  __object_setattr(self, 'choices', choices)\n return __init__\n": _make_65,
    "def __make__(__MISSING, __object_setattr, __default_log):\n def __init__(self, low, high, log=__default_log):\n  __object_setattr(self, 'low', low)\n  __object_setattr(self, 'high', high)\n  __object_setattr(self, 'log', log)\n  self.__post_init__()\n return __init__\n": _make_66,
    "def __make__(__MISSING, __object_setattr, __default_log, __default_step):\n def __init__(self, low, high, log=__default_log, step=__default_step):\n  __object_setattr(self, 'low', low)\n  __object_setattr(self, 'high', high)\n  __object_setattr(self, 'log', log)\n  __object_setattr(self, 'step', step)\n  self.__post_init__()\n return __init__\n": _make_67,
    'def __make__(__MISSING, __object_setattr, __default_value, __factory_intermediate, __factory_system_attrs):\n def __init__(self, state, value=__default_value, intermediate=__MISSING, system_attrs=__MISSING):\n  self.state = state\n  self.value = value\n  self.intermediate = __factory_intermediate() if intermediate is __MISSING else intermediate\n  self.system_attrs = __factory_system_attrs() if system_attrs is __MISSING else system_attrs\n return __init__\n': _make_68,
    'def __make__(__MISSING, __object_setattr, __default_cfg_index, __default_same_as, __default_sampler, __default_sampler_key):\n def __init__(self, number, digest, params, distributions, cfg_index=__default_cfg_index, same_as=__default_same_as, sampler=__default_sampler, sampler_key=__default_sampler_key):\n  self.number = number\n  self.digest = digest\n  self.params = params\n  self.distributions = distributions\n  self.cfg_index = cfg_index\n  self.same_as = same_as\n  self.sampler = sampler\n  self.sampler_key = sampler_key\n return __init__\n': _make_69,
    'def __make__(__MISSING, __object_setattr, __default_abandoned):\n def __init__(self, task, abandoned=__default_abandoned):\n  self.task = task\n  self.abandoned = abandoned\n return __init__\n': _make_70,
    "def __make__(__MISSING, __object_setattr, __default_jobs, __default_lease_timeout, __default_idle_exit, __default_experiments, __default_leave_idle):\n def __init__(self, jobs=__default_jobs, lease_timeout=__default_lease_timeout, idle_exit=__default_idle_exit, experiments=__default_experiments, leave_idle=__default_leave_idle):\n  __object_setattr(self, 'jobs', jobs)\n  __object_setattr(self, 'lease_timeout', lease_timeout)\n  __object_setattr(self, 'idle_exit', idle_exit)\n  __object_setattr(self, 'experiments', experiments)\n  __object_setattr(self, 'leave_idle', leave_idle)\n return __init__\n": _make_71,
    'def __make__(__MISSING, __object_setattr):\n def __init__(self, task, errors):\n  self.task = task\n  self.errors = errors\n return __init__\n': _make_72,
}
