"""NVRTC (NVIDIA's run-time CUDA C++ compiler) through ctypes: CUDA source -> cubin / PTX.

The library is looked up, in this order:

1. ``$JAX_LAZY_NVRTC``: the path of a ``libnvrtc.so*`` to use;
2. the pip wheels: ``nvidia-cuda-nvrtc-cu12`` (a dependency of ``jax[cuda12]``), which
   installs ``site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12``, and
   ``nvidia-cuda-nvrtc`` 13.x (of ``jax[cuda13]``): ``nvidia/cu13/lib/libnvrtc.so.13``,
   each next to the ``libnvrtc-builtins`` it loads (``nvidia`` is a namespace package:
   found through ``importlib``, never imported for its code). The CUDA major of JAX's
   CUDA plugin (``jax-cuda12-plugin`` or ``jax-cuda13-plugin``) comes first: its driver
   requirement is the one the machine already meets;
3. a system CUDA toolkit: ``$CUDA_HOME`` / ``$CUDA_PATH`` ``/lib64``, ``/usr/local/cuda``,
   then the dynamic loader's search (``ctypes.util.find_library("nvrtc")``).

Nothing is loaded until :func:`status`, :func:`version` or :func:`compile` is called.
NVRTC needs no GPU and no driver: it only compiles, so kernels can be built (and their
compilation tested) on a machine without CUDA.

Facts about the wheels' NVRTC (12.9, 13.0): no builtin headers (``cuda_fp16.h``,
``cuda_bf16.h``, ``<cstdint>`` cannot be included without an include path); the CUDA
math library (``expf``, ``exp``, ``__float_as_uint`` ...) is declared implicitly; GCC's
``__builtin_inf`` / ``__builtin_nan`` do not exist. Compiling a jax_lazy kernel takes
0.1-1 s.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import re
import threading
from pathlib import Path

from ..errors import BackendError, CompileError
from ..options import options

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_problem: str | None = None
_loaded = False
_path: str | None = None
_ARCH = re.compile(r"^(sm|compute)_(\d+)[af]?$")


def _candidates() -> list[str]:
    out = []
    env = options().nvrtc
    if env:
        out.append(env)
    for package in sorted(_WHEELS, key=lambda p: _WHEELS[p] != _jax_cuda_major()):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for root in (spec.submodule_search_locations or []) if spec else []:
            out += sorted(glob.glob(os.path.join(root, "lib", "libnvrtc.so*")), key=_plain_first)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            out += sorted(glob.glob(os.path.join(os.environ[var], "lib*", "libnvrtc.so*")), key=_plain_first)
    out += sorted(glob.glob("/usr/local/cuda/lib64/libnvrtc.so*"), key=_plain_first)
    found = ctypes.util.find_library("nvrtc")
    if found:
        out.append(found)
    return [p for p in out if "builtins" not in os.path.basename(p)]


_WHEELS = {"nvidia.cuda_nvrtc": 12, "nvidia.cu13": 13}  # where each CUDA major's wheel puts lib/


def _jax_cuda_major() -> int | None:
    """The CUDA major version of JAX's installed CUDA plugin (12, 13), None without one."""
    from importlib import metadata

    for major in (13, 12):
        try:
            metadata.version(f"jax-cuda{major}-plugin")
            return major
        except metadata.PackageNotFoundError:
            continue
    return None


def _plain_first(path: str) -> tuple:
    """libnvrtc.so.12 before libnvrtc.alt.so.12 (the 'alt' build links a different libstdc++)."""
    return (".alt." in path, path)


def _load() -> None:
    global _lib, _problem, _loaded, _path
    with _lock:
        if _loaded:
            return
        tried, _lib, _path = [], None, None
        for path in _candidates():
            try:
                _preload_builtins(path)
                lib = ctypes.CDLL(path)
                _declare(lib)
            except (OSError, AttributeError) as exc:
                tried.append(f"{path}: {exc}")
                continue
            _lib, _path = lib, path
            break
        else:
            _problem = ("NVRTC (libnvrtc.so) was not found"
                        + (f" or could not be loaded ({'; '.join(tried)})" if tried else "")
                        + ". Install it with `pip install nvidia-cuda-nvrtc-cu12` (it comes with "
                        "`jax[cuda12]`) or `pip install nvidia-cuda-nvrtc` (CUDA 13, with `jax[cuda13]`), "
                        "or point $JAX_LAZY_NVRTC to a libnvrtc.so")
        _loaded = True


_builtins: list = []  # preloaded libnvrtc-builtins, kept alive


def _preload_builtins(path: str) -> None:
    """Load the ``libnvrtc-builtins`` beside ``path`` (same build: plain or ``.alt``) first,
    globally: NVRTC 13 opens it by name at its first compile and, loaded from a wheel, does
    not find it next to itself (NVRTC 12's RUNPATH does); one already loaded is reused."""
    alt = ".alt." in os.path.basename(path)
    for found in sorted(glob.glob(os.path.join(os.path.dirname(path) or ".", "libnvrtc-builtins*.so*"))):
        if (".alt." in os.path.basename(found)) == alt:
            try:
                _builtins.append(ctypes.CDLL(found, mode=ctypes.RTLD_GLOBAL))
            except OSError:
                pass  # NVRTC will say what it misses at its first compile
            return


