// Small helpers shared by the XLA FFI handlers (cpu_handler.cc, cuda_handler.cc).
#ifndef JAX_LAZY_XLA_FFI_FFI_COMMON_H_
#define JAX_LAZY_XLA_FFI_FFI_COMMON_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace jax_lazy {

// "(2, 3)", "(4,)", "()": a shape as Python prints it, for error messages.
inline std::string ShapeString(xla::ffi::Span<const int64_t> dims) {
  std::string s = "(";
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (d) s += ", ";
    s += std::to_string(dims[d]);
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

// Product of [first, last) (int64_t, or long long as in the CUDA ABI struct).
template <typename T>
int64_t Product(const T* first, const T* last) {
  int64_t p = 1;
  for (; first != last; ++first) p *= *first;
  return p;
}

// A small vector of T stored inline up to N elements (avoids heap traffic on
// the hot path of small calls).
template <typename T, std::size_t N>
class SmallVec {
 public:
  explicit SmallVec(std::size_t n = 0) { resize(n); }
  void resize(std::size_t n) {
    size_ = n;
    if (n > N) heap_.resize(n);
  }
  T* data() { return size_ > N ? heap_.data() : inline_.data(); }
  const T* data() const { return size_ > N ? heap_.data() : inline_.data(); }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  std::size_t size() const { return size_; }

 private:
  std::size_t size_ = 0;
  std::array<T, N> inline_{};
  std::vector<T> heap_;
};

// The batch axes of one call and where each batch element's data are.
//
// Attributes: `batch` (nb,) is the output batch shape and `in_batch`
// (nin * nb,) the batch shape of each input, left-padded with 1s (an entry is
// 1, broadcast, or batch[d]). Buffers: input k is (*in_batch[k], <slice>),
// output k is (*batch, M, width_k), row-major. Under jax.vmap with
// vmap_method="broadcast_all" every operand and result gets the same extra
// leading axes, which the attributes do not describe: they are inferred from
// the rank of output 0 and become leading, non-broadcast batch axes.
struct BatchLayout {
  int64_t extra = 0;              // vmapped axes
  int64_t naxes = 0;              // extra + nb
  int64_t count = 0;              // batch elements: the product of dims
  SmallVec<int64_t, 8> dims;      // (*extra, *batch)
  SmallVec<int64_t, 8> out_row;   // output k: elements per batch element (M * width_k)
  SmallVec<int64_t, 32> in_step;  // [k * naxes + d]: elements per step of axis d in
                                  // input k's own batch shape; 0 where it broadcasts
};

// Checks outputs 0..nout-1 and every input against M, `batch` and `in_batch`
// and fills `layout`. Failures are kInvalidArgument errors whose message starts
// with `handler` ("jax_lazy_cpu: ..."). Inputs of a call with no batch element
// are not checked for size (nothing is read).
inline xla::ffi::Error MakeBatchLayout(const char* handler, xla::ffi::RemainingArgs args,
                                       xla::ffi::RemainingRets rets, int64_t nout, int64_t M,
                                       xla::ffi::Span<const int64_t> batch,
                                       xla::ffi::Span<const int64_t> in_batch,
                                       BatchLayout& layout) {
  namespace ffi = xla::ffi;
  using std::to_string;
  const auto invalid = [handler](std::string message) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, handler + (": " + std::move(message)));
  };
  const int64_t nin = static_cast<int64_t>(args.size());
  const int64_t nb = static_cast<int64_t>(batch.size());
  if (static_cast<int64_t>(in_batch.size()) != nin * nb) {
    return invalid("in_batch has " + to_string(in_batch.size()) + " entries, expected nin * " +
                   "len(batch) = " + to_string(nin) + " * " + to_string(nb));
  }
  for (int64_t d = 0; d < nb; ++d) {
    if (batch[d] < 0) return invalid("negative batch dimension in " + ShapeString(batch));
  }
  if (nout < 1) return invalid("the call has no outputs");
  auto ret0 = rets.get<ffi::AnyBuffer>(0);
  if (!ret0.has_value()) return invalid("output 0 is not a buffer");
  const ffi::Span<const int64_t> out0 = (**ret0).dimensions();
  const int64_t extra = static_cast<int64_t>(out0.size()) - nb - 2;
  if (extra < 0) {
    return invalid("output 0 has shape " + ShapeString(out0) + ", expected (*batch, M, width) " +
                   "with batch = " + ShapeString(batch) + ", M = " + to_string(M));
  }
  const int64_t naxes = extra + nb;
  layout.extra = extra;
  layout.naxes = naxes;
  layout.dims.resize(naxes);
  for (int64_t d = 0; d < naxes; ++d) layout.dims[d] = d < extra ? out0[d] : batch[d - extra];
  const int64_t* dims = layout.dims.data();
  const auto axes = [dims](int64_t n) { return ShapeString(ffi::Span<const int64_t>(dims, n)); };
  layout.count = Product(dims, dims + naxes);

  layout.out_row.resize(nout);
  for (int64_t k = 0; k < nout; ++k) {
    auto ret = rets.get<ffi::AnyBuffer>(k);
    if (!ret.has_value()) return invalid("output " + to_string(k) + " is not a buffer");
    const ffi::Span<const int64_t> od = (**ret).dimensions();
    bool ok = static_cast<int64_t>(od.size()) == naxes + 2 && od[naxes] == M;
    for (int64_t d = 0; ok && d < naxes; ++d) ok = od[d] == dims[d];
    if (!ok) {
      return invalid("output " + to_string(k) + " has shape " + ShapeString(od) +
                     ", expected (*batch, M, width) with batch = " + axes(naxes) +
                     ", M = " + to_string(M));
    }
    layout.out_row[k] = M * od[naxes + 1];
  }

  layout.in_step.resize(nin * naxes);
  for (int64_t k = 0; k < nin; ++k) {
    auto arg = args.get<ffi::AnyBuffer>(k);
    if (!arg.has_value()) return invalid("input " + to_string(k) + " is not a buffer");
    const ffi::Span<const int64_t> id = (*arg).dimensions();
    const int64_t* ib = in_batch.begin() + k * nb;
    bool ok = static_cast<int64_t>(id.size()) >= extra;
    for (int64_t d = 0; ok && d < extra; ++d) ok = id[d] == dims[d];
    if (!ok) {
      return invalid("input " + to_string(k) + " has shape " + ShapeString(id) +
                     " but the outputs have " + to_string(extra) +
                     " extra leading (vmapped) axes " + axes(extra));
    }
    for (int64_t d = 0; d < nb; ++d) {
      if (ib[d] != 1 && ib[d] != batch[d]) {
        return invalid("input " + to_string(k) + ": in_batch " +
                       ShapeString(ffi::Span<const int64_t>(ib, nb)) +
                       " does not broadcast to batch " + ShapeString(batch));
      }
    }
    if (layout.count == 0) continue;  // nothing will be read
    const int64_t size = static_cast<int64_t>((*arg).element_count());
    const int64_t own_b = Product(dims, dims + extra) * Product(ib, ib + nb);
    if (own_b == 0 || size % own_b != 0) {
      return invalid("input " + to_string(k) + " of shape " + ShapeString(id) + " has " +
                     to_string(size) + " elements, not a multiple of its batch size " +
                     to_string(own_b));
    }
    int64_t step = size / own_b;
    for (int64_t d = naxes - 1; d >= 0; --d) {
      const int64_t n = d < extra ? dims[d] : ib[d - extra];
      layout.in_step[k * naxes + d] = n == 1 ? 0 : step;
      step *= n;
    }
  }
  return ffi::Error::Success();
}

}  // namespace jax_lazy

#endif  // JAX_LAZY_XLA_FFI_FFI_COMMON_H_
