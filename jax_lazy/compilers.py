"""Compilers: finding and identifying them, and building kernels from source into the store.

A C++ kernel (cpu backend) is a shared library built by the C++ compiler that
:func:`find_compiler` finds (``JAX_LAZY_CXX``, else ``CXX``, else c++/g++/clang++ on
PATH) with :func:`default_flags`; a CUDA kernel is a cubin or PTX image built by NVRTC
(:mod:`jax_lazy.backends.nvrtc`). Each is filed in the kernel cache (:mod:`jax_lazy.store`)
under a key, the sha256 of everything its bytes depend on (:func:`library_key`,
:func:`cubin_key`): source, compiler identity, flags, jax_lazy version, the host CPU when
a flag says ``native``, the target architecture and the options that change CUDA
kernels. A new compiler, new flags or a new jax_lazy version never reuse a stale binary.
The source is stamped with its key (:func:`key_stamp`), which the loaders check.

Lookup (:func:`build`): this process's memo, then disk, then compile under the key's file
lock (re-checking the disk first, so concurrent processes compile once), to a temporary
file moved into place with ``os.replace``, its manifest written last.
:func:`build_and_load` also dlopens the library and registers it with the FFI handler; a
library that fails to load (truncated, corrupted) is deleted and rebuilt once.

Without a C++ compiler, the libraries already in the cache are used: each library also
files an alias (``.any``) under the key of its source and flags without the compiler, so a
process without one finds it; only a missing one raises BackendError.

The compiler runs under :mod:`jax_lazy._compile_guard` on Linux: killed with its process
group when the calling process dies, its partial output deleted. A compile that takes
longer than :data:`SLOW_COMPILE_S` logs one warning (logger ``jax_lazy``) naming the
kernel's formula and its source file. ``JAX_LAZY_DUMP`` prints the paths of each kernel's
source and binary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from . import store
from .errors import BackendError, CompileError
from .options import kernel_material
from .options import options as settings  # build_cubin has an argument named options

SYMBOL = "jax_lazy_kernel"

# Seconds spent compiling, per kernel built by this process: "<name>/<key[:16]>" -> s.
build_times: dict[str, float] = {}

SLOW_COMPILE_S = 2.0  # a compile taking longer than this logs one warning
_log = logging.getLogger("jax_lazy")
_GUARD = Path(__file__).with_name("_compile_guard.py")
_lock = threading.RLock()


# --------------------------------------------------------------------------- the C++ compiler

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


def key_stamp(key: str, kind: str) -> str:
    """The source lines that make a kernel carry its own key (appended to the source
    after the key is computed from it): ``jax_lazy_kernel_key()`` in a library, a
    ``__device__`` string in a CUDA image. The loaders check it against the key a kernel
    is loaded under, so a library filed under another kernel's key is never run."""
    if kind == "cpu":
        return f'\nextern "C" const char* jax_lazy_kernel_key() {{ return "{key}"; }}\n'
    return f'\nextern "C" __device__ const char jax_lazy_kernel_key[{len(key) + 1}] = "{key}";\n'


# --------------------------------------------------------------------------- C++ libraries

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
    return _resolve(name, source, flags, formula=formula)[1]


def build_and_load(name: str, source: str, flags=None, formula: str | None = None) -> str:
    """:func:`build`, then load the library and register its kernel with the FFI handler.

    Returns the kernel key (the cache key, which the custom call carries). A cached
    library that cannot be loaded (truncated, corrupted, symbol missing) is deleted and
    rebuilt once; if that fails too, BackendError. A library that reports another key
    than its entry's (a forged entry) raises BackendError.
    """
    from .backends import ffi

    at, so = _resolve(name, source, flags, formula=formula)
    kernel_id = store.recall(at, "loaded")
    if kernel_id is not None:
        return kernel_id
    with store.key_lock(at):
        kernel_id = store.recall(at, "loaded")
        if kernel_id is not None:
            return kernel_id
        bad = store.stat_id(so)
        try:
            kernel_id = ffi.load_kernel(so, at[1])
        except (OSError, AttributeError) as exc:
            warnings.warn(f"jax_lazy: cached kernel library {so} cannot be loaded ({exc}); "
                          f"rebuilding it", RuntimeWarning, stacklevel=2)
            _, so = _resolve(name, source, flags, bad=bad or (), formula=formula)
            kernel_id = _load_fresh(ffi, so, name, at[1])
        store.remember(at, "loaded", kernel_id)
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
        store.unlink(alias)


