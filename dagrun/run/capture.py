"""What a stage call does to its process: its output goes to ``RUN/<stage>.log``, and the
process-wide state it changes is put back before the next call.

Output, two ways, chosen by where the stage runs:

* ``tee`` (in the driver's own process, the ``single`` backend): file descriptors 1 and 2
  point at two pipes that one thread of the process (``_FdTee``, set up once per process)
  copies to the terminal *and* to the log, so ``print``, ``os.write(1, ...)``, C extensions
  and subprocesses all reach both, and ``breakpoint()`` still works at the terminal. Before
  the stage's marker is written, the thread is drained up to the end of the stage. Where
  ``sys.stdout``/``sys.stderr`` are not file descriptors 1 and 2 (a notebook kernel, a test
  runner's capture), the Python streams are teed instead (``_Tee``).
* ``fd`` (in a worker process): file descriptors 1 and 2 point at the log, so output of C
  extensions and subprocesses, and a segfault's traceback (``faulthandler``), land there too.
  The log is the worker's spare file under the log's name (``_LogSpare``): a silent call
  then makes and frees no inode.

A log that stays empty is removed; a log appended to by a later attempt gets a separator line.

State (``isolated``): the working folder, ``os.environ``, ``sys.path``, ``sys.stdout`` and
``sys.stderr``, and the ``logging`` configuration (the root logger's handlers and level, the
handlers, level and switches of the loggers that existed before, ``logging.disable``) are
recorded before each stage call and put back after it when they changed, so one run cannot
change how the next one runs, and a run resumed at ``fit`` sees what an uninterrupted one
sees. Loggers first created during the call lose (and close) the handlers they got in it: a
``FileHandler`` into run 0's folder must not receive run 1's lines, nor a handler added per
run print each line once more per run; their level and switches are left as set. (So does
the logger of a library first imported inside a stage: the handler its import added, often
a ``NullHandler``, is gone for later runs; import such libraries at the top of the workflow
file to keep it.) Recording is a few copies of small lists and dicts; restoring happens
only for what changed; ``logging`` itself is not imported for it (a process that never
imported it has no configuration to put back, and one a stage imported it in is put back to
how ``logging`` starts: no handlers, the root at ``WARNING``). Not isolated: the global
random state, warning filters, and the state of imported modules (a process runs many runs;
seed per run from ``cfg["run_id"]``).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import faulthandler
import fcntl
import operator
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, TextIO

from dagrun.disk import atomic
from dagrun.disk.layout import LOG_SPARE
from dagrun.record import record

if TYPE_CHECKING:
    import logging


class CaptureMode(str, enum.Enum):
    """Where stages run: ``TEE`` in the driver's own process, ``FD`` in a worker."""

    TEE = "tee"
    FD = "fd"


DRAIN_TIMEOUT = 30.0  # seconds to wait for the tee thread to copy what a stage wrote


def _separator(attempt: int, host: str) -> bytes:
    """The line before a later attempt's output in a log, made when needed."""
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"----- dagrun: attempt {attempt} on {host} at {when} -----\n".encode()


