"""The workdir of a run: checked before anything is written, locked against a second run at the same time,
and with the outputs of an earlier, different run moved aside whole to DIR/previous/<time>/.

    DIR/.lock          pid, host and start of the run that holds DIR (an flock'ed file: the lock ends with
                       its process, however it ends; a lock file naming a dead process is taken over)
    DIR/previous/T/    the outputs of an earlier run whose inputs or settings differ from this one's
    DIR/error.log      the traceback of an unexpected internal error
"""

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import tempfile

from alignment_jax import atomic
from alignment_jax.errors import InputError

LOCK = ".lock"
PREVIOUS = "previous"
ERROR_LOG = "error.log"
FOLDERS = ("features", "world", "plots", "transform_checkpoint", PREVIOUS)  # must be folders when present
FILES = ("results.json", "transform.npz", "report.md", ERROR_LOG, LOCK)  # must be files when present

try:
    import fcntl
except ImportError:  # not on POSIX: the lock file alone (its pid) tells a running process from a dead one
    fcntl = None


@contextlib.contextmanager
def removed_if_left_empty(workdir: str):
    """Removes the folder `workdir` again when the block fails and leaves it empty, if the block made it (a
    run that fails before writing anything leaves no empty workdir behind)."""
    made = not os.path.exists(workdir)
    try:
        yield
    except BaseException:
        if made and os.path.isdir(workdir) and not os.listdir(workdir):
            with contextlib.suppress(OSError):
                os.rmdir(workdir)
        raise


def prepare(workdir: str) -> str:
    """Makes sure `workdir` is (or can be made) a writable folder whose known entries have the right kind;
    creates it. Returns its absolute path. Raises InputError naming the problem and the fix."""
    flag = f"--workdir={workdir}"
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{flag}: is a file, not a folder; choose another --workdir")
    blocker = _file_above(path)
    if blocker:
        raise InputError(f"{flag}: {blocker} is a file, so no folder can be made under it; choose another --workdir")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise InputError(f"{flag}: cannot create the folder ({e.strerror}); choose another --workdir") from e
    try:
        with tempfile.TemporaryFile(dir=path):  # a name of its own: other processes of the run may test too
            pass
    except OSError as e:
        raise InputError(f"{flag}: cannot write there ({e.strerror}); choose a writable --workdir") from e
    for name in FOLDERS:
        if os.path.exists(os.path.join(path, name)) and not os.path.isdir(os.path.join(path, name)):
            raise InputError(f"{os.path.join(path, name)}: is a file where the run keeps a folder; move it away")
    for name in FILES:
        if os.path.isdir(os.path.join(path, name)):
            raise InputError(f"{os.path.join(path, name)}: is a folder where the run writes a file; move it away")
    return path


def _file_above(path: str) -> str:
    """The first existing ancestor of `path` if it is a file (not a folder), else ""."""
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        if parent == os.path.dirname(parent):
            return ""
        parent = os.path.dirname(parent)
    return parent if parent and not os.path.isdir(parent) else ""


class Lock:
    """Holds DIR/.lock while a run writes in DIR; a second run gets InputError naming the first.

    The file records pid, host, the process start time and the command. On POSIX it is also flock'ed, so
    the lock ends with its process however that process ends (SIGKILL included); a lock file left behind
    is taken over when no process holds it. A lock file that is not flock'ed but names a live process on
    this host (same start time when recorded) still counts as held.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK)
        self.workdir = workdir
        self._fd: int | None = None

    def __enter__(self) -> "Lock":
        for _ in range(10):  # the holder may release between our open and flock: try again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    holder = _read_holder(fd)
                    os.close(fd)
                    if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise InputError(self._message(holder)) from None
                    raise
                if not _same_file(fd, self.path):  # released and removed meanwhile: lock the new file
                    os.close(fd)
                    continue
            holder = _read_holder(fd)
            if holder and _alive_elsewhere(holder):
                os.close(fd)
                raise InputError(self._message(holder))
            record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "command": _command()}
            record["start_ticks"] = _start_ticks(os.getpid())
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            self._fd = fd
            return self
        raise InputError(f"{self.path}: could not take the lock (other runs keep starting); try again")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def _message(self, holder: dict) -> str:
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        command = " ".join(str(c) for c in holder.get("command", []))
        since = f", started {holder['started']}" if holder.get("started") else ""
        what = f" ({command[:120]}{since})" if command else since
        return (
            f"--workdir={self.workdir}: another run is writing there: {who}{what}; wait for it to finish or choose "
            f"another --workdir (if that process is gone, delete {self.path})"
        )


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 65536, 0).decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _alive_elsewhere(holder: dict) -> bool:
    """Whether the lock file names another live process on this host (its pid running, with the recorded
    start time when there is one): such a lock holds even without an flock."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # running, as another user
    ticks = holder.get("start_ticks")
    return ticks is None or ticks == _start_ticks(pid)


def _start_ticks(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def move_aside(workdir: str, names: list[str], reason: str) -> str:
    """Moves the entries `names` of `workdir` (those present) to DIR/previous/<time>/ with a note of why;
    returns that folder ("" when none was present)."""
    present = [n for n in names if os.path.lexists(os.path.join(workdir, n))]
    if not present:
        return ""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = os.path.join(workdir, PREVIOUS, stamp)
    suffix = 1
    while os.path.exists(folder):
        suffix += 1
        folder = os.path.join(workdir, PREVIOUS, f"{stamp}-{suffix}")
    os.makedirs(folder)
    for name in present:
        os.replace(os.path.join(workdir, name), os.path.join(folder, name))
    atomic.write_text(os.path.join(folder, "moved.txt"), f"moved here {_now()}: {reason}\n")
    return folder


def write_error_log(workdir: str, text: str) -> str:
    """Writes `text` (a traceback) to DIR/error.log, or to a file in the temp folder when DIR is not writable;
    returns the path written."""
    for folder in ([workdir] if workdir else []) + [None]:
        try:
            if folder is None:
                fd, path = tempfile.mkstemp(prefix="alignment_jax-error-", suffix=".log")
                os.close(fd)
            else:
                path = os.path.join(os.path.abspath(folder), ERROR_LOG)
            atomic.write_text(path, text)
            return path
        except OSError:
            continue
    return ""


def _command() -> list[str]:
    """This process's command line, its program as a short name (`probe.py --config=...`)."""
    return [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
