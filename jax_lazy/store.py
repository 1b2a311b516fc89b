"""The kernel cache on disk: a content-addressed, process-safe store of artefacts by key.

An artefact is a compiled library (``.so``), a CUDA image (``.cubin`` / ``.ptx``) or a
record (a tuning choice, ``.tune.json``), filed under a key (64 hex digits) that its
producer computes from everything the artefact depends on (:mod:`jax_lazy.compilers`,
:mod:`jax_lazy.backends.tuning`). Layout under :func:`cache_dir`
(``JAX_LAZY_CACHE_DIR``, else the user cache directory)::

    <key[:2]>/<key>.<ext>     the artefact (so, cubin, ptx), moved into place whole (os.replace)
    <key[:2]>/<key>.json      its manifest, written (atomically) after it; the entry is valid
                              only if both exist and the manifest names the key and the
                              artefact's size and sha256 (:func:`write_manifest`, :func:`valid`)
    <key[:2]>/<key>.cpp/.cu   the source it was built from (kept, also after a failed build)
    <key[:2]>/<key>.lock      file lock serialising the build of that key across processes
    <key[:2]>/<key>.tune.json a record: JSON written atomically, no manifest
    <skey[:2]>/<skey>.any     an alias: the key of another entry (:func:`point_alias`)

A cache directory that cannot be written (read-only, a file, a path that cannot be
created) is still read; new entries go to a temporary directory of the process
(:func:`write_dir`), removed at exit, with one warning saying to set
``JAX_LAZY_CACHE_DIR``. Temporary files that a killed process leaves (``.<key>.*.tmp*``)
are deleted by the next build of that key (:func:`remove_leftovers`, under its lock).

This process remembers what it found (:func:`recall`, :func:`remember`: valid paths,
images, loaded kernels, records) until :func:`clear_cache`.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import filelock
import platformdirs

from . import memo
from .errors import BackendError
from .options import options

MANIFEST_FORMAT = 1
KEY_RE = re.compile(r"[0-9a-f]{64}")
_ENTRY_RE = re.compile(r"^\.?[0-9a-f]{64}[.]")
_SHARD_RE = re.compile(r"^[0-9a-f]{2}$")

_lock = threading.RLock()
_key_locks: dict[tuple[str, str], threading.RLock] = {}
# (cache dir, key, what) -> what this process found or made for that entry.
_memo: dict[tuple[str, str, str], object] = {}
# cache dir that cannot be written -> this process's temporary cache, used in its place.
_temporary: dict[str, Path] = {}


# --------------------------------------------------------------------------- directories

def cache_dir() -> Path:
    """The cache directory: ``JAX_LAZY_CACHE_DIR``, else ``platformdirs.user_cache_dir
    ("jax_lazy")``; created if missing and possible (one that cannot be created or
    written is still searched; new entries then go to a temporary directory)."""
    path = options().cache_dir or Path(platformdirs.user_cache_dir("jax_lazy"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # write_dir says why, if an entry has to be written
    return path


def write_dir(directory: Path, shard: str) -> Path:
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
    unlink(Path(probe))
    return None


def path(directory: Path, key: str, ext: str) -> Path:
    """The file of ``key``'s entry with extension ``ext`` ("so", "json", "lock"...)."""
    return directory / key[:2] / f"{key}.{ext}"


# --------------------------------------------------------------------------- locks and files

def slot(key: str, directory: Path | None = None) -> tuple[str, str]:
    """(cache dir, key): what this process's locks and memo are keyed by."""
    return str(directory or cache_dir()), key


def key_lock(at: tuple[str, str]) -> threading.RLock:
    """This process's lock of the entry ``at`` (a :func:`slot`)."""
    with _lock:
        return _key_locks.setdefault(at, threading.RLock())


def file_lock(directory: Path, key: str) -> filelock.FileLock:
    """The lock file of ``key`` in ``directory``: held while its entry is built."""
    return filelock.FileLock(str(path(directory, key, "lock")))