class _LazyLog:
    """Opens the log file on the first write, so silent stages leave no file; writes after
    ``close`` are dropped (a stream a stage kept must not raise later)."""

    __slots__ = ("_closed", "_file", "attempt", "host", "path")

    def __init__(self, path: str, attempt: int, host: str) -> None:
        self.path = path
        self.attempt, self.host = attempt, host  # what the separator says
        self._file: IO[bytes] | None = None
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115
            if self._file.tell() > 0:
                self._file.write(_separator(self.attempt, self.host))
        self._file.write(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Close the log; when this call wrote to it, cut it down to ``LOG_CAP``."""
        self._closed = True
        if self._file is not None:
            self._file.close()
            _cap_quietly(self.path)


class _Tee:
    """A text stream that writes to the terminal stream and (lazily opened) to the log."""

    def __init__(self, stream: TextIO, log: _LazyLog) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        self._log.write(text.encode("utf-8", errors="replace"))
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()
        self._log.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _tee(path: str, attempt: int, host: str) -> Iterator[None]:
    log = _LazyLog(path, attempt, host)
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, log), _Tee(err, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
        log.close()


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - cheaper than suppress (twice per stage call)
            stream.flush()
        except Exception:  # a stream the user replaced or closed
            pass


def _partial(buf: bytes, token: bytes) -> int:
    """How many bytes at the end of ``buf`` may be the start of ``token``."""
    start = buf.find(token[:1], max(0, len(buf) - len(token) + 1))
    while start >= 0:
        if token.startswith(buf[start:]):
            return len(buf) - start
        start = buf.find(token[:1], start + 1)
    return 0


class _FdTee:
    """File descriptors 1 and 2 of this process, copied to the terminal and a stage's log.

    Set up once per process: two pipes, duplicates of the terminal's descriptors, and a
    daemon thread that copies each pipe to its terminal descriptor and, during a stage, to
    the stage's log. A stage call costs six ``dup2`` calls and a drain: when the pipes are
    empty and the thread idle (a silent stage) nothing more; otherwise dagrun writes a token
    no output contains into each pipe and waits until the thread has copied everything
    before it. While ``hold`` (a sweep of ``single``), 1 and 2 stay on the pipes between
    calls too, and a call costs two drains (one look at the pipes each, when silent): what
    was written before the call goes to the terminal only, what the call wrote to its log.
    """

    _instance: _FdTee | None = None
    _setup_lock = threading.Lock()

    def __init__(self) -> None:
        self._pipes = (os.pipe(), os.pipe())
        for read, write in self._pipes:
            os.set_inheritable(read, False)
            os.set_inheritable(write, False)
        self._terminal = (os.dup(1), os.dup(2))
        self._token = b"\0dagrun-drained-" + os.urandom(8).hex().encode() + b"\0"
        self._pending = [b"", b""]
        self._log: _LazyLog | None = None
        self._lock = threading.Lock()  # taken directly where nothing waits (per call)
        self._cond = threading.Condition(self._lock)
        self._seen = [0, 0]  # drain tokens the thread has passed, per pipe
        self._sent = 0
        self._busy = False  # the thread holds data it read and has not copied yet
        self._held = 0  # ``hold`` calls not released: 1 and 2 stay on the pipes meanwhile
        self._poller = select.poll()  # one look at both pipes: is anything left to copy?
        for read, _write in self._pipes:
            self._poller.register(read, select.POLLIN)
        threading.Thread(target=self._pump, name="dagrun-output", daemon=True).start()

    @classmethod
    def get(cls) -> _FdTee | None:
        """The process's tee, or ``None`` when ``sys.stdout``/``sys.stderr`` do not write
        to file descriptors 1 and 2 (the Python streams are teed then)."""
        try:
            if sys.stdout.fileno() != 1 or sys.stderr.fileno() != 2:
                return None
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation included
            return None
        instance = cls._instance  # set once, never unset: no lock needed to read it
        if instance is None:
            with cls._setup_lock:
                if cls._instance is None:
                    cls._instance = cls()
                instance = cls._instance
        return instance

    def capture(self, path: str, attempt: int, host: str) -> _TeeCall:
        return _TeeCall(self, path, attempt, host)

    def hold(self) -> None:
        """Keep 1 and 2 on the pipes between calls too, until as many ``release`` calls."""
        self._held += 1
        if self._held == 1:
            _flush_std()
            self._to_pipes()

    def release(self) -> None:
        """1 and 2 back where they pointed, once everything written reached the terminal."""
        if self._held == 0:
            return
        self._held -= 1
        if self._held == 0:
            _flush_std()
            self._to_terminal()
            self._drain()

    def _to_pipes(self) -> None:
        terminal = self._terminal
        dup2 = os.dup2
        dup2(1, terminal[0])  # where 1 and 2 point now is where output goes
        dup2(2, terminal[1])
        dup2(self._pipes[0][1], 1)
        dup2(self._pipes[1][1], 2)

    def _to_terminal(self) -> None:
        os.dup2(self._terminal[0], 1)
        os.dup2(self._terminal[1], 2)

    def begin(self, log: _LazyLog) -> None:
        """Output from now on goes to ``log`` (and the terminal)."""
        _flush_std()
        if self._held:
            self._drain()  # what was written before the call: the terminal's only
        else:
            self._to_pipes()
        self._log = log  # the thread reads it under the condition; one store is atomic

    def end(self, log: _LazyLog) -> None:
        """Output goes to the terminal only again, once all of it reached ``log``."""
        _flush_std()
        if not self._held:
            self._to_terminal()
        self._drain()
        with self._lock:  # the thread writes to the log it reads under the lock
            self._log = None
        log.close()

    def _drain(self) -> None:
        """Wait until the thread has copied everything written to the pipes so far."""
        if self._idle():
            return
        with self._cond:
            self._sent += 1
            want = self._sent
        for _read, write in self._pipes:
            atomic.write_all(write, self._token)
        with self._cond:
            self._cond.wait_for(lambda: min(self._seen) >= want, DRAIN_TIMEOUT)

    def _idle(self) -> bool:
        """Whether nothing written is left to copy, seen without waking the thread: both
        pipes empty (asked first: the thread sets ``_busy`` before it reads) and the
        thread holding nothing."""
        try:
            if self._poller.poll(0):
                return False
        except RuntimeError:  # another thread looks at the same moment: drain, to be sure
            return False
        return not self._busy and not any(self._pending)

    def _pump(self) -> None:
        poller = select.poll()
        index = {}
        for i, (read, _write) in enumerate(self._pipes):
            poller.register(read, select.POLLIN)
            index[read] = i
        while True:
            ready = poller.poll()
            self._busy = True
            for fd, _events in ready:
                self._forward(index[fd], os.read(fd, 1 << 16))
            self._busy = False

    def _forward(self, index: int, data: bytes) -> None:
        """Copy ``data`` of pipe ``index`` out, counting (and dropping) drain tokens."""
        buf, token = self._pending[index] + data, self._token
        at = buf.find(token)
        while at >= 0:
            self._emit(index, buf[:at])
            buf = buf[at + len(token):]
            with self._cond:
                self._seen[index] += 1
                self._cond.notify_all()
            at = buf.find(token)
        keep = _partial(buf, token)
        self._emit(index, buf[:len(buf) - keep])
        self._pending[index] = buf[len(buf) - keep:]

    def _emit(self, index: int, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if self._log is not None:
                with contextlib.suppress(OSError):  # a full disk: the terminal still shows it
                    self._log.write(data)
        with contextlib.suppress(OSError):  # a closed terminal or pipe
            atomic.write_all(self._terminal[index], data)


class _TeeCall(_LazyLog):
    """One stage call's output through the process's ``_FdTee``: the call's log, and the
    context that sends output to it (one object, not a generator: three a run)."""

    __slots__ = ("_tee",)

    def __init__(self, tee: _FdTee, path: str, attempt: int, host: str) -> None:
        super().__init__(path, attempt, host)
        self._tee = tee

    def __enter__(self) -> None:
        self._tee.begin(self)

    def __exit__(self, *exc: object) -> None:
        self._tee.end(self)


class _LogSpare:
    """An empty file of this process, linked in as each stage call's log (``_FdCall``).

    A log made at each call and removed when the call printed nothing makes and frees an
    inode per call, three a run. On ext4 after many files were deleted (by the sweep's own
    silent calls, or an ``rm -r`` of an earlier sweep) making an inode took 100-500 us of
    CPU where linking an existing one took 15; a worker of 0.05 s runs lost ~4 % of its
    time to it. So the log is the spare's file under the log's name while the call runs
    (output, a crash's traceback included, lands in the run's log as before), and a silent
    call leaves only its name removed: the file stays, empty, for the next call.

    A file reused must hold nothing of an earlier call, and must receive nothing of it
    later: a process the stage started may outlive the call holding the log open as its
    output (a server, a data loader's pool) and write into it whenever. So the call writes
    through its own open file, and after the call the spare is kept only when no such open
    file is left anywhere on this host: Linux grants a read lease (``F_SETLEASE``) only on
    a file nobody has open for writing. Where it does not (a holder is left), the spare's
    name is removed too and the holder writes into a file of no name, as it did when each
    call had its own log. Where leases cannot be taken at all (not Linux, NFS, leases
    disabled), or links cannot be made (a file system without hard links, the spares
    folder on another device), every call makes its own log as before.

    One per process and folder; a forked child makes its own (``_forget_spares``).
    """

    __slots__ = ("fd", "ino", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd  # ``fd``: read-only, it counts as no writer
        self.ino = os.fstat(fd).st_ino
        # the lease is held for one system call; should a writer open the file meanwhile,
        # the kernel tells the holder by a signal, SIGIO by default, which would end this
        # process: SIGURG instead, which is ignored unless a handler asks for it
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)

    def unheld(self) -> bool:
        """Whether no process has the file open for writing (a read lease is granted).
        ``False`` when the lease could not be given back either (closing the descriptor,
        which ``_retire`` does, ends it)."""
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError:
            return False
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        except OSError:
            return False
        return True

    def link(self, path: str) -> int:
        """The spare's file as the log ``path``: a descriptor open for appending to it, or
        ``-1`` when the call makes its own log (one is there: an earlier attempt's)."""
        try:
            os.link(self.path, path)
        except FileExistsError:
            return -1
        except OSError as exc:  # ENOENT: the spare's name, or the run's folder, is gone
            if exc.errno != errno.ENOENT or not os.fstat(self.fd).st_nlink:
                _retire(self, keep_folder=exc.errno == errno.ENOENT)
            return -1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError:
            return -1
        info = os.fstat(fd)
        if info.st_size or info.st_ino != self.ino:  # not the spare as it was left
            os.close(fd)
            _retire(self, keep_folder=True)
            return -1
        return fd


_SPARES: dict[str, _LogSpare | None] = {}  # folder -> this process's spare; None: none there
_FEATURES = hasattr(os, "link") and hasattr(fcntl, "F_SETLEASE")


def _spare_in(folder: str) -> _LogSpare | None:
    """This process's spare in ``folder`` (made at its first use), or ``None`` where none
    can serve: the folder is not there (no sweep's state folder: a run outside a sweep) or
    a new file there cannot be leased."""
    if folder in _SPARES:
        return _SPARES[folder]
    spare = None
    if _FEATURES:
        path = f"{folder}{os.sep}{LOG_SPARE}{os.getpid()}-{os.urandom(6).hex()}"
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL  # read-only: it counts as no writer
        try:
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError:  # made once, inside OUT/.dagrun only
                with contextlib.suppress(FileExistsError):  # another worker made it
                    os.mkdir(folder, 0o755)
                fd = os.open(path, flags, 0o644)
            spare = _LogSpare(path, fd)
        except OSError:
            pass
        if spare is not None and not spare.unheld():  # leases do not work here
            _retire(spare, keep_folder=False)
            spare = None
    _SPARES[folder] = spare
    return spare


def _retire(spare: _LogSpare, keep_folder: bool) -> None:
    """Stop using ``spare``: its descriptor closed, its name removed; ``keep_folder``: the
    next call in its folder makes a new one (else none is made there again)."""
    with contextlib.suppress(OSError):
        os.close(spare.fd)
    with contextlib.suppress(OSError):
        os.unlink(spare.path)
    folder = spare.path.rpartition(os.sep)[0]  # as ``_spare_in`` named it
    if not keep_folder:
        _SPARES[folder] = None
    elif _SPARES.get(folder) is spare:
        del _SPARES[folder]


def _forget_spares() -> None:
    """In a forked child: the parent's spares are the parent's (two processes writing
    through one spare would mix their logs)."""
    for spare in _SPARES.values():
        if spare is not None:
            with contextlib.suppress(OSError):
                os.close(spare.fd)
    _SPARES.clear()


os.register_at_fork(after_in_child=_forget_spares)


class _FdCall:
    """One stage call's output straight into its log: file descriptors 1 and 2 point at it
    (``faulthandler`` writes a crash's traceback to 2: the log, too). ``spares``: the folder
    of this process's ``_LogSpare`` (``None``: the log is made for the call)."""

    __slots__ = ("_attempt", "_fd", "_host", "_path", "_saved", "_spare", "_spares", "_start")

    def __init__(self, path: str, attempt: int, host: str, spares: str | None = None) -> None:
        self._path, self._attempt, self._host, self._spares = path, attempt, host, spares

    def __enter__(self) -> None:
        _flush_std()
        spare = _spare_in(self._spares) if self._spares is not None else None
        fd = -1 if spare is None else spare.link(self._path)
        if fd >= 0:
            self._spare, self._fd, size = spare, fd, 0
        else:
            self._spare = None
            self._fd = fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(fd).st_size
            if size:
                os.write(fd, _separator(self._attempt, self._host))
                size = os.lseek(fd, 0, os.SEEK_END)
        self._start = size
        # where 1 and 2 point now (per call: a process that hosts runs may move them
        # between two, a Ray worker or a test runner's capture)
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        faulthandler.enable(file=sys.stderr, all_threads=True)  # a stage may re-point it

    def __exit__(self, *exc: object) -> None:
        _flush_std()
        saved, fd = self._saved, self._fd
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        end = os.fstat(fd).st_size
        os.close(fd)
        spare = self._spare
        if end == 0:  # nothing written, now or by an earlier attempt
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            if spare is not None and not spare.unheld():  # a process the call started
                _retire(spare, keep_folder=True)  # has it open: it is not reused
        else:
            if spare is not None:  # the spare's file is the log now
                _retire(spare, keep_folder=True)
            if end > self._start:
                _cap_quietly(self._path)


_HANDLERS = operator.attrgetter("handlers")
_SETTINGS = operator.attrgetter("level", "propagate", "disabled")


def _getcwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working folder was removed
        return None


def _environ() -> dict[Any, Any]:
    """A copy of the environment, cheap enough to take per stage call: the undecoded
    mapping behind ``os.environ`` where there is one (CPython), else its decoded copy."""
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else os.environ.copy()


def _logging() -> Any:
    """The ``logging`` module, or ``None`` while this process has not imported it."""
    return sys.modules.get("logging")


def _registered() -> list[Any]:
    """What ``logging.getLogger`` has handed out so far: loggers and placeholders (a
    placeholder stands for a parent name not asked for yet), in their order of creation."""
    log = _logging()
    return [] if log is None else list(log.Logger.manager.loggerDict.values())


def _loggers(registered: list[Any]) -> list[logging.Logger]:
    """The root logger and the loggers among ``registered`` (placeholders left out)."""
    log = _logging()
    loggers: list[logging.Logger] = [log.getLogger()]
    loggers += filter(log.Logger.__instancecheck__, registered)
    return loggers


@record
class ProcessState:
    """The process-wide state a stage call may change and ``restore`` puts back.

    Taken before every stage call, so it is built with C-level copies only (a few µs;
    tens of µs with 300 loggers); ``restore`` compares the same way and works per item only
    for what changed. Loggers created during the call are found by comparing what the
    logging registry holds with ``registered`` (identity, in C); only when it differs is
    the registry walked in Python.
    """

    cwd: str | None
    environ: dict[Any, Any]
    path_object: list[str]  # ``sys.path`` itself, in case a stage rebinds it
    path: list[str]
    streams: tuple[Any, Any]  # ``sys.stdout`` and ``sys.stderr``
    loggers: list[logging.Logger] | None  # ``None``: ``logging`` was not imported
    handlers: list[tuple[logging.Handler, ...]]  # per logger
    settings: list[tuple[int, bool, bool]]  # per logger: level, propagate, disabled
    disable: int  # ``logging.disable``'s level
    registered: list[Any]  # ``_registered()``: loggers and placeholders, to spot new ones
    # after ``restore`` the state is this one again (so the next call of the same run may
    # use it, not take another): false once it could not be made so (the working folder
    # is gone) or a logger was created (the next call's snapshot includes it)
    reusable: bool = True

    @classmethod
    def now(cls) -> ProcessState:
        log = _logging()
        if log is None:
            return cls(_getcwd(), _environ(), sys.path, list(sys.path),
                       (sys.stdout, sys.stderr), None, [], [], 0, [])
        registered = _registered()
        loggers = _loggers(registered)
        return cls(_getcwd(), _environ(), sys.path, list(sys.path), (sys.stdout, sys.stderr),
                   loggers, list(map(tuple, map(_HANDLERS, loggers))),
                   list(map(_SETTINGS, loggers)), log.Logger.manager.disable,
                   registered)

    def current(self) -> bool:
        """Whether this is still the process's state, as far as a look at the logging
        registry tells (the rest is what ``restore`` put back; between two calls of a run
        only dagrun runs, which may import a library whose logger then appears)."""
        return self.reusable and _registered() == self.registered

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        """Put back what changed since ``now`` (only that: most calls change nothing)."""
        if self.cwd is None:
            self.reusable = False
        elif _getcwd() != self.cwd:
            try:
                os.chdir(self.cwd)
            except OSError:  # the folder is gone: nothing to go back to
                self.reusable = False
        data = getattr(os.environ, "_data", None)  # compared in place: no copy
        if (data if isinstance(data, dict) else os.environ.copy()) != self.environ:
            _restore_environ(self.environ)
        if sys.path is not self.path_object:
            sys.path = self.path_object
        if sys.path != self.path:
            sys.path[:] = self.path
        if sys.stdout is not self.streams[0] or sys.stderr is not self.streams[1]:
            sys.stdout, sys.stderr = self.streams
        log = _logging()
        if log is None:
            return
        loggers = self.loggers
        if loggers is None:  # imported during the call: the state before is how it starts
            loggers = self.loggers = [log.getLogger()]
            self.handlers, self.settings = [()], [(log.WARNING, True, False)]
            self.disable = log.NOTSET
        if (list(map(tuple, map(_HANDLERS, loggers))) != self.handlers
                or list(map(_SETTINGS, loggers)) != self.settings):
            self._restore_loggers()
        if log.Logger.manager.disable != self.disable:
            log.disable(self.disable)
        if _registered() != self.registered:  # a logger was created (rarely: after run 0)
            self.reusable = False
            self._drop_new_handlers()

    def _drop_new_handlers(self) -> None:
        """Remove the handlers of the loggers created during the call (a placeholder that
        became a logger included); close those no other logger uses."""
        known = set(map(id, self.loggers or ()))
        dropped: list[logging.Handler] = []
        for logger in _loggers(_registered()):
            if logger.handlers and id(logger) not in known:
                dropped += logger.handlers
                logger.handlers.clear()
        if dropped:
            _close_unused(dropped)

    def _restore_loggers(self) -> None:
        dropped: list[logging.Handler] = []
        for logger, handlers, (level, propagate, disabled) in zip(
                self.loggers or (), self.handlers, self.settings, strict=True):
            if tuple(logger.handlers) != handlers:
                dropped += [h for h in logger.handlers if h not in handlers]
                logger.handlers[:] = handlers
            if logger.level != level:
                logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled
        if dropped:
            _close_unused(dropped)


def _restore_environ(saved: dict[Any, Any]) -> None:
    """Make the environment ``saved`` (as ``_environ`` took it) again, through
    ``os.environ`` so that processes a later stage starts see it too."""
    environ: Any = os.environ
    if isinstance(getattr(environ, "_data", None), dict):  # undecoded: decode it
        saved = {environ.decodekey(k): environ.decodevalue(v) for k, v in saved.items()}
    current = os.environ.copy()
    for key in current.keys() - saved.keys():
        del os.environ[key]
    for key, value in saved.items():
        if current.get(key) != value:
            os.environ[key] = value


def _close_unused(handlers: list[logging.Handler]) -> None:
    """Close handlers a stage added (a ``FileHandler`` holds a file open) unless a logger
    created meanwhile still uses them."""
    log = _logging()
    loggers = [log.getLogger(), *log.Logger.manager.loggerDict.values()]
    used = {id(h) for lg in loggers if isinstance(lg, log.Logger) for h in lg.handlers}
    for handler in handlers:
        if id(handler) not in used:
            with contextlib.suppress(Exception):  # the user's handler: its close may fail
                handler.close()


def isolated() -> ProcessState:
    """Context manager that puts back the working folder, environment, ``sys.path`` and
    logging configuration that the code inside changed (see the module's docstring)."""
    return ProcessState.now()


@contextlib.contextmanager
def held_output() -> Iterator[None]:
    """Keep this process's descriptors 1 and 2 on the tee's pipes for the whole block (a
    sweep of ``single``, whose stage calls then do not move them twice each); nothing
    where the Python streams are not 1 and 2 (they are teed per call then)."""
    tee = _FdTee.get()
    if tee is None:
        yield
        return
    tee.hold()
    try:
        yield
    finally:
        tee.release()


def capture(mode: CaptureMode, path: str, attempt: int, host: str,
            spares: str | None = None) -> contextlib.AbstractContextManager[None]:
    """Context manager that sends what the code inside prints to ``path``; ``spares``:
    the sweep's spares folder, where a worker keeps the file it reuses as its logs."""
    if mode is CaptureMode.FD:
        return _FdCall(path, attempt, host, spares)
    tee = _FdTee.get()
    return tee.capture(path, attempt, host) if tee is not None else _tee(path, attempt, host)


LOG_CAP = 10 * 1024 * 1024  # bytes a stage log keeps: its head and its tail, cut between
_CUT = b"----- dagrun: "
_CUT_WORDS = b" bytes cut from the middle of this log (kept: its head and its tail) -----\n"


def _cap_quietly(path: str) -> None:
    """The log cut down to ``LOG_CAP`` bytes after a stage call wrote to it (a run retried
    many times, or printing without end, must not fill the disk); a failure to cut is
    ignored. A call that wrote nothing leaves the log as it was: nothing to check."""
    with contextlib.suppress(OSError):
        cap_log(path, LOG_CAP)  # read now: a test or a workflow may lower it


def cap_log(path: str, limit: int = LOG_CAP) -> bool:
    """Cut ``path`` to about ``limit`` bytes when it is larger: keep its first and last
    ``limit // 2`` bytes (at line breaks) around one line saying how many bytes were cut,
    earlier cuts included (their line is found again and replaced). Written aside and
    renamed. Returns whether it cut."""
    size = os.stat(path).st_size
    if size <= limit:
        return False
    half = limit // 2
    with open(path, "rb") as f:
        chunk = f.read(half + 2 * len(_CUT_WORDS))
        f.seek(size - half)
        tail = f.read()
    tail = tail[tail.find(b"\n") + 1:]
    at = chunk.find(_CUT)
    line_end = chunk.find(b"\n", at) + 1 if at >= 0 else 0
    if at >= 0 and line_end and chunk[:line_end].endswith(_CUT_WORDS):  # cut before
        number = chunk[at + len(_CUT):].split(b" ", 1)[0]
        head, earlier = chunk[:at], int(number) if number.isdigit() else 0
        cut = earlier + size - len(tail) - line_end
    else:
        head = chunk[:half]
        head = head[:head.rfind(b"\n") + 1]
        cut = size - len(tail) - len(head)
    atomic.write_bytes(path, head + _CUT + str(cut).encode() + _CUT_WORDS + tail)
    return True


def tail(path: str, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``lines`` lines of a log (empty when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