def _resolve(name: str, source: str, flags, *, bad: tuple | None = None, formula: str | None = None):
    """(slot, path) of a valid library for ``source``; compiles if needed (into
    :func:`store.write_dir`); without a compiler, the cached library of any compiler.

    ``bad`` asks for a rebuild after a failed load: it is the (inode, size, mtime) of the
    library that failed (or ``()`` if unknown); that file is deleted if it is still the
    one on disk (another process may already have replaced it with a good one).
    """
    flags = default_flags() if flags is None else [str(f) for f in flags]
    directory = store.cache_dir()
    compiler = find_compiler()
    if compiler is None:
        return _resolve_cached(name, source, flags, directory)
    key = _key(source, compiler, flags)
    at = store.slot(key, directory)
    if bad is None:
        cached = store.recall(at, "so")
        if cached is not None and cached.exists():
            return at, cached
    with store.key_lock(at):
        if bad is None and store.valid(directory, key, "so"):
            store.point_alias(directory, _key(source, None, flags), key)
            _dump(name, directory, key, "cached")
            return at, store.remember(at, "so", store.path(directory, key, "so"))
        store.remember(at, "so", None)
        target = store.write_dir(directory, key[:2])
        so = store.path(target, key, "so")
        with store.file_lock(target, key):
            if bad and store.stat_id(so) == bad:
                store.unlink(store.path(target, key, "json"))
                store.unlink(so)
            if not store.valid(target, key, "so"):  # another process may have built it meanwhile
                _compile(name, source + key_stamp(key, "cpu"), compiler, flags, key, target, formula)
                store.point_alias(target, _key(source, None, flags), key)
                _dump(name, target, key, f"compiled in {build_times[f'{name}/{key[:16]}']:.2f} s")
            else:
                _dump(name, target, key, "cached")
        store.remember(at, "so", so)
    return at, so


def _resolve_cached(name: str, source: str, flags: list[str], directory: Path):
    """Without a compiler: (slot, path) of the library that some compiler built from
    ``source`` and ``flags`` into ``directory`` (found through the ``.any`` alias).

    Raises:
      BackendError: there is none (the message says why no compiler was found).
    """
    key = store.read_alias(directory, _key(source, None, flags))
    if key is not None:
        at, so = store.slot(key, directory), store.path(directory, key, "so")
        if (store.recall(at, "so") is not None and so.exists()) or store.valid(directory, key, "so"):
            _dump(name, directory, key, "cached, no compiler")
            return at, store.remember(at, "so", so)
    raise BackendError(f"cannot compile kernel {name}: {compiler_problem()} It is not in the kernel cache "
                       f"{directory} either (a process with a compiler and the same JAX_LAZY_CACHE_DIR, "
                       f"JAX_LAZY_CXXFLAGS and jax_lazy version puts it there).")


def _compile(name, source, compiler, flags, key, directory, formula=None) -> None:
    """Compile under the entry's file lock; leaves no library or manifest behind on failure."""
    so, cpp, manifest = (store.path(directory, key, ext) for ext in ("so", "cpp", "json"))
    store.unlink(manifest)
    store.unlink(so)
    store.remove_leftovers(so.parent, key)
    store.atomic_write(cpp, source)
    fd, tmp = tempfile.mkstemp(dir=so.parent, prefix=f".{key}.{os.getpid()}.", suffix=".tmp.so")
    os.close(fd)
    tmp = Path(tmp)
    cmd = [*compiler.argv, *flags, "-o", str(tmp), str(cpp)]
    start = time.perf_counter()
    try:
        try:
            with _announce_if_slow(f"the C++ kernel {name}", formula, cpp):
                returncode, output = _run_compiler(cmd, tmp)
        except OSError as exc:
            raise CompileError(f"cannot run the C++ compiler for kernel {name}: {exc}\n"
                               f"  command: {shlex.join(cmd)}\n  source: {cpp}",
                               command=cmd, log=str(exc), source_path=cpp) from None
        if returncode != 0:
            raise CompileError(
                f"compiling kernel {name} failed (exit code {returncode})\n"
                f"  command: {shlex.join(cmd)}\n  source: {cpp}\n"
                f"  compiler output:\n{output}",
                command=cmd, log=output, source_path=cpp)
        seconds = time.perf_counter() - start
        os.chmod(tmp, 0o755 & ~_umask())
        os.replace(tmp, so)
        store.write_manifest(directory, key, "so", name, compiler=compiler.identity, flags=flags,
                             compile_seconds=round(seconds, 4))
        build_times[f"{name}/{key[:16]}"] = seconds
    except BaseException:
        store.unlink(tmp)
        store.unlink(manifest)
        store.unlink(so)
        raise


