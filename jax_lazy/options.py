"""The process's settings: one frozen :class:`Options` read from the environment once.

Every ``JAX_LAZY_*`` environment variable is one field of :class:`Options`, declared
once below with its type, default and valid values; :func:`options` reads them all the
first time it is called and returns the same object afterwards (the per-call path only
reads attributes). :func:`reset` reads them again: for tests that change the environment
(``monkeypatch.setenv`` then ``options.reset()``), and for programs that do the same on
purpose. A value that is not valid raises ``OptionError`` (a ``ValueError``) naming the
variable, when the options are read (at ``import jax_lazy``: the plan-cache size is a
decoration-time constant).

Fields whose ``kernel`` metadata is ``"cpu"`` or ``"cuda"`` change the generated code or
the binary of that backend's kernels, and so are part of its kernel keys: as themselves
(:func:`kernel_material`), or through what they select (``via``: the compiler's identity,
the flags actually used). A kernel built under other settings is never reused.

One reader is not Python: the native handler's thread pool reads ``JAX_LAZY_NUM_THREADS``
itself (``xla_ffi/thread_pool.cc``: at first use and whenever ``set_num_threads(0)``
restores the default); :attr:`Options.num_threads` declares and checks it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import threading
from pathlib import Path
from typing import Callable

from .errors import JaxLazyError


class OptionError(JaxLazyError, ValueError):
    """An environment variable of jax_lazy with a value it cannot take."""


# ---------------------------------------------------------------- value parsers
# Each takes the variable's name and its raw value ("" when unset) and returns the field's value.

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _flag(default: bool) -> Callable[[str, str], bool]:
    def parse(var: str, raw: str) -> bool:
        value = raw.strip().lower()
        if not value:
            return default
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        raise OptionError(f"${var}={raw!r}: expected 1 or 0 (also true/false, yes/no, on/off)")
    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(var: str, raw: str) -> str:
        value = raw.strip() or allowed[0]
        if value not in allowed:
            raise OptionError(f"${var}={raw!r}: expected one of {', '.join(allowed)} (default {allowed[0]})")
        return value
    return parse


def _count(default: int, least: int) -> Callable[[str, str], int]:
    def parse(var: str, raw: str) -> int:
        if not raw.strip():
            return default
        try:
            value = int(raw)
        except ValueError:
            value = least - 1
        if value < least:
            raise OptionError(f"${var}={raw!r}: expected an integer >= {least} (default {default})")
        return value
    return parse


def _path(var: str, raw: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _text(var: str, raw: str) -> str:
    return raw.strip()


def _words(var: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise OptionError(f"${var}={raw!r} cannot be split into arguments ({exc})") from None


def _field(env: str, parse: Callable, default, doc: str, kernel: str | None = None, via: str | None = None,
           fallback: str | None = None):
    """A field of :class:`Options` read from ``$env`` (else ``$fallback``, a variable of other
    tools) with ``parse``. ``kernel`` names the backend whose kernels it changes; ``via``
    says how it enters their keys when not as itself ("compiler": through the compiler's
    identity, "flags": through the flags)."""
    return dataclasses.field(default=default, metadata={"env": env, "parse": parse, "doc": doc, "kernel": kernel,
                                                        "via": via, "fallback": fallback})


@dataclasses.dataclass(frozen=True)
class Options:
    """jax_lazy's settings, one field per environment variable (``metadata["env"]``)."""

    cache_dir: Path | None = _field(
        "JAX_LAZY_CACHE_DIR", _path, None,
        "directory of the kernel cache (default: the platform's user cache directory, "
        "platformdirs.user_cache_dir('jax_lazy')); `~` is expanded")
    cxx: str = _field(
        "JAX_LAZY_CXX", _text, "",
        "the C++ compiler of the cpu backend, a path or a command with arguments (default: $CXX, "
        "else c++, g++ or clang++ on PATH); one that cannot run makes the cpu backend unavailable, "
        "with the reason", kernel="cpu", via="compiler", fallback="CXX")
    cxx_var: str = dataclasses.field(default="", metadata={"env": None})  # where cxx came from, for messages
    cxxflags: tuple[str, ...] = _field(
        "JAX_LAZY_CXXFLAGS", _words, (),
        "flags appended to the cpu kernels' `-O3 -march=native -std=c++17 -shared -fPIC "
        "-fno-math-errno -fopenmp-simd` (shell-split; later flags win)", kernel="cpu", via="flags")
    nvrtc: str = _field(
        "JAX_LAZY_NVRTC", _text, "",
        "path of the libnvrtc.so* of the cuda backend (default: the pip wheels', then the CUDA "
        "toolkit's)", kernel="cuda", via="compiler")
    cuda_inner: str = _field(
        "JAX_LAZY_CUDA_INNER", _choice("mma", "fma", "off"), "mma",
        "the cuda inner-product stage: mma (tensor cores where they apply, else register tiles), "
        "fma (register tiles only) or off (no stage)", kernel="cuda")
    cuda_tf32: bool = _field(
        "JAX_LAZY_CUDA_TF32", _flag(False), False,
        "1: plain TF32 for float32 dot products on tensor cores (one mma instead of 3xTF32; "
        "relative error ~1e-3 per product)", kernel="cuda")
    cuda_sqdist: str = _field(
        "JAX_LAZY_CUDA_SQDIST", _choice("fma", "mma"), "fma",
        "fma: squared distances summed as written on register tiles; mma: |x|^2 + |y|^2 - 2<x, y> "
        "on tensor cores with a cancellation guard", kernel="cuda")
    cuda_tune: bool = _field(
        "JAX_LAZY_CUDA_TUNE", _flag(True), True,
        "1: measure the launch configurations of each cuda kernel once per device and keep the "
        "fastest (remembered in the kernel cache); 0: the heuristic default")
    num_threads: int = _field(
        "JAX_LAZY_NUM_THREADS", _count(0, 0), 0,
        "threads of the cpu kernels; 0: the hardware concurrency (read by the native handler)")
    plan_cache: int = _field(
        "JAX_LAZY_PLAN_CACHE", _count(64, 1), 64,
        "plans whose compiled functions are kept, least recently used dropped first")
    dump: bool = _field(
        "JAX_LAZY_DUMP", _flag(False), False,
        "1: print each new plan, the paths of generated sources and binaries and the measured "
        "launch choices to stderr")

    @classmethod
    def from_environ(cls, environ=None) -> "Options":
        """The options that ``environ`` (default ``os.environ``) sets.

        Raises:
          OptionError: a variable with a value it cannot take (the message names it).
        """
        environ = os.environ if environ is None else environ
        values = {}
        for f in _env_fields():
            var, fallback = f.metadata["env"], f.metadata["fallback"]
            raw = environ.get(var, "")
            if not raw.strip() and fallback:
                var, raw = fallback, environ.get(fallback, "")
            values[f.name] = f.metadata["parse"](var, raw)
            if fallback:
                values[f"{f.name}_var"] = var if raw.strip() else ""
        return cls(**values)


def _env_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Options) if f.metadata["env"]]


def variables() -> dict[str, dataclasses.Field]:
    """Environment variable -> its field of :class:`Options`."""
    return {f.metadata["env"]: f for f in _env_fields()}


_lock = threading.Lock()
_current: Options | None = None


def options() -> Options:
    """The process's options, read from the environment at the first call (then cached).

    Raises:
      OptionError: a ``JAX_LAZY_*`` variable with a value it cannot take.
    """
    global _current
    current = _current
    if current is None:
        with _lock:
            current = _current = _current or Options.from_environ()
    return current


def reset() -> Options:
    """Read the environment again (after a change to it) and return the new options.
    Memoised work done under the old ones stays memoised: kernels are keyed by the options
    that change them (:func:`kernel_material`), other tables by what they read."""
    global _current
    with _lock:
        _current = None
    return options()


def kernel_material(kind: str) -> dict:
    """The options that change the source or the binary of ``kind``'s ("cpu", "cuda")
    kernels, by variable name: part of their kernel keys."""
    opts = options()
    return {f.metadata["env"]: getattr(opts, f.name) for f in _env_fields()
            if f.metadata["kernel"] == kind and f.metadata["via"] is None}
