"""The CUDA XLA FFI handler ``jax_lazy_cuda`` (xla_ffi/cuda_handler.cc) and its glue
(jax_lazy/backends/cuda_ffi.py).

Without a GPU:
- the native entry points, the driver status (a clear reason when there is no driver),
  the CUDA kernel registry;
- the custom call lowered for the CUDA platform on a CPU jaxlib (attributes in StableHLO);
- the handler's own checks and its packing of ``jl_cuda_args``, through its dry-run twin
  registered for the CPU: the packed struct is replayed in NumPy against the addressing
  rule of cuda_abi.h (input k of batch element b at ``sum_d index_d(b) * in_bstride[k][d]``)
  over broadcast patterns and vmapped axes;
- the hand-written PTX test kernel assembles (``ptxas``, when installed).

With a GPU (driver, device and a jax CUDA backend), else skipped with the reason: that PTX
kernel, which copies input 0 to output 0 through ``jl_cuda_args``, run through the
handler with broadcast and vmap, and the handler's driver-side errors.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_lazy import _native_loader
from jax_lazy.backends import cuda_ffi
from jax_lazy.errors import ShapeError

I, J, P = 0, 1, 2
native = _native_loader.load_native()
pytestmark = pytest.mark.skipif(native is None or not hasattr(native, "cuda_handler"),
                                reason="jax_lazy._native without the CUDA handler")


@pytest.fixture
def on_cpu():
    """The dry-run target exists for the CPU only (GPU machines default to the GPU)."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield


def f32(seed, *shape):
    return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype(np.float32)


# ---------------------------------------------------------------- native entry points


def test_entry_points():
    for name in ("cuda_handler", "cuda_dry_run_handler", "register_cuda_kernel",
                 "unregister_cuda_kernel", "cuda_status", "cuda_device_count"):
        assert hasattr(native, name), name
    assert type(native.cuda_handler()).__name__ == "PyCapsule"
    assert native.health()["cuda_handler"] is True


def test_driver_status_gives_a_reason():
    status = native.cuda_status()
    assert isinstance(status, str)
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        assert status.startswith("libcuda.so.1 not found: "), status
        assert native.cuda_driver_version() == 0
    if status:
        assert native.cuda_device_count() == 0
        assert status in cuda_ffi.available()
    else:
        assert native.cuda_device_count() >= 1 and native.cuda_driver_version() > 0


def test_registry_keys():
    before = native.registered_cuda_kernels()
    keys = [f"{k:064x}" for k in range(3)]
    assert [cuda_ffi.load_kernel(b"// not loaded before a launch\n", k) for k in keys] == keys
    native.register_cuda_kernel(b"\x7fELF...", "e" * 64, "other_entry")
    assert cuda_ffi.load_kernel(b"again", keys[0]) == keys[0]  # a key keeps its first image
    assert native.registered_cuda_kernels() == before + 4
    assert cuda_ffi.unload_kernel(keys[0]) is True
    assert cuda_ffi.unload_kernel(keys[0]) is False
    for key in keys[1:] + ["e" * 64]:
        assert native.unregister_cuda_kernel(key)
    with pytest.raises(ValueError, match="empty image"):
        cuda_ffi.load_kernel(b"", "a" * 64)
    with pytest.raises(ValueError, match="empty kernel key"):
        cuda_ffi.load_kernel(b"x", "")
    with pytest.raises(ValueError, match="empty entry name"):
        cuda_ffi.load_kernel(b"x", "a" * 64, name="")


def test_abi_mirror_matches_compiled_struct():
    c = cuda_ffi.abi_constants()
    assert c["MAX_INPUTS"] >= 1 and c["MAX_OUTPUTS"] >= 1 and c["MAX_BATCH"] >= 1
    assert c["MAX_GRID_Y"] == 65535
    assert cuda_ffi.args_dtype().itemsize == native.cuda_args_size()
    assert native.cuda_args_size() <= 4096  # kernel parameter limit