def _dump(name: str, directory: Path, key: str, how: str) -> None:
    if settings().dump:
        print(f"jax_lazy: kernel {name} ({how})\n  source: {store.path(directory, key, 'cpp')}\n"
              f"  binary: {store.path(directory, key, 'so')}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- CUDA images

def build_cubin(name: str, source: str, arch: str, options=None, formula: str | None = None) -> bytes:
    """:func:`build_cubin_keyed`'s image."""
    return build_cubin_keyed(name, source, arch, options, formula)[0]


def build_cubin_keyed(name: str, source: str, arch: str, options=None,
                      formula: str | None = None) -> tuple[bytes, str]:
    """(image, key): the cubin (``arch`` = ``sm_XX``) or PTX (``compute_XX``) that NVRTC makes of the
    CUDA ``source``, from the cache if there.

    The key is :func:`cubin_key`. Entries sit beside the libraries: ``<key>.cu`` (source),
    ``<key>.cubin`` or ``<key>.ptx``, ``<key>.json`` (manifest, written last) and
    ``<key>.lock``; the same locking, atomic writes and fallback to a temporary directory
    as :func:`build`. ``JAX_LAZY_DUMP`` prints the paths. ``formula`` (what the kernel
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
    directory = store.cache_dir()
    at = store.slot(key, directory)
    image = store.recall(at, "image")
    if image is not None:
        return image, key
    ext = "cubin" if arch.startswith("sm_") else "ptx"
    with store.key_lock(at):
        image = store.recall(at, "image")
        if image is not None:
            return image, key
        where, how = directory, "cached"
        image = store.valid_bytes(directory, key, ext)
        if image is None:
            where = store.write_dir(directory, key[:2])
            with store.file_lock(where, key):
                image = store.valid_bytes(where, key, ext)  # another process may have built it
                if image is None:
                    image = _compile_cuda(name, source, arch, options, key, where, ext, formula)
                    how = f"compiled in {build_times[f'{name}/{key[:16]}']:.2f} s"
        if settings().dump:
            print(f"jax_lazy: CUDA kernel {name} for {arch} ({how})\n  source: {store.path(where, key, 'cu')}\n"
                  f"  binary: {store.path(where, key, ext)}", file=sys.stderr, flush=True)
        store.remember(at, "image", image)
    return image, key


def _compile_cuda(name, source, arch, options, key, directory, ext, formula=None) -> bytes:
    """NVRTC under the entry's file lock; leaves no image or manifest behind on failure."""
    from .backends import nvrtc

    image_path, cu, manifest = (store.path(directory, key, e) for e in (ext, "cu", "json"))
    store.unlink(manifest)
    store.unlink(image_path)
    store.remove_leftovers(cu.parent, key)
    store.atomic_write(cu, source)
    start = time.perf_counter()
    with _announce_if_slow(f"the CUDA kernel {name} for {arch}", formula, cu):
        image = nvrtc.compile(source, arch, name=name, options=options, source_path=cu)
    seconds = time.perf_counter() - start
    try:
        store.atomic_write(image_path, image)
        store.write_manifest(directory, key, ext, name, compiler=nvrtc.identity(), flags=options, arch=arch,
                             compile_seconds=round(seconds, 4))
    except BaseException:
        store.unlink(manifest)
        store.unlink(image_path)
        raise
    build_times[f"{name}/{key[:16]}"] = seconds
    return image


# --------------------------------------------------------------------------- running a compiler

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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