def atomic_write(target: Path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file beside ``target``, then rename it onto ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if isinstance(data, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        unlink(Path(tmp))
        raise


def unlink(target: Path) -> None:
    try:
        target.unlink()
    except FileNotFoundError:
        pass


def stat_id(target: Path):
    """(inode, size, mtime_ns) of ``target``, or None if it does not exist."""
    try:
        st = target.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def remove_leftovers(shard: Path, key: str) -> None:
    """Delete the temporary files of ``key`` (``.<key>.*.tmp*``) that a killed process
    left. Called under the key's file lock: no live process is writing them."""
    for leftover in shard.glob(f".{key}.*.tmp*"):
        unlink(leftover)


def sha256_file(target: Path) -> str:
    h = hashlib.sha256()
    with open(target, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- manifests

def write_manifest(directory: Path, key: str, ext: str, name: str, **meta) -> None:
    """Write the manifest of ``key``'s artefact ``ext`` (already in place): format, key,
    name, size, sha256 and ``meta`` (compiler, flags, compile time...). Written last: it
    makes the entry valid."""
    artefact = path(directory, key, ext)
    manifest = {"format": MANIFEST_FORMAT, "key": key, "name": name, "size": artefact.stat().st_size,
                "sha256": sha256_file(artefact), **meta}
    atomic_write(path(directory, key, "json"), json.dumps(manifest, indent=1))


def _manifest(directory: Path, key: str) -> dict | None:
    try:
        manifest = json.loads(path(directory, key, "json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and manifest.get("key") == key
    return manifest if ok else None


def _matches(manifest: dict, size: int, sha256) -> bool:
    """Whether ``manifest`` names this size and sha256 (``sha256`` a callable, run only when
    the size matches). Libraries of jax_lazy <= 0.1.0 (before the store) wrote
    ``so_size`` / ``so_sha256``: still read."""
    legacy = "size" not in manifest
    want = manifest.get("so_size" if legacy else "size")
    return want == size and manifest.get("so_sha256" if legacy else "sha256") == sha256()


def valid(directory: Path, key: str, ext: str) -> bool:
    """Whether ``key``'s artefact ``ext`` exists and its manifest, written after it, matches it."""
    manifest, artefact = _manifest(directory, key), path(directory, key, ext)
    try:
        return manifest is not None and _matches(manifest, artefact.stat().st_size, lambda: sha256_file(artefact))
    except OSError:
        return False


def valid_bytes(directory: Path, key: str, ext: str) -> bytes | None:
    """The bytes of ``key``'s artefact ``ext`` when :func:`valid` (read once), else None."""
    manifest = _manifest(directory, key)
    try:
        data = path(directory, key, ext).read_bytes() if manifest else None
    except OSError:
        return None
    ok = data is not None and _matches(manifest, len(data), lambda: hashlib.sha256(data).hexdigest())
    return data if ok else None


# --------------------------------------------------------------------------- aliases and records

def read_alias(directory: Path, skey: str) -> str | None:
    """The key that the alias ``skey`` points at, if any."""
    try:
        key = path(directory, skey, "any").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key if KEY_RE.fullmatch(key) else None


def point_alias(directory: Path, skey: str, key: str) -> None:
    """Point the alias ``skey`` at ``key`` (best effort: a read-only cache keeps the aliases
    it has)."""
    if read_alias(directory, skey) == key:
        return
    target = path(directory, skey, "any")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, key)
    except OSError:
        pass


def read_record(key: str, ext: str) -> dict | None:
    """The record ``<key>.<ext>`` (a JSON object): this process's, else the cache's."""
    at = slot(key)
    if (found := recall(at, ext)) is not None:
        return found
    try:
        record = json.loads(path(cache_dir(), key, ext).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return remember(at, ext, record) if isinstance(record, dict) else None


def write_record(key: str, ext: str, record: dict) -> None:
    """Keep ``record`` as ``<key>.<ext>``: in this process, and in the cache when it can be
    written (a read-only cache costs the record's work once per process, nothing else)."""
    remember(slot(key), ext, record)
    target = path(cache_dir(), key, ext)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps(record, indent=1))
    except OSError:
        pass


# --------------------------------------------------------------------------- this process's memo

def recall(at: tuple[str, str], what: str):
    """What this process remembered of entry ``at`` under ``what``, or None."""
    return _memo.get((*at, what))


def remember(at: tuple[str, str], what: str, value):
    """Remember ``value`` of entry ``at`` under ``what`` (until :func:`clear_cache`); returns it."""
    _memo[(*at, what)] = value
    return value


def forget(what: str | None = None, directory: Path | None = None) -> None:
    """Forget what this process remembered (of kind ``what`` only, in ``directory`` only, when
    given); the entries on disk stay."""
    with _lock:
        for k in [k for k in _memo if (what is None or k[2] == what) and (directory is None or k[0] == str(directory))]:
            del _memo[k]


def clear_cache() -> None:
    """Delete every cache entry (sources, libraries, images, manifests, records, locks,
    leftovers) under :func:`cache_dir` (and this process's temporary cache standing in for
    it) and forget this process's in-memory entries, the memoised plans included
    (:func:`jax_lazy.memo.clear`: their jitted functions and XLA executables are freed and
    the heap handed back to the OS). Libraries already loaded stay loaded (their kernel
    keys remain valid). Do not call it while another process compiles into the same
    directory. Other files in the directory are kept.

    Raises:
      BackendError: some entries cannot be deleted (a read-only cache); the others are.
    """
    memo.clear()
    directory = cache_dir()
    with _lock:
        forget(directory=directory)
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
                    unlink(entry)
                except OSError as exc:
                    failed.append(f"{entry}: {exc.strerror or exc}")
        try:
            shard.rmdir()
        except OSError:
            pass  # not empty: foreign files
    return failed


# --------------------------------------------------------------------------- kernels by key

def find(kind: str, key: str) -> Path | bytes:
    """The valid artefact of kernel ``key`` in :func:`cache_dir`, found by its key alone: the
    library's path (``kind`` "cpu") or the CUDA image's bytes ("cuda"). This is how a
    module exported by ``jax.export`` finds its kernels in another process.

    Raises:
      BackendError: ``key`` is not a key, or no valid entry for it in the cache directory.
    """
    if not KEY_RE.fullmatch(key):
        raise BackendError(f"{key!r} is not a kernel key (64 hex digits)")
    directory = cache_dir()
    if kind == "cpu" and valid(directory, key, "so"):
        return path(directory, key, "so")
    for ext in ("cubin", "ptx") if kind != "cpu" else ():
        image = valid_bytes(directory, key, ext)
        if image is not None:
            return image
    raise BackendError(f"kernel {key} is not in the kernel cache {directory}. A module exported with "
                       f"jax.export runs where its kernels are cached: run the exporting code once with "
                       f"this JAX_LAZY_CACHE_DIR, or copy the exporter's cache entries "
                       f"({key[:2]}/{key}.*) into it")