# ---------------------------------------------------------------- lowering for CUDA


def test_lowered_for_cuda_platform():
    x, y, p = f32(0, 2, 1, 5, 3), f32(1, 4, 7, 3), f32(2, 3)
    out = [jax.ShapeDtypeStruct((2, 4, 5, 1), jnp.float32),
           jax.ShapeDtypeStruct((2, 4, 5, 2), jnp.int32)]

    def f(x, y, p):
        return cuda_ffi.call("7" * 64, (x, y, p), (I, J, P), out, (2, 4), 5, 7,
                             rows_per_block=4, block_threads=32, shared_bytes=50000)

    text = jax.jit(f).trace(x, y, p).lower(lowering_platforms=("cuda",)).as_text()
    (line,) = [ln for ln in text.splitlines() if "stablehlo.custom_call @jax_lazy_cuda" in ln]
    for attr in (f'kernel_key = "{"7" * 64}"', "M = 5 : i64", "N = 7 : i64",
                 "batch = dense<[2, 4]> : tensor<2xi64>",
                 "in_batch = dense<[2, 1, 1, 4, 1, 1]> : tensor<6xi64>",
                 "rows_per_block = 4 : i64", "block_threads = 32 : i64",
                 "shared_bytes = 50000 : i64"):
        assert attr in line, (attr, line)
    assert "-> (tensor<2x4x5x1xf32>, tensor<2x4x5x2xi32>)" in line

    # vmap (broadcast_all): every operand and result gets the leading axis, the
    # attributes stay those of one call.
    vf = jax.vmap(f, in_axes=(0, None, None))
    text = jax.jit(vf).trace(np.stack([x] * 3), y, p).lower(lowering_platforms=("cuda",)).as_text()
    (line,) = [ln for ln in text.splitlines() if "stablehlo.custom_call @jax_lazy_cuda" in ln]
    assert "batch = dense<[2, 4]>" in line and "in_batch = dense<[2, 1, 1, 4, 1, 1]>" in line
    assert "(tensor<3x2x1x5x3xf32>, tensor<3x4x7x3xf32>, tensor<3x3xf32>)" in line


@pytest.mark.skipif(bool(jax.devices()[0].platform == "gpu"), reason="checks the CPU-only error")
def test_cuda_call_on_cpu_is_a_clean_error():
    x = f32(0, 5, 3)
    with pytest.raises(jax.errors.JaxRuntimeError, match="jax_lazy_cuda"):
        cuda_ffi.call(1, (x,), (I,), [jax.ShapeDtypeStruct((5, 1), jnp.float32)], (), 5, 5, 1, 32)


# ---------------------------------------------------------------- packing (dry run)


def replay(args, arrays, cats, out_shapes, extra=0):
    """Checks the packed ``args`` against cuda_abi.h's contract, reading each input's
    per-batch slice from its flat buffer at the offsets the struct gives. ``extra``: the
    number of leading vmapped axes, which every array has in full."""
    nb = int(args["nb"])
    dims = tuple(int(d) for d in args["bdims"][:nb])
    assert int(args["nbatch"]) == math.prod(dims)
    assert int(args["nin"]) == len(arrays)
    assert (args["bdims"][nb:] == 0).all()
    for k, shape in enumerate(out_shapes):
        assert tuple(shape[:-2]) == dims
        assert int(args["out_bstride"][k]) == shape[-2] * shape[-1]
        assert args["out"][k] != 0
    for k, (a, cat) in enumerate(zip(arrays, cats)):
        a = np.asarray(a)
        assert args["in"][k] != 0
        ns = 1 if cat == P else 2
        own = a.shape[:-ns]
        padded = own[:extra] + (1,) * (nb - len(own)) + own[extra:]
        full = np.broadcast_to(a.reshape(padded + a.shape[-ns:]), dims + a.shape[-ns:])
        flat, size = a.ravel(), math.prod(a.shape[-ns:])
        stride = args["in_bstride"][k]
        assert (stride[nb:] == 0).all()
        for idx in np.ndindex(*dims):
            off = int(np.dot(idx, stride[:nb])) if nb else 0
            np.testing.assert_array_equal(flat[off:off + size], full[idx].ravel())


