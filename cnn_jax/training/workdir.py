"""A workdir's guards: one run at a time, the config it was started with, files written whole.

    with workdir.lock(path):                      # refuses a second run on `path`
        workdir.check_config(config, path)        # refuses a resume with another recipe
        workdir.write_atomically(path / "summary.json", text)
"""

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from cnn_jax.data import catalog, imagenet_ops
from cnn_jax.errors import ConfigError, WorkdirError

log = logging.getLogger(__name__)

CONFIG = "config.json"
LOCK = "run.lock"

# Fields a run may change on resume with `allow_change`; every other field defines the run
# (net, data set, source and split, batch, optimizer, schedule, augmentation, seed, ...).
SAFE_TO_CHANGE = (
    "name", "train.steps", "train.log_every_steps", "train.diagnostics_every_steps",
    "eval", "checkpoint", "dataset.data_dir", "dataset.manual_dir", "dataset.download",
)

# Fields the recipes gained after runs were started, as config.json holds them: absent from
# an older config.json, a field reads as this value (the one that changes nothing), so such a
# run resumes under a config that sets it.
LATER_FIELDS = {
    "train.ema_decay": 0.0,
    "init.workdir": "", "init.step": -1, "init.include": [], "init.exclude": [], "init.rename": [],
    "dataset.classes": [], "dataset.train_examples": 0,
}
# Streamed (ImageNet-scale) runs: fields whose defaults the pipeline once filled in itself.
LATER_STREAMED_FIELDS = {
    "dataset.tfds_name": "", "dataset.shuffle_buffer": 10_000, "augment.resize": 256,
    "augment.aspect_range": [3 / 4, 4 / 3], "augment.normalize": "standardize",
    "augment.mean_rgb": list(imagenet_ops.MEAN_RGB),
    "augment.stddev_rgb": list(imagenet_ops.STDDEV_RGB),
}


def with_later_fields(tree: dict[str, Any]) -> dict[str, Any]:
    """A config.json's contents with the fields it predates added, at the values in effect
    when it was written."""
    flat = _flatten(tree)
    later = LATER_FIELDS
    if catalog.is_streaming(flat.get("dataset.name", "")):
        later = later | LATER_STREAMED_FIELDS
    for field, value in later.items():
        if field not in flat:
            *sections, name = field.split(".")
            node = tree
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = value
    return tree


def defines_the_run(field: str) -> bool:
    """Whether a change of `field` (e.g. "optimizer.lr") makes another run."""
    return not any(field == safe or field.startswith(safe + ".") for safe in SAFE_TO_CHANGE)


def check_config(
    config: ml_collections.ConfigDict, workdir: epath.PathLike, allow_change: bool = False
) -> None:
    """Refuses to resume `workdir` with a config that differs from its config.json in a field
    that defines the run, or, without `allow_change`, in any field. A workdir without
    checkpoints holds nothing to resume and accepts any config."""
    workdir = epath.Path(workdir)
    path = workdir / CONFIG
    if not path.exists() or not any(p.name.isdigit() for p in _children(workdir / "checkpoints")):
        return
    old, new = (
        _flatten(with_later_fields(json.loads(path.read_text()))),
        _flatten(with_later_fields(json.loads(config.to_json_best_effort()))),
    )
    differing = [
        k
        for k in sorted(old.keys() | new.keys())
        if old.get(k, "(absent)") != new.get(k, "(absent)")
    ]
    defining = [k for k in differing if defines_the_run(k)]
    field = (defining or differing or [None])[0]
    if field is None or (allow_change and not defining):
        return
    values = f"{field}={old.get(field, '(absent)')!r} there, {new.get(field, '(absent)')!r} now"
    if defining:
        raise ConfigError(
            f"{workdir} holds a run with another {field} ({values}); "
            "use a new --workdir for a new run, or the same config to resume this one."
        )
    raise ConfigError(
        f"{workdir} holds a run with another {field} ({values}); pass --allow_config_change to "
        "resume it with the new value, or use a new --workdir."
    )


def write_atomically(path: epath.PathLike, text: str) -> None:
    """Writes `text` to a temporary file, then renames it over `path`: a crash leaves the old
    file or the new one, never half of one."""
    path = epath.Path(path)
    temporary = path.parent / f".{path.name}.tmp-{os.getpid()}"
    temporary.write_text(text)
    temporary.replace(path)  # atomic on POSIX file systems


@contextlib.contextmanager
def lock(workdir: epath.PathLike) -> Iterator[None]:
    """Holds `workdir/run.lock` (process 0's host and pid) while the block runs.

    A second run on the workdir is refused with one sentence naming the first. The lock is
    an flock on the file, which the kernel drops when its process dies, so the lock file
    that kill -9 leaves behind is taken over (with one line of notice). Multi-process runs
    take it from process 0 only. Object stores (gs://) cannot lock; their workdirs are not
    guarded. A workdir that did not exist and is still empty at the end is removed, so a
    failed start leaves nothing behind.
    """
    workdir = epath.Path(workdir)
    held, error = None, None
    if jax.process_index() == 0 and "://" not in str(workdir):
        try:
            held = _acquire(workdir)
        except WorkdirError as e:
            error = e
    if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(
        np.int32(error is None)
    ):
        error = error or WorkdirError(f"Process 0 could not lock {workdir}; its error says why.")
    if error:
        raise error
    try:
        yield
    finally:
        if held:
            _release(workdir, *held)


def _acquire(workdir: epath.Path) -> tuple[int, bool]:
    """Locks `workdir`; returns the lock file's descriptor and whether the workdir is new."""
    created = not workdir.exists()
    path = workdir / LOCK
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flocked = True
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EACCES):  # held by a live process
                    _refuse(workdir, _owner(fd), fd)
                flocked = False  # a file system without flock: the recorded pid decides
            if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
                break  # else the previous owner removed the file between our open and flock
            os.close(fd)
    except OSError as e:
        raise WorkdirError(
            f"Cannot write the run's files in {workdir} ({e.strerror or e}); "
            "use a writable folder as --workdir."
        ) from None
    owner = _owner(fd)
    if owner:
        same_host = owner.get("host") == socket.gethostname()
        if not (same_host and (flocked or not _alive(owner.get("pid")))):
            _refuse(workdir, owner, fd)
        log.info(
            "Took over %s from process %s, which ended without releasing it.",
            path,
            owner.get("pid"),
        )
    record = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd, created


def _refuse(workdir: epath.Path, owner: dict[str, Any], fd: int) -> None:
    os.close(fd)
    raise WorkdirError(
        f"{workdir} is in use by the run of process {owner.get('pid', '?')} on "
        f"{owner.get('host', '?')} (started {owner.get('started', '?')}); one run per workdir: "
        f"wait for it to end, or use another --workdir (if it has ended, delete {workdir / LOCK})."
    )


def _release(workdir: epath.Path, fd: int, created: bool) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(workdir / LOCK)
    os.close(fd)
    if created and not any(_children(workdir)):
        workdir.rmdir()


def _alive(pid: int | None) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # another user's process
    return True


def _owner(fd: int) -> dict[str, Any]:
    """The host, pid and start time recorded in a lock file ({} if none)."""
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _children(directory: epath.Path) -> list[epath.Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat
