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

Lookup (:func:`build`): in-process dict, then disk, then compile under the file lock
(re-checking the disk first, so concurrent processes compile once), to a temporary file
moved into place with ``os.replace``. :func:`build_and_load` also dlopens the library and
registers it with the FFI handler; a library that fails to load (truncated, corrupted)
is deleted and rebuilt once.

CUDA kernels (:func:`build_cubin`) are cached the same way: ``<key>.cu``, ``<key>.cubin``
(or ``.ptx``), ``<key>.json``, keyed by the source, NVRTC's version, the options and the
target architecture; the image bytes are returned (the CUDA FFI side loads them).
Measured launch configurations (:mod:`jax_lazy.backends.tuning`) sit beside them as
``<key>.tune.json``.

Environment: ``JAX_LAZY_CACHE_DIR``, ``JAX_LAZY_CXX`` / ``CXX`` (the compiler, may
contain arguments), ``JAX_LAZY_CXXFLAGS`` (appended to :func:`default_flags`),
``JAX_LAZY_DUMP`` (print the paths of each kernel's source and binary to stderr).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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


# --------------------------------------------------------------------------- paths

def cache_dir() -> Path:
    """The cache directory: ``$JAX_LAZY_CACHE_DIR``, else ``platformdirs.user_cache_dir
    ("jax_lazy")``; created if missing."""
    env = os.environ.get("JAX_LAZY_CACHE_DIR")
    path = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("jax_lazy"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- compiler

@dataclasses.dataclass(frozen=True)
class Compiler:
    """A C++ compiler: ``argv`` is the command prefix (e.g. ``("/usr/bin/g++",)`` or
    ``("/usr/bin/ccache", "g++")``), ``identity`` its resolved path, extra arguments and
    the first line of ``--version`` (part of every cache key)."""

    argv: tuple[str, ...]
    identity: str


_probe_result: tuple[Compiler | None, str | None] | None = None


def _probe() -> tuple[Compiler | None, str | None]:
    global _probe_result
    with _lock:
        if _probe_result is None:
            _probe_result = _find()
        return _probe_result


def _find() -> tuple[Compiler | None, str | None]:
    fix = ("Install a C++17 compiler (e.g. `apt-get install g++`) or set JAX_LAZY_CXX to one "
           "(a path or a command, arguments allowed)")
    for var in ("JAX_LAZY_CXX", "CXX"):
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            return None, f"${var}={value!r} cannot be parsed ({exc}). Fix it or unset it."
        if not argv:
            continue
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
    PATH. Memoised; :func:`reset_compiler` forgets the result.
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
    return flags + shlex.split(os.environ.get("JAX_LAZY_CXXFLAGS", ""))


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


def _key(source: str, compiler: Compiler, flags: list[str]) -> str:
    from . import __version__

    material = {"source": source, "compiler": compiler.identity, "flags": flags,
                "version": __version__}
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
    if os.environ.get("JAX_LAZY_DUMP"):
        print(f"jax_lazy: kernel {name} ({how})\n  source: {paths['cpp']}\n  binary: {paths['so']}",
              file=sys.stderr, flush=True)


def _key_lock(slot: tuple[str, str]) -> threading.RLock:
    with _lock:
        return _key_locks.setdefault(slot, threading.RLock())


def _resolve(name: str, source: str, flags, *, bad: tuple | None = None):
    """(slot, paths) of a valid library for ``source``; compiles if needed.

    ``bad`` asks for a rebuild after a failed load: it is the (inode, size, mtime) of the
    library that failed (or ``()`` if unknown); that file is deleted if it is still the
    one on disk (another process may already have replaced it with a good one).
    """
    compiler = find_compiler()
    if compiler is None:
        raise BackendError(f"cannot compile kernels: {compiler_problem()}")
    flags = default_flags() if flags is None else [str(f) for f in flags]
    directory = cache_dir()
    key = _key(source, compiler, flags)
    source += key_stamp(key, "cpu")
    slot = (str(directory), key)
    paths = _paths(directory, key)
    if bad is None:
        cached = _entries.get(slot)
        if cached is not None and cached.exists():
            return slot, paths
    with _key_lock(slot):
        if bad is None and _valid(paths, key):
            _entries[slot] = paths["so"]
            _dump(name, paths, "cached")
            return slot, paths
        _entries.pop(slot, None)
        paths["so"].parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(paths["lock"])):
            if bad and _stat_id(paths["so"]) == bad:
                _unlink(paths["json"])
                _unlink(paths["so"])
            if not _valid(paths, key):  # another process may have built it meanwhile
                _compile(name, source, compiler, flags, key, paths)
                _dump(name, paths, f"compiled in {build_times[f'{name}/{key[:16]}']:.2f} s")
            else:
                _dump(name, paths, "cached")
        _entries[slot] = paths["so"]
    return slot, paths


def _stat_id(path: Path):
    """(inode, size, mtime_ns) of ``path``, or None if it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _compile(name, source, compiler, flags, key, paths) -> None:
    """Compile under the entry's file lock; leaves no .so/.json behind on failure."""
    _unlink(paths["json"])
    _unlink(paths["so"])
    _atomic_write(paths["cpp"], source)
    fd, tmp = tempfile.mkstemp(dir=paths["so"].parent, prefix=f".{key}.", suffix=".tmp.so")
    os.close(fd)
    tmp = Path(tmp)
    cmd = [*compiler.argv, *flags, "-o", str(tmp), str(paths["cpp"])]
    start = time.perf_counter()
    try:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace")
        except OSError as exc:
            raise CompileError(f"cannot run the C++ compiler for kernel {name}: {exc}\n"
                               f"  command: {shlex.join(cmd)}\n  source: {paths['cpp']}",
                               command=cmd, log=str(exc), source_path=paths["cpp"]) from None
        if proc.returncode != 0:
            raise CompileError(
                f"compiling kernel {name} failed (exit code {proc.returncode})\n"
                f"  command: {shlex.join(cmd)}\n  source: {paths['cpp']}\n"
                f"  compiler output:\n{proc.stdout}",
                command=cmd, log=proc.stdout, source_path=paths["cpp"])
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- public

def build(name: str, source: str, flags=None) -> Path:
    """Path of the shared library compiled from ``source`` (C++), from the cache if there.

    Args:
      name: a readable name (for messages, dumps, the manifest and :data:`build_times`).
      source: the full C++ source (exporting ``jax_lazy_kernel``, see
        :mod:`jax_lazy.backends.ffi`).
      flags: compiler flags; default :func:`default_flags`.

    Raises:
      BackendError: no usable compiler (the message says why and how to fix it).
      CompileError: the compiler failed; the message has the command, the full compiler
        output and the path of the source.
    """
    return _resolve(name, source, flags)[1]["so"]


def build_and_load(name: str, source: str, flags=None) -> str:
    """:func:`build`, then load the library and register its kernel with the FFI handler.

    Returns the kernel key (the cache key, which the custom call carries). A cached
    library that cannot be loaded (truncated, corrupted, symbol missing) is deleted and
    rebuilt once; if that fails too, BackendError. A library that reports another key
    than its entry's (a forged entry) raises BackendError.
    """
    from .backends import ffi

    slot, paths = _resolve(name, source, flags)
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
            _, paths = _resolve(name, source, flags, bad=bad or ())
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


def build_cubin(name: str, source: str, arch: str, options=None) -> bytes:
    """:func:`build_cubin_keyed`'s image."""
    return build_cubin_keyed(name, source, arch, options)[0]


def build_cubin_keyed(name: str, source: str, arch: str, options=None) -> tuple[bytes, str]:
    """(image, key): the cubin (``arch`` = ``sm_XX``) or PTX (``compute_XX``) that NVRTC makes of the
    CUDA ``source``, from the cache if there.

    The key is the sha256 of (source, NVRTC version and library, options, arch, jax_lazy
    version). Entries sit beside the libraries: ``<key>.cu`` (source), ``<key>.cubin`` or
    ``<key>.ptx``, ``<key>.json`` (manifest with the image's size and sha256, written
    last) and ``<key>.lock``; the same locking, atomic writes and rebuild of corrupted
    entries as :func:`build`. ``JAX_LAZY_DUMP`` prints the paths. The image carries its
    key (:func:`key_stamp`), which the handler checks when it loads the module.

    Raises:
      BackendError: NVRTC unavailable, or an architecture it cannot compile for.
      CompileError: NVRTC rejected the source: full log, options and source path.
    """
    from . import __version__
    from .backends import nvrtc

    options = nvrtc.default_options(arch) if options is None else [str(o) for o in options]
    material = {"source": source, "compiler": nvrtc.identity(), "flags": options, "arch": arch,
                "version": __version__}
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    source += key_stamp(key, "cuda")
    directory = cache_dir()
    slot = (str(directory), key)
    image = _images.get(slot)
    if image is not None:
        return image, key
    ext = "cubin" if arch.startswith("sm_") else "ptx"
    shard = directory / key[:2]
    paths = {e: shard / f"{key}.{e}" for e in (ext, "json", "cu", "lock")}
    with _key_lock(slot):
        if slot in _images:
            return _images[slot], key
        shard.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(paths["lock"])):
            image, how = _valid_image(paths[ext], paths["json"], key), "cached"
            if image is None:
                image = _compile_cuda(name, source, arch, options, key, paths, ext)
                how = f"compiled in {build_times[f'{name}/{key[:16]}']:.2f} s"
        if os.environ.get("JAX_LAZY_DUMP"):
            print(f"jax_lazy: CUDA kernel {name} for {arch} ({how})\n  source: {paths['cu']}\n"
                  f"  binary: {paths[ext]}", file=sys.stderr, flush=True)
        _images[slot] = image
    return image, key


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


def _compile_cuda(name, source, arch, options, key, paths, ext) -> bytes:
    """NVRTC under the entry's file lock; leaves no image or manifest behind on failure."""
    from .backends import nvrtc

    _unlink(paths["json"])
    _unlink(paths[ext])
    _atomic_write(paths["cu"], source)
    start = time.perf_counter()
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
    :func:`cache_dir` and forget this process's in-memory entries, the memoised plans
    included (:func:`jax_lazy.memo.clear`: their jitted functions and XLA executables
    are freed and the heap handed back to the OS). Libraries already loaded stay loaded
    (their kernel keys remain valid). Do not call it while another process compiles
    into the same directory. Other files in the directory are kept."""
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
        for shard in directory.iterdir():
            if not (shard.is_dir() and _SHARD_RE.match(shard.name)):
                continue
            for entry in shard.iterdir():
                if _ENTRY_RE.match(entry.name) and not entry.is_dir():
                    _unlink(entry)
            try:
                shard.rmdir()
            except OSError:
                pass  # not empty: foreign files


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