# (name, [(shape, cat, dtype)], batch, M, N, output widths)
PACK_CASES = [
    ("no batch", [((5, 3), I, np.float32), ((7, 3), J, np.float32), ((3,), P, np.float32)],
     (), 5, 7, (1,)),
    ("broadcast", [((2, 1, 5, 3), I, np.float32), ((4, 7, 3), J, np.float32), ((3,), P, np.float32)],
     (2, 4), 5, 7, (1, 2)),
    ("full batch", [((2, 3, 4, 2), I, np.float32), ((2, 3, 6, 2), J, np.int32)], (2, 3), 4, 6, (3,)),
    ("transposed j", [((3, 5, 2), I, np.float32), ((1, 2, 7), J, np.float32)], (3,), 5, 7, (1,)),
    ("parameter batch", [((6, 1), I, np.float32), ((2, 1, 4), P, np.float32)], (2, 3), 6, 1, (4,)),
    ("six axes", [((2, 1, 2, 1, 2, 1, 3, 1), I, np.float32), ((1, 2, 1, 2, 1, 2, 4, 1), J, np.float32)],
     (2, 2, 2, 2, 2, 2), 3, 4, (1,)),
    ("empty batch", [((0, 5, 3), I, np.float32), ((7, 3), J, np.float32)], (0,), 5, 7, (1,)),
    ("M = 0", [((2, 0, 3), I, np.float32), ((2, 7, 3), J, np.float32)], (2,), 0, 7, (1,)),
    # a block-sparse call: the int32 ranges table after the variables, as a parameter
    ("ranges table", [((2, 1, 5, 3), I, np.float32), ((7, 3), J, np.float32), ((3, 30), P, np.int32)],
     (2, 3), 5, 7, (1,)),
]


@pytest.mark.parametrize("name, inputs, batch, M, N, widths", PACK_CASES, ids=[c[0] for c in PACK_CASES])
def test_packing(on_cpu, name, inputs, batch, M, N, widths):
    arrays = [(np.arange(math.prod(s)) % 97).astype(dt).reshape(s) for s, _, dt in inputs]
    cats = [c for _, c, _ in inputs]
    out_types = [jax.ShapeDtypeStruct(batch + (M, w), np.float32) for w in widths]
    args = cuda_ffi.decode_args(cuda_ffi.dry_run(arrays, cats, out_types, batch, M, N))
    assert (int(args["M"]), int(args["N"])) == (M, N)
    if math.prod(batch) == 0:
        assert int(args["nbatch"]) == 0
        return
    replay(args, arrays, cats, [t.shape for t in out_types])


@pytest.mark.parametrize("in_axes", [(0, None), (None, 0), (0, 0)])
def test_packing_under_vmap(on_cpu, in_axes):
    x, y = f32(0, 2, 1, 5, 3), f32(1, 4, 7, 3)
    vx, vy = np.stack([x + i for i in range(3)]), np.stack([y - i for i in range(3)])
    out = [jax.ShapeDtypeStruct((2, 4, 5, 1), jnp.float32)]

    def f(x, y):
        return cuda_ffi.dry_run((x, y), (I, J), out, (2, 4), 5, 7)

    xs = vx if in_axes[0] == 0 else x
    ys = vy if in_axes[1] == 0 else y
    args = cuda_ffi.decode_args(jax.jit(jax.vmap(f, in_axes=in_axes))(xs, ys))
    assert args.shape == (3,) and (args == args[0]).all()
    # broadcast_all materialises the unmapped operand with the vmapped axis.
    seen = [np.broadcast_to(a, (3,) + a.shape) if ax is None else va
            for a, va, ax in zip((x, y), (vx, vy), in_axes)]
    replay(args[0], seen, (I, J), [(3, 2, 4, 5, 1)], extra=1)


