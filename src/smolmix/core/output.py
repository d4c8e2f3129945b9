"""Output safety, in one place: where a command may write, and how.

- A command writes into ``<out>.partial/`` and renames it to ``<out>`` at the end; an
  interrupted run never leaves a folder that looks complete.
- ``<out>.partial`` is claimed with an OS-level lock (``flock`` on the folder) held for the
  whole run: a second run on the same ``--out`` is refused, naming the holder's PID; a partial
  folder whose holder died (kill -9) is taken over and emptied.
- An existing ``<out>`` is replaced only when the command may replace it and it is a smolmix
  folder of the command's own kind; ``--out`` equal to an input, or holding one, is refused.
- An unwritable destination (under a file, read-only, no permission, a name too long) is an
  error before any work starts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from smolmix.core.errors import SmolmixError
from smolmix.core.rundir import read_manifest

PARTIAL_SUFFIX = ".partial"
PID_FILE = ".smolmix-pid"
REPLACE_RETRIES = 5


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: into a temporary file beside it, then
    renamed over it (a kill leaves the old file or the new one, never half of one)."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def partial_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + PARTIAL_SUFFIX)


def check_destination(out: Path, flag: str = "--out") -> None:
    """``out`` (and its ``.partial`` sibling) can be created: a name the filesystem takes, and
    a nearest existing ancestor that is a folder this process may write in."""
    out = Path(out)
    if not out.name or out.name in (".", ".."):
        raise SmolmixError(f"{str(out)!r} names no folder to create", flag)
    ancestor = _nearest_existing(out.parent)
    limit = _name_max(ancestor)
    missing = Path(os.path.abspath(out.parent)).relative_to(ancestor).parts
    for part in missing:
        if len(os.fsencode(part)) > limit:
            raise SmolmixError(f"folder name too long ({len(os.fsencode(part))} bytes; at "
                               f"most {limit} here)", flag)
    if len(os.fsencode(out.name + PARTIAL_SUFFIX)) > limit:
        raise SmolmixError(f"output name too long ({len(os.fsencode(out.name))} bytes; at most "
                           f"{limit - len(PARTIAL_SUFFIX)} here)", flag)
    if not ancestor.is_dir():
        raise SmolmixError(f"cannot create {str(out)!r}: {str(ancestor)!r} is a file, "
                           "not a folder", flag)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "read-only filesystem" if _read_only(ancestor) else "permission denied"
        raise SmolmixError(f"cannot write in {str(ancestor)!r} ({reason})", flag)


def _nearest_existing(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder if folder.is_dir() else folder.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def check_not_input(out: Path, inputs: Sequence[Path | str], flag: str = "--out") -> None:
    """``out`` must not be an input or hold one (an input inside ``out`` would be replaced
    or mixed with the output); a new folder inside an input folder is allowed (``diagnose RUN
    --out RUN/diagnosis``: the input's own files are never touched)."""
    target = Path(os.path.realpath(out))
    for item in inputs:
        if item is None or not os.path.exists(item):
            continue
        source = Path(os.path.realpath(item))
        if target == source or _inside(source, target):
            what = "is" if target == source else "holds"
            raise SmolmixError(f"{str(out)!r} {what} an input of this command, "
                               f"{str(item)!r}", flag)


def check_output_dir(out: Path, flag: str = "--out", replace: bool = False,
                     kind: str | None = None, inputs: Sequence[Path | str] = ()) -> None:
    """Refuse an ``out`` this command may not create or replace (see the module's rules)."""
    out = Path(out)
    check_not_input(out, inputs, flag)
    if os.path.lexists(out):  # (never raises: a name too long is checked below)
        if not replace:
            raise SmolmixError(f"output path {str(out)!r} already exists", flag)
        # A run replacing ``out`` moves it aside for an instant, then puts a whole new one in
        # its place: a read that missed it is tried again (a plain folder stays unreadable).
        for _ in range(REPLACE_RETRIES):
            found = _kind_of(out)
            if found is not None or not os.path.lexists(out):
                break
        if found is None and os.path.lexists(out):
            raise SmolmixError(f"output path {str(out)!r} exists and is not a smolmix run",
                               flag)
        if found is not None and kind is not None and found != kind:
            raise SmolmixError(f"output path {str(out)!r} is a {found} folder; only a {kind} "
                               "folder may be replaced here", flag)
    check_destination(out, flag)


def _kind_of(folder: Path) -> str | None:
    """The kind in a smolmix folder's manifest; None for anything else."""
    if not folder.is_dir() or folder.is_symlink():
        return None
    try:
        return read_manifest(folder).kind
    except SmolmixError:
        return None


class PartialClaim:
    """``<out>.partial``, created or taken over under an exclusive lock held until
    :meth:`release`; see :func:`claim_partial`."""

    def __init__(self, partial: Path, fd: int, fresh: bool, created: list[Path],
                 rules: dict) -> None:
        self.path, self.fd, self.fresh, self.created = partial, fd, fresh, created
        self.rules = rules  # check_output_dir's flag, replace and kind for this output

    def check(self, out: Path) -> None:
        """Refuse ``out`` if it exists now and may not be replaced (under the lock, no other
        smolmix run can change it until we are done)."""
        if os.path.lexists(out):
            check_output_dir(out, **self.rules)

    def clear(self) -> None:
        """Empty the folder (a dead run's leftovers), keeping the lock."""
        for child in self.path.iterdir():
            if child.name == PID_FILE:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def discard(self) -> None:
        """Remove the folder (if it is still ours) and any parent folders made for it; release
        the lock."""
        if self.fd >= 0 and _same_folder(self.fd, self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        self.release()
        _remove_empty(self.created)

    def finish(self, out: Path) -> None:
        """Rename the folder to ``out`` (replacing it if the rules allow), then release.

        A replaced ``out`` is first moved into a fresh hidden folder beside it (never a name a
        user may own, such as ``<out>.old``) and deleted once the new one is in place."""
        out = Path(out)
        self.check(out)
        with contextlib.suppress(FileNotFoundError):
            (self.path / PID_FILE).unlink()
        if os.path.lexists(out):
            trash = Path(tempfile.mkdtemp(prefix=".smolmix-old-", dir=out.parent))
            # Ctrl-C or SIGTERM between the two renames would leave neither folder at <out>:
            # they wait until both are done.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                os.rename(out, trash / out.name)
                os.rename(self.path, out)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.path, out)
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


HOLDER_WAIT_S = 2.0  # how long a refused claim waits for a holder that is starting or finishing


def claim_partial(out: Path, flag: str = "--out", replace: bool = False,
                  kind: str | None = None, inputs: Sequence[Path | str] = ()) -> PartialClaim:
    """Create ``<out>.partial`` (and missing parents), or take over one left by a dead run, and
    lock it; a live holder makes this a one-line error naming its PID. ``out`` is checked
    (see :func:`check_output_dir`) before anything is created and again under the lock."""
    out = Path(out)
    check_output_dir(out, flag, replace, kind, inputs)
    partial = partial_path(out)
    created = _make_parents(partial.parent, flag)
    try:
        fd, fresh = _lock_partial(partial, out, flag, created)
    except BaseException:
        _remove_empty(created)
        raise
    claim = PartialClaim(partial, fd, fresh, created,
                         {"flag": flag, "replace": replace, "kind": kind})
    try:
        (partial / PID_FILE).write_text(f"{os.getpid()}\n")
        claim.check(out)  # a run that held the lock while we looked may have finished it
    except BaseException as exc:
        if fresh:
            claim.discard()
        else:
            claim.release()
        if isinstance(exc, OSError):
            raise SmolmixError(f"cannot write in {str(partial)!r} ({exc.strerror})",
                               flag) from None
        raise
    return claim


def _lock_partial(partial: Path, out: Path, flag: str, created: list[Path]) -> tuple[int, bool]:
    """An open, flock-ed descriptor of the folder now at ``partial``, and whether we made it."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            os.mkdir(partial)
            fresh = True
        except FileExistsError:
            fresh = False
        except FileNotFoundError:  # a failing run removed the parent folders it had made
            if time.monotonic() > deadline:
                raise SmolmixError(f"cannot create {str(partial)!r} (its folder keeps "
                                   "disappearing)", flag) from None
            created += _make_parents(partial.parent, flag)
            continue
        except OSError as exc:
            raise SmolmixError(f"cannot create {str(partial)!r} ({exc.strerror})",
                               flag) from None
        try:
            fd = os.open(partial, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue  # its holder renamed or removed it meanwhile: try again
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            raise SmolmixError(f"{str(partial)!r} exists and is not a folder", flag) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder, alive = _holder(partial)
            if alive or time.monotonic() > deadline:
                raise SmolmixError(f"another smolmix run (pid {holder or 'unknown'}) is "
                                   f"writing {str(out)!r}", flag) from None
            time.sleep(0.02)  # its holder is starting or finishing (no live PID yet or now)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _same_folder(fd, partial):
            return fd, fresh
        os.close(fd)  # renamed or replaced before we locked it: try again


def _same_folder(fd: int, path: Path) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _holder(partial: Path) -> tuple[str | None, bool]:
    """The PID recorded in a partial folder, and whether that process is alive."""
    try:
        pid = int((partial / PID_FILE).read_text())
    except (OSError, ValueError):
        return None, False
    if pid <= 0:
        return None, False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return str(pid), False
    except PermissionError:
        pass
    return str(pid), True


def _make_parents(folder: Path, flag: str) -> list[Path]:
    """Make ``folder`` and its missing parents; return the ones this call made. A parent that
    a failing run removes meanwhile (see :meth:`PartialClaim.discard`) is made again."""
    folder = Path(os.path.abspath(folder))
    created: list[Path] = []
    for _ in range(100):
        missing = []
        path = folder
        while not os.path.lexists(path):
            missing.append(path)
            path = path.parent
        try:
            for path in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path)
                    created.append(path)
            return created
        except FileNotFoundError:
            continue
        except OSError as exc:
            _remove_empty(created)
            raise SmolmixError(f"cannot create {str(path)!r} ({exc.strerror})", flag) from None
    _remove_empty(created)
    raise SmolmixError(f"cannot create {str(folder)!r} (its parent folders keep disappearing)",
                       flag)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders we made, deepest first, where nothing else has been put in them."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextmanager
def atomic_output(out: Path, flag: str = "--out", replace: bool = False,
                  kind: str | None = None, inputs: Sequence[Path | str] = ()
                  ) -> Iterator[Path]:
    """Yield a fresh, locked ``<out>.partial`` folder; on success it becomes ``out``.

    On any exception (Ctrl-C included) the partial folder, and the parents made for it, are
    removed and ``out`` is left as it was.
    """
    out = Path(out)
    claim = claim_partial(out, flag, replace, kind, inputs)
    try:
        if not claim.fresh:
            claim.clear()
        yield claim.path
        claim.finish(out)
    except BaseException:
        claim.discard()
        raise
