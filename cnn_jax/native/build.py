"""Compiling the oneDNN handlers (`onednn_conv.cc`) once per environment, and loading them safely.

The library is built with the C++ compiler against the oneDNN installed beside Python (the
`onednn-cpu-gomp` and `onednn-devel-cpu-gomp` packages that the `cpu` extra installs) or, where
that is missing, the system's (`apt-get install libdnnl-dev`). It lives in
`$XDG_CACHE_HOME/cnn_jax/native` (default `~/.cache/cnn_jax/native`) as
`onednn_conv-<environment>-<build>.so`: the environment is the Python installation (each virtual
environment has its own), the build is the source, jaxlib, oneDNN and the compiler command.
A build replaces only its own environment's older libraries, so several environments share the
cache without rebuilding each other out of it.

A shared library is code: it is loaded only from a directory that the current user owns and
nobody else can write to, and only if the file itself is the user's and not writable by others.
Where the cache fails that test, the library is built in a private temporary directory instead.
"""

import ctypes
import hashlib
import logging
import os
import pathlib
import shlex
import stat
import subprocess
import sys
import tempfile

import jax
import jaxlib

log = logging.getLogger(__name__)

SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
COMPILER_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC")
HEADER = pathlib.Path("oneapi/dnnl/dnnl.hpp")


class BuildError(Exception):
    """The handlers could not be compiled or loaded."""


def compiler() -> list[str]:
    """The C++ compiler command: $CXX (which may carry words, e.g. `ccache g++`) or c++."""
    return shlex.split(os.environ.get("CXX") or "c++")


def onednn_prefix() -> pathlib.Path | None:
    """The Python installation's own oneDNN (headers and library under include/ and lib/), or
    None where only the system's may be present."""
    prefix = pathlib.Path(sys.prefix)
    found = (prefix / "include" / HEADER).is_file() and any((prefix / "lib").glob("libdnnl.so*"))
    return prefix if found else None


def compile_command(output: pathlib.Path) -> list[str]:
    """The command that builds the handlers into `output`."""
    command = [*compiler(), *COMPILER_FLAGS, f"-I{jax.ffi.include_dir()}"]
    prefix = onednn_prefix()
    if prefix is not None:
        lib = prefix / "lib"
        command += [f"-I{prefix / 'include'}", f"-L{lib}", f"-Wl,-rpath,{lib}"]
    return [*command, str(SOURCE), "-o", str(output), "-ldnnl"]


def environment_key() -> str:
    """Names the Python installation, so that each virtual environment keeps its own library."""
    return hashlib.sha256(os.path.realpath(sys.prefix).encode()).hexdigest()[:8]


def build_key() -> str:
    """Changes with anything that changes the compiled library."""
    prefix = onednn_prefix()
    header = (prefix / "include" if prefix else pathlib.Path("/usr/include")) / "oneapi/dnnl"
    version = header / "dnnl_version.h"
    parts = [
        SOURCE.read_text(), jaxlib.__version__, *compile_command(pathlib.Path("out")),
        version.read_text() if version.is_file() else "",
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def cache_directory() -> pathlib.Path:
    cache = os.environ.get("XDG_CACHE_HOME", "")
    cache = pathlib.Path(cache if os.path.isabs(cache) else "~/.cache").expanduser()
    return cache / "cnn_jax" / "native"


def library_path() -> pathlib.Path:
    """Where this environment's current build lives (or would)."""
    return cache_directory() / f"onednn_conv-{environment_key()}-{build_key()}.so"


def private(path: pathlib.Path) -> bool:
    """Whether `path` is the current user's, no symbolic link, and writable by nobody else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return (
        not stat.S_ISLNK(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def build(target: pathlib.Path) -> None:
    """Compiles the handlers into `target` (atomically: concurrent builds are safe), and removes
    this environment's libraries of other builds beside it."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        output = pathlib.Path(scratch) / target.name
        command = compile_command(output)
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as e:
            raise BuildError(f"no C++ compiler ({e.strerror}: {command[0]})") from e
        if result.returncode:
            raise BuildError(first_error(result.stderr))
        os.chmod(output, 0o700)
        os.replace(output, target)
    for old in target.parent.glob(f"onednn_conv-{environment_key()}-*.so"):
        if old != target:
            old.unlink(missing_ok=True)  # a process still using it keeps its mapping


def first_error(stderr: str) -> str:
    """The line of a compiler's output that says what is missing."""
    lines = stderr.strip().splitlines()
    for marks in (("fatal error", "cannot find", "No such file"), ("error",)):
        found = [line for line in lines if any(mark in line for mark in marks)]
        if found:
            return found[0].strip()
    return lines[-1].strip() if lines else "the compiler failed without a message"


def load(path: pathlib.Path) -> ctypes.CDLL:
    """The compiled handlers at `path`, built first where they are missing or no longer load
    (built against a oneDNN that has since been replaced)."""
    if not path.exists():
        build(path)
    if not private(path):
        raise BuildError(f"{path} belongs to another user or others can write it; not loading it")
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        build(path)
        return ctypes.CDLL(str(path))


def load_library() -> ctypes.CDLL:
    """This environment's handlers from the cache, or, where the cache directory is not
    private, from a fresh build in a private temporary directory."""
    path = library_path()
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if private(directory) and (not path.exists() or private(path)):
        return load(path)
    log.warning(
        "%s is not private to this user (or holds a library of another user); building "
        "oneDNN's handlers in a temporary directory instead.", directory,
    )
    with tempfile.TemporaryDirectory(prefix="cnn_jax_native_") as scratch:
        return load(pathlib.Path(scratch) / path.name)  # stays mapped once the file is gone