def test_packing_nested_vmap(on_cpu):
    x, y = f32(0, 2, 3, 5, 3), f32(1, 7, 3)
    out = [jax.ShapeDtypeStruct((5, 1), jnp.float32)]

    def f(x):
        return cuda_ffi.dry_run((x, y), (I, J), out, (), 5, 7)

    args = cuda_ffi.decode_args(jax.vmap(jax.vmap(f))(x))
    assert args.shape == (2, 3)
    replay(args[0, 0], [x, np.broadcast_to(y, (2, 3, 7, 3))], (I, J), [(2, 3, 5, 1)], extra=2)


def test_too_many_axes_with_vmap(on_cpu):
    nb = cuda_ffi.abi_constants()["MAX_BATCH"]
    batch = (1,) * nb
    x = f32(0, 2, *batch, 5, 3)
    out = [jax.ShapeDtypeStruct(batch + (5, 1), jnp.float32)]
    f = jax.vmap(lambda x: cuda_ffi.dry_run((x,), (I,), out, batch, 5, 5))
    with pytest.raises(jax.errors.JaxRuntimeError, match=f"exceed JL_MAX_BATCH = {nb}"):
        np.asarray(f(x))


def test_python_side_checks():
    x, y = f32(0, 5, 3), f32(1, 7, 3)
    out = [jax.ShapeDtypeStruct((5, 1), jnp.float32)]
    c = cuda_ffi.abi_constants()
    with pytest.raises(ValueError, match="inputs"):
        cuda_ffi.call(1, [x] * (c["MAX_INPUTS"] + 1), [I] * (c["MAX_INPUTS"] + 1), out, (), 5, 7, 1, 32)
    with pytest.raises(ValueError, match="outputs"):
        cuda_ffi.call(1, (x,), (I,), out * (c["MAX_OUTPUTS"] + 1), (), 5, 7, 1, 32)
    with pytest.raises(ValueError, match="block_threads"):
        cuda_ffi.call(1, (x,), (I,), out, (), 5, 7, 1, 2048)
    with pytest.raises(ShapeError, match="does not broadcast"):
        cuda_ffi.call(1, (f32(0, 2, 5, 3), f32(1, 3, 7, 3)), (I, J), out, (2,), 5, 7, 1, 32)
    with pytest.raises(ShapeError, match="output 0"):
        cuda_ffi.call(1, (x, y), (I, J), [jax.ShapeDtypeStruct((4, 1), jnp.float32)], (), 5, 7, 1, 32)


def raw_dry_run(arrays, out_shapes, **overrides):
    """The dry-run target called directly: the handler's checks without Python's."""
    cuda_ffi._register(cuda_ffi.DRY_RUN_TARGET)
    attrs = dict(kernel_key="1" * 64, M=np.int64(5), N=np.int64(7), batch=np.zeros(0, np.int64),
                 in_batch=np.zeros(0, np.int64), rows_per_block=np.int64(1),
                 block_threads=np.int64(32), shared_bytes=np.int64(0))
    attrs.update({k: np.asarray(v, np.int64) if isinstance(v, list) else np.int64(v)
                  for k, v in overrides.items()})
    outs = [jax.ShapeDtypeStruct(s, np.float32) for s in out_shapes]
    dump = jax.ShapeDtypeStruct((cuda_ffi.args_dtype().itemsize,), np.uint8)
    return np.asarray(jax.ffi.ffi_call(cuda_ffi.DRY_RUN_TARGET, [*outs, dump])(*arrays, **attrs)[-1])


# (what, arrays, output shapes, attribute overrides, message)
HANDLER_ERRORS = [
    ("negative M", [(5, 3)], [(5, 1)], dict(M=-1), "M and N must be >= 0"),
    ("rows_per_block", [(5, 3)], [(5, 1)], dict(rows_per_block=0), "rows_per_block must be >= 1"),
    ("block_threads", [(5, 3)], [(5, 1)], dict(block_threads=1025), r"block_threads must be in \[1, 1024\]"),
    ("shared_bytes", [(5, 3)], [(5, 1)], dict(shared_bytes=-1), "shared_bytes must be in"),
    ("grid x", [(5, 3)], [(5, 1)], dict(M=2**40, N=1), "exceeds the grid's x limit"),
    ("no outputs", [(5, 3)], [], {}, "the call has 0 outputs"),
    ("three outputs", [(5, 3)], [(5, 1)] * 3, {}, "the call has 3 outputs, expected 1 to 2"),
    ("output rows", [(5, 3)], [(4, 1)], {}, r"output 0 has shape \(4, 1\)"),
    ("output batch", [(2, 5, 3)], [(2, 5, 1), (3, 5, 1)], dict(batch=[2], in_batch=[2]),
     r"output 1 has shape \(3, 5, 1\)"),
    ("in_batch length", [(2, 5, 3)], [(2, 5, 1)], dict(batch=[2], in_batch=[2, 2]),
     "in_batch has 2 entries, expected nin"),
    ("in_batch broadcast", [(3, 5, 3)], [(2, 5, 1)], dict(batch=[2], in_batch=[3]),
     "does not broadcast to batch"),
    ("input size", [(7,)], [(2, 5, 1)], dict(batch=[2], in_batch=[2]), "not a multiple of its batch size"),
    ("too many inputs", [(1,)] * 33, [(5, 1)], {}, "33 inputs, at most 32"),
]


@pytest.mark.parametrize("what, shapes, out_shapes, overrides, message", HANDLER_ERRORS,
                         ids=[e[0] for e in HANDLER_ERRORS])
def test_handler_checks(on_cpu, what, shapes, out_shapes, overrides, message):
    arrays = [np.zeros(s, np.float32) for s in shapes]
    with pytest.raises(jax.errors.JaxRuntimeError, match="jax_lazy_cuda: .*" + message):
        raw_dry_run(arrays, out_shapes, **overrides)


# ---------------------------------------------------------------- on a GPU

# Copies input 0 to output 0 (float32, rows of width W = out_bstride[0] / M), one block
# per row (rows_per_block = 1), columns strided by the block's threads, batch elements
# b = blockIdx.y, blockIdx.y + gridDim.y, ...; input 0 of batch element b at
# sum_d index_d(b) * in_bstride[0][d], with index_d(b) unravelled over bdims[0..nb).
# Byte offsets in jl_cuda_args (LP64, JL_MAX_INPUTS 32, JL_MAX_OUTPUTS 2, JL_MAX_BATCH 6):
# in 0, out 256, M 272, N 280, nbatch 288, nb 296, nin 300, bdims 304, in_bstride 352,
# out_bstride 1888; 1904 in all (test_copy_ptx_offsets checks them against the mirror).
COPY_KEY = "c0" * 32  # the key the copy kernel carries (its jax_lazy_kernel_key, below)

