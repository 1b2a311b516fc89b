"""Persistent, process-safe cache of compiled kernels (shared libraries).

A kernel is identified by the sha256 of (its C++ source, the compiler's identity, the
compiler flags, the jax_lazy version, and — when a flag says ``native`` — the host CPU),
so a new compiler, new flags or a new jax_lazy version never reuse a stale binary.

Layout under :func:`cache_dir` (``$JAX_LAZY_CACHE_DIR``, else the user cache directory)::

    <key[:2]>/<key>.cpp    the generated source (kept, also after a failed compile)
    <key[:2]>/<key>.so     the library
    <key[:2]>/<key>.json   manifest, written (atomically) after the .so: an entry is valid
                           only if both exist and the manifest matches the .so's size
                           and sha256
    <key[:2]>/<key>.lock   file lock serialising the compilation of that key

    <skey[:2]>/<skey>.any  the key of the library last built from a source and flags by any
                           compiler (``skey`` leaves the compiler out): a process
                           without a compiler finds cached kernels through it

Lookup (:func:`build`): in-process dict, then disk, then compile under the file lock
(re-checking the disk first, so concurrent processes compile once), to a temporary file
moved into place with ``os.replace``. :func:`build_and_load` also dlopens the library and
registers it with the FFI handler; a library that fails to load (truncated, corrupted)
is deleted and rebuilt once.

Without a C++ compiler, the libraries already in the cache are used (through the
``.any`` aliases); only a missing one raises BackendError. A cache directory that cannot
be written (read-only, a file, a path that cannot be created) is still read; kernels it
lacks are compiled into a temporary directory of the process, removed at exit, with one
warning saying to set ``JAX_LAZY_CACHE_DIR``.

The compiler runs under :mod:`jax_lazy._compile_guard` on Linux: killed with its
process group when the calling process dies, its partial output deleted; temporary files
that a killed process leaves anyway (``.<key>.*.tmp*``) are deleted by the next compile of
that key (under its lock, no live process writes them). A compile that takes longer than
:data:`SLOW_COMPILE_S` logs one warning (logger ``jax_lazy``) naming the kernel's
formula and its source file.

CUDA kernels (:func:`build_cubin`) are cached the same way: ``<key>.cu``, ``<key>.cubin``
(or ``.ptx``), ``<key>.json``, keyed by the source, NVRTC's version, the options and the
target architecture; the image bytes are returned (the CUDA FFI side loads them).
Measured launch configurations (:mod:`jax_lazy.backends.tuning`) sit beside them as
``<key>.tune.json``.

Settings (:mod:`jax_lazy.options`): ``cache_dir``, ``cxx`` (the compiler, may contain
arguments), ``cxxflags`` (appended to :func:`default_flags`), ``dump`` (print the paths
of each kernel's source and binary to stderr); the CUDA switches are in :func:`cubin_key`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import filelock
import platformdirs

from .errors import BackendError, CompileError
from .options import kernel_material
from .options import options as settings  # build_cubin has an argument named options

SYMBOL = "jax_lazy_kernel"
_MANIFEST_FORMAT = 1
_ENTRY_RE = re.compile(r"^\.?[0-9a-f]{64}[.]")
_SHARD_RE = re.compile(r"^[0-9a-f]{2}$")

# Seconds spent compiling, per kernel built by this process: "<name>/<key[:16]>" -> s.
build_times: dict[str, float] = {}

# (cache dir, key) -> path of a valid library, for this process.
_entries: dict[tuple[str, str], Path] = {}
# (cache dir, key) -> the key, for the kernels that this process registered.
_kernel_ids: dict[tuple[str, str], str] = {}
_lock = threading.RLock()
_key_locks: dict[tuple[str, str], threading.RLock] = {}
# cache dir that cannot be written -> this process's temporary cache, used in its place.
_temporary: dict[str, Path] = {}

SLOW_COMPILE_S = 2.0  # a compile taking longer than this logs one warning
_log = logging.getLogger("jax_lazy")
_GUARD = Path(__file__).with_name("_compile_guard.py")


# --------------------------------------------------------------------------- paths

def cache_dir() -> Path:
    """The cache directory: ``$JAX_LAZY_CACHE_DIR``, else ``platformdirs.user_cache_dir
    ("jax_lazy")``; created if missing and possible (one that cannot be created or
    written is still searched; new kernels then go to a temporary directory)."""
    path = settings().cache_dir or Path(platformdirs.user_cache_dir("jax_lazy"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # _write_dir says why, if a kernel has to be compiled
    return path


def _write_dir(directory: Path, shard: str) -> Path:
    """Where a new entry of ``directory`` goes: ``directory`` when its ``shard`` can be
    written, else this process's temporary cache (made once, removed at exit, announced
    by one RuntimeWarning that says what to set).

    Raises:
      BackendError: no temporary directory can be made either.
    """
    with _lock:
        if str(directory) in _temporary:
            return _temporary[str(directory)]
        problem = _unwritable(directory / shard)
        if problem is None:
            return directory
        try:
            tmp = Path(tempfile.mkdtemp(prefix="jax_lazy-cache-"))
        except OSError as exc:
            raise BackendError(f"cannot compile kernels: the kernel cache {directory} cannot be written ({problem}) "
                               f"and no temporary directory can be made ({exc}). Set JAX_LAZY_CACHE_DIR to a "
                               f"writable directory.") from None
        atexit.register(shutil.rmtree, tmp, True)
        _temporary[str(directory)] = tmp
        warnings.warn(f"jax_lazy: the kernel cache {directory} cannot be written ({problem}). The kernels it "
                      f"holds are used; new ones are compiled into {tmp}, deleted when this process exits. Set "
                      f"JAX_LAZY_CACHE_DIR to a writable directory to keep them.", RuntimeWarning, stacklevel=2)
        return tmp


def _unwritable(shard: Path) -> str | None:
    """None when files can be created in ``shard`` (made if missing), else why not."""
    try:
        shard.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=shard, prefix=".probe-", suffix=".tmp")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    os.close(fd)
    _unlink(Path(probe))
    return None


# --------------------------------------------------------------------------- compiler

@dataclasses.dataclass(frozen=True)
class Compiler:
    """A C++ compiler: ``argv`` is the command prefix (e.g. ``("/usr/bin/g++",)`` or
    ``("/usr/bin/ccache", "g++")``), ``identity`` its resolved path, extra arguments and
    the first line of ``--version`` (part of every cache key)."""

    argv: tuple[str, ...]
    identity: str


# (the options it was found under, (compiler, problem)): found again when they change.
_probe_result: tuple[object, tuple[Compiler | None, str | None]] | None = None


def _probe() -> tuple[Compiler | None, str | None]:
    global _probe_result
    with _lock:
        if _probe_result is None or _probe_result[0] is not settings():
            _probe_result = settings(), _find()
        return _probe_result[1]


def _find() -> tuple[Compiler | None, str | None]:
    fix = ("Install a C++17 compiler (e.g. `apt-get install g++`) or set JAX_LAZY_CXX to one "
           "(a path or a command, arguments allowed)")
    var, value = settings().cxx_var, settings().cxx
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        return None, f"${var}={value!r} cannot be parsed ({exc}). Fix it or unset it."
    if argv:
        exe = shutil.which(argv[0])
        if exe is None:
            return None, (f"${var}={value!r}: {argv[0]!r} is not an executable file or a "
                          f"command on PATH. Point {var} to a C++17 compiler (g++, clang++) "
                          f"or unset it to use c++/g++/clang++ from PATH.")
        return _identify([exe, *argv[1:]], f"${var}")
    for name in ("c++", "g++", "clang++"):
        exe = shutil.which(name)
        if exe is not None:
            return _identify([exe], name)
    return None, f"no C++ compiler found: none of c++, g++, clang++ is on PATH. {fix}."


def _identify(argv: list[str], origin: str) -> tuple[Compiler | None, str | None]:
    try:
        proc = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the C++ compiler {shlex.join(argv)} (from {origin}) cannot run: {exc}"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, (f"`{shlex.join(argv)} --version` (compiler from {origin}) failed with exit "
                      f"code {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:500]}")
    resolved = [os.path.realpath(argv[0]), *argv[1:]]
    return Compiler(tuple(argv), f"{shlex.join(resolved)} | {lines[0].strip()}"), None


def find_compiler() -> Compiler | None:
    """The C++ compiler to use, or None (see :func:`compiler_problem`).

    ``$JAX_LAZY_CXX``, else ``$CXX`` (both may carry arguments, split with shlex; when
    set, they are the only candidate), else the first of ``c++``, ``g++``, ``clang++`` on
    PATH. Memoised until the options change (:func:`jax_lazy.options.reset`);
    :func:`reset_compiler` forgets the result (e.g. after a change of PATH).
    """
    return _probe()[0]


def compiler_problem() -> str | None:
    """Why no compiler is usable, with how to fix it; None when :func:`find_compiler`
    found one."""
    return _probe()[1]


def reset_compiler() -> None:
    """Forget the memoised compiler (e.g. after changing JAX_LAZY_CXX / CXX / PATH)."""
    global _probe_result
    with _lock:
        _probe_result = None


find_compiler.cache_clear = reset_compiler  # functools-style alias


def default_flags() -> list[str]:
    """Compiler flags of generated kernels: ``-O3 -march=native -std=c++17 -shared -fPIC
    -fno-math-errno -fopenmp-simd`` followed by ``$JAX_LAZY_CXXFLAGS`` (shlex-split; later
    flags win, e.g. ``JAX_LAZY_CXXFLAGS=-march=x86-64-v3``)."""
    flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno",
             "-fopenmp-simd"]
    return flags + list(settings().cxxflags)


_host_tag: str | None = None


def _host() -> str:
    """What ``-march=native`` means here: machine type and CPU model/flags."""
    global _host_tag
    if _host_tag is None:
        parts = [platform.machine(), platform.processor()]
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key = line.split(":", 1)[0].strip()
                    if key in ("model name", "flags", "Features", "CPU part") and line not in parts:
                        parts.append(line.strip())
                    elif not line.strip() and len(parts) > 2:
                        break  # first processor only
        except OSError:
            pass
        _host_tag = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return _host_tag


def library_key(source: str, flags: list[str] | None = None) -> str:
    """The key of the library that :func:`find_compiler` builds from ``source`` with
    ``flags`` (default :func:`default_flags`): the options that change cpu kernels
    (``JAX_LAZY_CXX``, ``JAX_LAZY_CXXFLAGS``) enter it through the compiler's identity and
    the flags."""
    return _key(source, find_compiler(), default_flags() if flags is None else [str(f) for f in flags])


def _key(source: str, compiler: Compiler | None, flags: list[str]) -> str:
    """The entry's key; with ``compiler`` None, the key of its compiler-independent alias."""
    from . import __version__

    material = {"source": source, "flags": flags, "version": __version__}
    if compiler is not None:
        material["compiler"] = compiler.identity
    if any("native" in f for f in flags):
        material["host"] = _host()
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- entries