def _declare(lib) -> None:
    c = ctypes
    prog, pprog, size = c.c_void_p, c.POINTER(c.c_void_p), c.POINTER(c.c_size_t)
    sigs = {
        "nvrtcVersion": [c.POINTER(c.c_int), c.POINTER(c.c_int)],
        "nvrtcCreateProgram": [pprog, c.c_char_p, c.c_char_p, c.c_int, c.POINTER(c.c_char_p),
                               c.POINTER(c.c_char_p)],
        "nvrtcCompileProgram": [prog, c.c_int, c.POINTER(c.c_char_p)],
        "nvrtcGetProgramLogSize": [prog, size],
        "nvrtcGetProgramLog": [prog, c.c_char_p],
        "nvrtcGetCUBINSize": [prog, size],
        "nvrtcGetCUBIN": [prog, c.c_char_p],
        "nvrtcGetPTXSize": [prog, size],
        "nvrtcGetPTX": [prog, c.c_char_p],
        "nvrtcDestroyProgram": [pprog],
        "nvrtcGetNumSupportedArchs": [c.POINTER(c.c_int)],
        "nvrtcGetSupportedArchs": [c.POINTER(c.c_int)],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, c.c_int
    lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [c.c_int], c.c_char_p


def status() -> str | None:
    """None when NVRTC can be used here, else why not (and how to fix it)."""
    _load()
    return _problem


def _nvrtc() -> ctypes.CDLL:
    _load()
    if _lib is None:
        raise BackendError(f"the cuda backend cannot compile kernels: {_problem}")
    return _lib


def _check(code: int, what: str) -> None:
    if code != 0:
        msg = _nvrtc().nvrtcGetErrorString(code)
        raise BackendError(f"NVRTC {what} failed: {msg.decode() if msg else code} (error {code})")


def library_path() -> str | None:
    """Path of the libnvrtc in use (None when unavailable)."""
    _load()
    return _path


def version() -> tuple[int, int]:
    """(major, minor) of the NVRTC in use; BackendError when unavailable."""
    lib = _nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def supported_archs() -> list[int]:
    """Compute capabilities this NVRTC compiles for, e.g. [50, ..., 90, 100, 120]."""
    lib = _nvrtc()
    n = ctypes.c_int()
    _check(lib.nvrtcGetNumSupportedArchs(ctypes.byref(n)), "nvrtcGetNumSupportedArchs")
    archs = (ctypes.c_int * n.value)()
    _check(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
    return list(archs)


def identity() -> str:
    """What identifies the compiler in cache keys: version and library file."""
    major, minor = version()
    path = library_path()
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}"
    except (OSError, TypeError):
        stamp = "?"
    return f"nvrtc {major}.{minor} | {os.path.basename(path or '?')} | {stamp}"


def default_options(arch: str) -> list[str]:
    """NVRTC options of generated kernels (no fast math: see prelude_cuda.h)."""
    return [f"--gpu-architecture={arch}", "-std=c++17", "--device-as-default-execution-space"]


def compile(source: str, arch: str = "sm_90", name: str = "jax_lazy_kernel", options=None,
            source_path: str | Path | None = None) -> bytes:
    """Compile CUDA C++ ``source`` with NVRTC: :func:`compile_with_log` without the log."""
    return compile_with_log(source, arch, name, options, source_path)[0]


def compile_with_log(source: str, arch: str = "sm_90", name: str = "jax_lazy_kernel", options=None,
                     source_path: str | Path | None = None) -> tuple[bytes, str]:
    """Compile CUDA C++ ``source`` with NVRTC: ``(image, NVRTC's log)``.

    Args:
      source: the complete translation unit (no ``#include`` needs resolving).
      arch: ``sm_XX`` (real architecture: returns a cubin, loadable with
        ``cuModuleLoadData`` on devices of that compute capability) or ``compute_XX``
        (virtual: returns PTX text as bytes, JIT-compiled by the driver).
      name: the program's name in messages (and NVRTC's log).
      options: NVRTC options; default :func:`default_options` ``(arch)``.
      source_path: where the caller saved ``source``, quoted in errors.

    Raises:
      BackendError: NVRTC unavailable, or an architecture it does not know.
      CompileError: the source does not compile: the message has the options, NVRTC's
        full log and ``source_path``.
    """
    lib = _nvrtc()
    m = _ARCH.match(arch)
    if not m:
        raise BackendError(f"bad CUDA architecture {arch!r}: expected sm_XX or compute_XX (e.g. sm_90)")
    if int(m.group(2)) not in supported_archs():
        raise BackendError(f"NVRTC {'.'.join(map(str, version()))} cannot compile for {arch}; it supports "
                           f"compute capabilities {supported_archs()}. Install a matching nvidia-cuda-nvrtc")
    opts = default_options(arch) if options is None else [str(o) for o in options]
    prog = ctypes.c_void_p()
    _check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), f"{name}.cu".encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        code = lib.nvrtcCompileProgram(prog, len(opts), argv)
        log = _log(lib, prog)
        if code != 0:
            err = lib.nvrtcGetErrorString(code)
            where = f"\n  source: {source_path}" if source_path else ""
            raise CompileError(
                f"NVRTC failed to compile kernel {name} for {arch} ({err.decode() if err else code})\n"
                f"  options: {' '.join(opts)}{where}\n  NVRTC log:\n{log}",
                command=["nvrtc", *opts], log=log, source_path=source_path)
        real = m.group(1) == "sm"
        get_size, get = (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if real else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
        size = ctypes.c_size_t()
        _check(get_size(prog, ctypes.byref(size)), "getting the binary size")
        buf = ctypes.create_string_buffer(size.value)
        _check(get(prog, buf), "getting the binary")
        return (buf.raw if real else buf.raw.rstrip(b"\0")), log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _log(lib, prog) -> str:
    size = ctypes.c_size_t()
    if lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) != 0 or size.value <= 1:
        return ""
    buf = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, buf)
    return buf.value.decode(errors="replace")