COPY_PTX = """\
.version 7.0
.target sm_52
.address_size 64

.visible .global .align 1 .b8 jax_lazy_kernel_key[65] = {@KEY@, 0};

.visible .entry jax_lazy_kernel(.param .align 8 .b8 a[1904])
{
  .reg .pred %p<4>;
  .reg .b32 %r<8>;
  .reg .b64 %rd<32>;
  .reg .f32 %f<2>;

  ld.param.u64 %rd1, [a+0];          // in[0]
  ld.param.u64 %rd2, [a+256];        // out[0]
  ld.param.u64 %rd3, [a+272];        // M
  ld.param.u64 %rd4, [a+288];        // nbatch
  ld.param.u32 %r1, [a+296];         // nb
  ld.param.u64 %rd5, [a+1888];       // out_bstride[0] = M * W
  div.s64 %rd6, %rd5, %rd3;          // W
  cvta.to.global.u64 %rd1, %rd1;
  cvta.to.global.u64 %rd2, %rd2;
  mov.u32 %r2, %ctaid.x;
  cvt.u64.u32 %rd7, %r2;             // row i
  mov.u32 %r3, %ctaid.y;
  cvt.u64.u32 %rd8, %r3;             // batch element b
  mov.u32 %r4, %nctaid.y;
  cvt.u64.u32 %rd9, %r4;             // b step
  mov.u32 %r5, %tid.x;
  cvt.u64.u32 %rd10, %r5;            // first column
  mov.u32 %r6, %ntid.x;
  cvt.u64.u32 %rd11, %r6;            // column step
  mul.lo.s64 %rd12, %rd7, %rd6;      // i * W
  mov.u64 %rd20, a;                  // the struct, in the param space
BATCH:
  setp.ge.s64 %p1, %rd8, %rd4;
  @%p1 bra DONE;
  mov.u64 %rd13, %rd8;               // rest of b to unravel
  mov.u64 %rd14, 0;                  // element offset of input 0
  mov.u32 %r7, %r1;                  // d + 1, from nb down
AXIS:
  setp.eq.u32 %p2, %r7, 0;
  @%p2 bra COPY;
  sub.u32 %r7, %r7, 1;
  mul.wide.u32 %rd15, %r7, 8;
  add.s64 %rd16, %rd20, %rd15;
  ld.param.u64 %rd17, [%rd16+304];   // bdims[d]
  ld.param.u64 %rd18, [%rd16+352];   // in_bstride[0][d]
  rem.u64 %rd19, %rd13, %rd17;
  div.u64 %rd13, %rd13, %rd17;
  mad.lo.s64 %rd14, %rd19, %rd18, %rd14;
  bra AXIS;
COPY:
  add.s64 %rd21, %rd14, %rd12;       // input element (b, i, 0)
  mad.lo.s64 %rd22, %rd8, %rd5, %rd12;  // output element (b, i, 0)
  mov.u64 %rd23, %rd10;
COL:
  setp.ge.s64 %p3, %rd23, %rd6;
  @%p3 bra NEXT;
  add.s64 %rd24, %rd21, %rd23;
  shl.b64 %rd24, %rd24, 2;
  add.s64 %rd24, %rd1, %rd24;
  ld.global.f32 %f1, [%rd24];
  add.s64 %rd25, %rd22, %rd23;
  shl.b64 %rd25, %rd25, 2;
  add.s64 %rd25, %rd2, %rd25;
  st.global.f32 [%rd25], %f1;
  add.s64 %rd23, %rd23, %rd11;
  bra COL;
NEXT:
  add.s64 %rd8, %rd8, %rd9;
  bra BATCH;
DONE:
  ret;
}
"""