def _paths(directory: Path, key: str) -> dict[str, Path]:
    shard = directory / key[:2]
    return {ext: shard / f"{key}.{ext}" for ext in ("so", "json", "cpp", "lock")}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _valid(paths: dict[str, Path], key: str) -> bool:
    """Whether the .so exists and the manifest written after it matches it."""
    try:
        manifest = json.loads(paths["json"].read_text(encoding="utf-8"))
        size = paths["so"].stat().st_size
        return (manifest.get("format") == _MANIFEST_FORMAT and manifest.get("key") == key
                and manifest.get("so_size") == size
                and manifest.get("so_sha256") == _sha256_file(paths["so"]))
    except (OSError, ValueError, AttributeError):
        return False


def _atomic_write(path: Path, data: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(data, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(Path(tmp))
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _dump(name: str, paths: dict[str, Path], how: str) -> None:
    if settings().dump:
        print(f"jax_lazy: kernel {name} ({how})\n  source: {paths['cpp']}\n  binary: {paths['so']}",
              file=sys.stderr, flush=True)


def _key_lock(slot: tuple[str, str]) -> threading.RLock:
    with _lock:
        return _key_locks.setdefault(slot, threading.RLock())


def _resolve(name: str, source: str, flags, *, bad: tuple | None = None, formula: str | None = None):
    """(slot, paths) of a valid library for ``source``; compiles if needed (into
    :func:`_write_dir`); without a compiler, the cached library of any compiler.

    ``bad`` asks for a rebuild after a failed load: it is the (inode, size, mtime) of the
    library that failed (or ``()`` if unknown); that file is deleted if it is still the
    one on disk (another process may already have replaced it with a good one).
    """
    flags = default_flags() if flags is None else [str(f) for f in flags]
    directory = cache_dir()
    compiler = find_compiler()
    if compiler is None:
        return _resolve_cached(name, source, flags, directory)
    key = _key(source, compiler, flags)
    stamped = source + key_stamp(key, "cpu")  # the alias (.any) is keyed by the source without it
    slot = (str(directory), key)
    paths = _paths(directory, key)
    if bad is None:
        cached = _entries.get(slot)
        if cached is not None and cached.exists():
            return slot, _paths(cached.parent.parent, key)
    with _key_lock(slot):
        if bad is None and _valid(paths, key):
            _entries[slot] = paths["so"]
            _point_alias(directory, source, flags, key)
            _dump(name, paths, "cached")
            return slot, paths
        _entries.pop(slot, None)
        target = _write_dir(directory, key[:2])
        paths = _paths(target, key)
        with filelock.FileLock(str(paths["lock"])):
            if bad and _stat_id(paths["so"]) == bad:
                _unlink(paths["json"])
                _unlink(paths["so"])
            if not _valid(paths, key):  # another process may have built it meanwhile
                _compile(name, stamped, compiler, flags, key, paths, formula)
                _point_alias(target, source, flags, key)
                _dump(name, paths, f"compiled in {build_times[f'{name}/{key[:16]}']:.2f} s")
            else:
                _dump(name, paths, "cached")
        _entries[slot] = paths["so"]
    return slot, paths


def _resolve_cached(name: str, source: str, flags: list[str], directory: Path):
    """Without a compiler: (slot, paths) of the library that some compiler built from
    ``source`` and ``flags`` into ``directory`` (found through the ``.any`` alias).

    Raises:
      BackendError: there is none (the message says why no compiler was found).
    """
    alias = _alias_path(directory, _key(source, None, flags))
    try:
        key = alias.read_text(encoding="utf-8").strip()
    except OSError:
        key = ""
    if re.fullmatch(r"[0-9a-f]{64}", key):
        slot, paths = (str(directory), key), _paths(directory, key)
        if (slot in _entries and paths["so"].exists()) or _valid(paths, key):
            _entries[slot] = paths["so"]
            _dump(name, paths, "cached, no compiler")
            return slot, paths
    raise BackendError(f"cannot compile kernel {name}: {compiler_problem()} It is not in the kernel cache "
                       f"{directory} either (a process with a compiler and the same JAX_LAZY_CACHE_DIR, "
                       f"JAX_LAZY_CXXFLAGS and jax_lazy version puts it there).")


def _alias_path(directory: Path, skey: str) -> Path:
    return directory / skey[:2] / f"{skey}.any"


def _point_alias(directory: Path, source: str, flags: list[str], key: str) -> None:
    """Point the compiler-independent alias of (``source``, ``flags``) at ``key`` (best
    effort: a read-only cache keeps the aliases it has)."""
    path = _alias_path(directory, _key(source, None, flags))
    try:
        if path.read_text(encoding="utf-8") == key:
            return
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, key)
    except OSError:
        pass


def _stat_id(path: Path):
    """(inode, size, mtime_ns) of ``path``, or None if it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _compile(name, source, compiler, flags, key, paths, formula=None) -> None:
    """Compile under the entry's file lock; leaves no .so/.json behind on failure."""
    _unlink(paths["json"])
    _unlink(paths["so"])
    _remove_leftovers(paths["so"].parent, key)
    _atomic_write(paths["cpp"], source)
    fd, tmp = tempfile.mkstemp(dir=paths["so"].parent, prefix=f".{key}.{os.getpid()}.", suffix=".tmp.so")
    os.close(fd)
    tmp = Path(tmp)
    cmd = [*compiler.argv, *flags, "-o", str(tmp), str(paths["cpp"])]
    start = time.perf_counter()
    try:
        try:
            with _announce_if_slow(f"the C++ kernel {name}", formula, paths["cpp"]):
                returncode, output = _run_compiler(cmd, tmp)
        except OSError as exc:
            raise CompileError(f"cannot run the C++ compiler for kernel {name}: {exc}\n"
                               f"  command: {shlex.join(cmd)}\n  source: {paths['cpp']}",
                               command=cmd, log=str(exc), source_path=paths["cpp"]) from None
        if returncode != 0:
            raise CompileError(
                f"compiling kernel {name} failed (exit code {returncode})\n"
                f"  command: {shlex.join(cmd)}\n  source: {paths['cpp']}\n"
                f"  compiler output:\n{output}",
                command=cmd, log=output, source_path=paths["cpp"])
        seconds = time.perf_counter() - start
        os.chmod(tmp, 0o755 & ~_umask())
        os.replace(tmp, paths["so"])
        manifest = {"format": _MANIFEST_FORMAT, "key": key, "name": name,
                    "compiler": compiler.identity, "flags": flags,
                    "so_size": paths["so"].stat().st_size, "so_sha256": _sha256_file(paths["so"]),
                    "compile_seconds": round(seconds, 4)}
        _atomic_write(paths["json"], json.dumps(manifest, indent=1))
        build_times[f"{name}/{key[:16]}"] = seconds
    except BaseException:
        _unlink(tmp)
        _unlink(paths["json"])
        _unlink(paths["so"])
        raise


def _run_compiler(cmd: list[str], output: Path) -> tuple[int, str]:
    """(exit code, stdout + stderr) of the compiler command ``cmd`` writing ``output``.

    On Linux it runs under :mod:`jax_lazy._compile_guard`, which kills the compiler's
    process group (and deletes ``output``) when this process dies; an exception here
    (KeyboardInterrupt) stops it the same way. Elsewhere the compiler runs directly.
    """
    guarded = sys.platform.startswith("linux") and sys.executable and _GUARD.is_file()
    argv = [sys.executable, "-S", str(_GUARD), str(os.getpid()), str(output), "--", *cmd] if guarded else cmd
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        out, _ = proc.communicate()
    except BaseException:
        proc.terminate()  # the guard kills the compiler's group
        proc.wait()
        raise
    return proc.returncode, out


@contextlib.contextmanager
def _announce_if_slow(what: str, formula: str | None, source_path: Path):
    """Log one warning if the compile inside the block is still running after
    :data:`SLOW_COMPILE_S` seconds: what is compiled, why, and where its source is."""
    if formula and len(formula) > 300:  # formulas of thousands of nodes: the start names it
        formula = formula[:300] + " ..."
    subject = f"{what} of {formula}" if formula else what
    message = (f"jax_lazy: compiling {subject} (a new kernel: it is compiled once, then loaded from the "
               f"kernel cache) takes more than {SLOW_COMPILE_S:g} s. Source: {source_path}; the compiler's "
               f"output comes with the error if it fails.")
    timer = threading.Timer(SLOW_COMPILE_S, _log.warning, args=(message,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _remove_leftovers(shard: Path, key: str) -> None:
    """Delete the temporary files of ``key`` (``.<key>.*.tmp*``) that a killed process
    left. Called under the key's file lock: no live process is writing them."""
    for leftover in shard.glob(f".{key}.*.tmp*"):
        _unlink(leftover)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- public

def build(name: str, source: str, flags=None, formula: str | None = None) -> Path:
    """Path of the shared library compiled from ``source`` (C++), from the cache if there.

    Args:
      name: a readable name (for messages, dumps, the manifest and :data:`build_times`).
      source: the full C++ source (exporting ``jax_lazy_kernel``, see
        :mod:`jax_lazy.backends.ffi`).
      flags: compiler flags; default :func:`default_flags`.
      formula: what the kernel computes, for the message of a slow compile.

    Raises:
      BackendError: no usable compiler and no cached library (the message says why and
        how to fix it), or a cache directory that cannot be written with no temporary
        directory to use instead.
      CompileError: the compiler failed; the message has the command, the full compiler
        output and the path of the source.
    """
    return _resolve(name, source, flags, formula=formula)[1]["so"]


def build_and_load(name: str, source: str, flags=None, formula: str | None = None) -> str:
    """:func:`build`, then load the library and register its kernel with the FFI handler.

    Returns the kernel key (the cache key, which the custom call carries). A cached
    library that cannot be loaded (truncated, corrupted, symbol missing) is deleted and
    rebuilt once; if that fails too, BackendError. A library that reports another key
    than its entry's (a forged entry) raises BackendError.
    """
    from .backends import ffi

    slot, paths = _resolve(name, source, flags, formula=formula)
    kernel_id = _kernel_ids.get(slot)
    if kernel_id is not None:
        return kernel_id
    with _key_lock(slot):
        kernel_id = _kernel_ids.get(slot)
        if kernel_id is not None:
            return kernel_id
        bad = _stat_id(paths["so"])
        try:
            kernel_id = ffi.load_kernel(paths["so"], slot[1])
        except (OSError, AttributeError) as exc:
            warnings.warn(f"jax_lazy: cached kernel library {paths['so']} cannot be loaded ({exc}); "
                          f"rebuilding it", RuntimeWarning, stacklevel=2)
            _, paths = _resolve(name, source, flags, bad=bad or (), formula=formula)
            kernel_id = _load_fresh(ffi, paths["so"], name, slot[1])
        _kernel_ids[slot] = kernel_id
    return kernel_id


def _load_fresh(ffi, so: Path, name: str, key: str) -> str:
    """Load a rebuilt library through a new file name: the dynamic loader would hand back
    an already loaded library of the same name instead of opening the new file."""
    alias = so.with_name(f".{so.stem}.{os.getpid()}.{time.monotonic_ns()}.so")
    try:
        os.link(so, alias)
    except OSError:
        shutil.copyfile(so, alias)
    try:
        return ffi.load_kernel(alias, key)
    except (OSError, AttributeError) as exc:
        raise BackendError(f"kernel {name}: the freshly built library {so} cannot be loaded: {exc}") from exc
    finally:
        _unlink(alias)


# --------------------------------------------------------------------------- CUDA

# (cache dir, key) -> cubin / PTX bytes, for this process.
_images: dict[tuple[str, str], bytes] = {}


def build_cubin(name: str, source: str, arch: str, options=None, formula: str | None = None) -> bytes:
    """:func:`build_cubin_keyed`'s image."""
    return build_cubin_keyed(name, source, arch, options, formula)[0]


def build_cubin_keyed(name: str, source: str, arch: str, options=None,
                      formula: str | None = None) -> tuple[bytes, str]:
    """(image, key): the cubin (``arch`` = ``sm_XX``) or PTX (``compute_XX``) that NVRTC makes of the
    CUDA ``source``, from the cache if there.

    The key is :func:`cubin_key`. Entries sit beside the libraries: ``<key>.cu`` (source), ``<key>.cubin`` or
    ``<key>.ptx``, ``<key>.json`` (manifest with the image's size and sha256, written
    last) and ``<key>.lock``; the same locking, atomic writes and rebuild of corrupted
    entries as :func:`build`, and the same fallback to a temporary directory when the cache
    cannot be written. ``JAX_LAZY_DUMP`` prints the paths. ``formula`` (what the kernel
    computes) goes into the message of a slow compile. The image carries its key
    (:func:`key_stamp`), which the handler checks when it loads the module.

    Raises:
      BackendError: NVRTC unavailable, or an architecture it cannot compile for.
      CompileError: NVRTC rejected the source: full log, options and source path.
    """
    from .backends import nvrtc

    options = nvrtc.default_options(arch) if options is None else [str(o) for o in options]
    key = cubin_key(source, arch, options)
    source += key_stamp(key, "cuda")
    directory = cache_dir()
    slot = (str(directory), key)
    image = _images.get(slot)
    if image is not None:
        return image, key
    ext = "cubin" if arch.startswith("sm_") else "ptx"

    def entry(d: Path) -> dict[str, Path]:
        return {e: d / key[:2] / f"{key}.{e}" for e in (ext, "json", "cu", "lock")}

    paths = entry(directory)
    with _key_lock(slot):
        if slot in _images:
            return _images[slot], key
        image, how = _valid_image(paths[ext], paths["json"], key), "cached"
        if image is None:
            paths = entry(_write_dir(directory, key[:2]))
            with filelock.FileLock(str(paths["lock"])):
                image = _valid_image(paths[ext], paths["json"], key)  # another process may have built it
                if image is None:
                    image = _compile_cuda(name, source, arch, options, key, paths, ext, formula)
                    how = f"compiled in {build_times[f'{name}/{key[:16]}']:.2f} s"
        if settings().dump:
            print(f"jax_lazy: CUDA kernel {name} for {arch} ({how})\n  source: {paths['cu']}\n"
                  f"  binary: {paths[ext]}", file=sys.stderr, flush=True)
        _images[slot] = image
    return image, key


def cubin_key(source: str, arch: str, options: list[str]) -> str:
    """The key of the CUDA kernel NVRTC makes of ``source`` for ``arch`` with ``options``:
    sha256 of them, NVRTC's identity, the jax_lazy version and the options that change
    CUDA kernels (:func:`jax_lazy.options.kernel_material`; they also show in the source,
    and are named here so that no code path can forget them)."""
    from . import __version__
    from .backends import nvrtc

    material = {"source": source, "compiler": nvrtc.identity(), "flags": options, "arch": arch,
                "version": __version__, "options": kernel_material("cuda")}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _valid_image(path: Path, manifest_path: Path, key: str) -> bytes | None:
    """The image at ``path`` if the manifest written after it matches it, else None."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        image = path.read_bytes()
    except (OSError, ValueError):
        return None
    ok = (isinstance(manifest, dict) and manifest.get("format") == _MANIFEST_FORMAT and manifest.get("key") == key
          and manifest.get("size") == len(image) and manifest.get("sha256") == hashlib.sha256(image).hexdigest())
    return image if ok else None


def _compile_cuda(name, source, arch, options, key, paths, ext, formula=None) -> bytes:
    """NVRTC under the entry's file lock; leaves no image or manifest behind on failure."""
    from .backends import nvrtc

    _unlink(paths["json"])
    _unlink(paths[ext])
    _remove_leftovers(paths["cu"].parent, key)
    _atomic_write(paths["cu"], source)
    start = time.perf_counter()
    with _announce_if_slow(f"the CUDA kernel {name} for {arch}", formula, paths["cu"]):
        image = nvrtc.compile(source, arch, name=name, options=options, source_path=paths["cu"])
    seconds = time.perf_counter() - start
    try:
        _atomic_write(paths[ext], image)
        manifest = {"format": _MANIFEST_FORMAT, "key": key, "name": name, "compiler": nvrtc.identity(),
                    "flags": options, "arch": arch, "size": len(image),
                    "sha256": hashlib.sha256(image).hexdigest(), "compile_seconds": round(seconds, 4)}
        _atomic_write(paths["json"], json.dumps(manifest, indent=1))
    except BaseException:
        _unlink(paths["json"])
        _unlink(paths[ext])
        raise
    build_times[f"{name}/{key[:16]}"] = seconds
    return image


def clear_cache() -> None:
    """Delete every cache entry (sources, libraries, manifests, locks, leftovers) under
    :func:`cache_dir` (and this process's temporary cache standing in for it) and forget
    this process's in-memory entries, the memoised plans included (:func:`jax_lazy.memo.clear`:
    their jitted functions and XLA executables are freed and the heap handed back to the
    OS). Libraries already loaded stay loaded (their kernel keys remain valid). Do not call
    it while another process compiles into the same directory. Other files in the
    directory are kept.

    Raises:
      BackendError: some entries cannot be deleted (a read-only cache); the others are.
    """
    from . import memo

    memo.clear()
    directory = cache_dir()
    with _lock:
        for slot in [s for s in _entries if s[0] == str(directory)]:
            del _entries[slot]
        for slot in [s for s in _kernel_ids if s[0] == str(directory)]:
            del _kernel_ids[slot]
        for slot in [s for s in _images if s[0] == str(directory)]:
            del _images[slot]
        from .backends import tuning

        tuning.forget()
        failed = [f for d in (directory, _temporary.get(str(directory))) if d is not None for f in _clear(d)]
    if failed:
        raise BackendError(f"clear_cache: {len(failed)} entries of the kernel cache {directory} cannot be deleted, "
                           f"e.g. {failed[0]}")


def _clear(directory: Path) -> list[str]:
    """Delete the entries under ``directory``; what could not be deleted, and why."""
    try:
        shards = [s for s in directory.iterdir() if s.is_dir() and _SHARD_RE.match(s.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        return [f"{directory}: {exc.strerror or exc}"]
    failed = []
    for shard in shards:
        for entry in shard.iterdir():
            if _ENTRY_RE.match(entry.name) and not entry.is_dir():
                try:
                    _unlink(entry)
                except OSError as exc:
                    failed.append(f"{entry}: {exc.strerror or exc}")
        try:
            shard.rmdir()
        except OSError:
            pass  # not empty: foreign files
    return failed


# --------------------------------------------------------------------------- kernels by key

def key_stamp(key: str, kind: str) -> str:
    """The source lines that make a kernel carry its own key (appended to the source
    after the key is computed from it): ``jax_lazy_kernel_key()`` in a library, a
    ``__device__`` string in a CUDA image. The loaders check it against the key a kernel
    is loaded under, so a library filed under another kernel's key is never run."""
    if kind == "cpu":
        return f'\nextern "C" const char* jax_lazy_kernel_key() {{ return "{key}"; }}\n'
    return f'\nextern "C" __device__ const char jax_lazy_kernel_key[{len(key) + 1}] = "{key}";\n'


def load_by_key(kind: str, key: str) -> None:
    """Load and register kernel ``key`` from :func:`cache_dir`, with nothing but its key:
    a library (``kind`` "cpu") or a CUDA image ("cuda"). This is how a module exported by
    ``jax.export`` finds its kernels in another process (the FFI handlers call it through
    :func:`jax_lazy.backends.ffi.resolve_kernel`).

    Raises:
      BackendError: no valid entry for ``key`` in the cache directory, or one that
        reports another key (forged).
    """
    from .backends import cuda_ffi, ffi

    directory = cache_dir()
    slot = (str(directory), key)
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise BackendError(f"{key!r} is not a kernel key (64 hex digits)")
    paths = _paths(directory, key)
    with _key_lock(slot):
        if kind == "cpu":
            if _valid(paths, key):
                _kernel_ids[slot] = ffi.load_kernel(paths["so"], key)
                return
        else:
            for ext in ("cubin", "ptx"):
                image = _valid_image(paths["so"].with_suffix(f".{ext}"), paths["json"], key)
                if image is not None:
                    cuda_ffi.load_kernel(image, key)
                    return
    raise BackendError(f"kernel {key} is not in the kernel cache {directory}. A module exported with "
                       f"jax.export runs where its kernels are cached: run the exporting code once with "
                       f"this JAX_LAZY_CACHE_DIR, or copy the exporter's cache entries "
                       f"({key[:2]}/{key}.*) into it")