def test_copy_ptx_offsets():
    fields = cuda_ffi.args_dtype().fields
    offsets = {name: fields[name][1] for name in fields}
    assert offsets == dict(zip(["in", "out", "M", "N", "nbatch", "nb", "nin", "bdims", "in_bstride",
                                "out_bstride"], [0, 256, 272, 280, 288, 296, 300, 304, 352, 1888]))
    assert cuda_ffi.args_dtype().itemsize == 1904


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not installed")
def test_copy_ptx_assembles(tmp_path):
    src = tmp_path / "copy.ptx"
    src.write_bytes(copy_ptx(COPY_KEY))
    run = subprocess.run(["ptxas", "-arch=sm_90", str(src), "-o", str(tmp_path / "copy.cubin")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def gpu():
    reason = cuda_ffi.available()
    if reason is not None:
        pytest.skip(f"needs a GPU: {reason}")
    return jax.devices("cuda")[0]


@pytest.fixture(scope="module")
def copy_kernel(gpu):
    return cuda_ffi.load_kernel(copy_ptx(COPY_KEY), COPY_KEY)


def copy_ptx(key: str) -> bytes:
    """The copy kernel's PTX, carrying ``key`` as its jax_lazy_kernel_key."""
    return COPY_PTX.replace("@KEY@", ", ".join(str(b) for b in key.encode())).encode()


def copy(kid, x, cat, width, batch, M, **launch):
    launch = dict(rows_per_block=1, block_threads=32) | launch
    out = [jax.ShapeDtypeStruct(tuple(batch) + (M, width), jnp.float32)]
    others = (jnp.zeros((3,), jnp.float32),)  # a second input, unused by the kernel
    return cuda_ffi.call(kid, (x,) + others, (cat, P), out, batch, M, 7, **launch)[0]


def test_gpu_copy_with_broadcast(copy_kernel):
    x = jnp.asarray(f32(0, 2, 1, 5, 3))
    got = jax.jit(lambda x: copy(copy_kernel, x, I, 3, (2, 4), 5))(x)
    np.testing.assert_array_equal(np.asarray(got), np.broadcast_to(np.asarray(x), (2, 4, 5, 3)))
    # No batch; more columns than threads.
    x = jnp.asarray(f32(1, 6, 70))
    np.testing.assert_array_equal(np.asarray(copy(copy_kernel, x, I, 70, (), 6)), np.asarray(x))


def test_gpu_copy_under_vmap(copy_kernel):
    x = jnp.asarray(f32(2, 3, 1, 4, 2))

    def f(x):
        return copy(copy_kernel, x, I, 2, (5,), 4)

    got = jax.jit(jax.vmap(f))(x)
    np.testing.assert_array_equal(np.asarray(got), np.broadcast_to(np.asarray(x), (3, 5, 4, 2)))


def test_gpu_many_batch_elements(copy_kernel):
    # More batch elements than gridDim.y: the kernel's loop over b covers the rest.
    n = cuda_ffi.abi_constants()["MAX_GRID_Y"] + 3
    x = jnp.asarray(f32(3, n, 1, 1))
    np.testing.assert_array_equal(np.asarray(copy(copy_kernel, x, I, 1, (n,), 1)), np.asarray(x))


def test_gpu_shared_memory_opt_in(copy_kernel):
    x = jnp.asarray(f32(4, 4, 2))
    got = copy(copy_kernel, x, I, 2, (), 4, shared_bytes=64 * 1024)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(x))
    with pytest.raises(jax.errors.JaxRuntimeError, match="dynamic shared memory"):
        np.asarray(copy(copy_kernel, x, I, 2, (), 4, shared_bytes=1 << 30))


def test_gpu_errors(gpu):
    x = jnp.asarray(f32(5, 4, 2))
    with pytest.raises(jax.errors.JaxRuntimeError, match="d" * 64 + " is not loaded.*not in the kernel cache"):
        np.asarray(copy("d" * 64, x, I, 2, (), 4))
    bad = cuda_ffi.load_kernel(b".version 7.0\n.target sm_52\nthis is not PTX\n", "b" * 64)
    with pytest.raises(jax.errors.JaxRuntimeError, match="cuModuleLoadData failed"):
        np.asarray(copy(bad, x, I, 2, (), 4))
    wrong_entry = cuda_ffi.load_kernel(copy_ptx("c1" * 32), "c1" * 32, name="not_there")
    with pytest.raises(jax.errors.JaxRuntimeError, match="cuModuleGetFunction failed"):
        np.asarray(copy(wrong_entry, x, I, 2, (), 4))
    # A kernel filed under another key (a forged cache entry) is refused, never launched.
    forged = cuda_ffi.load_kernel(copy_ptx("c2" * 32), "c3" * 32)
    with pytest.raises(jax.errors.JaxRuntimeError, match="reports kernel key " + "c2" * 32):
        np.asarray(copy(forged, x, I, 2, (), 4))
