// Plain chains (explicit padding, no whole-map layer) for CPUs, read in place.
//
// This is rfsearch.kernel's float32 chain program (_plain_chain, then _from_spans) as a
// plain C function that rfsearch.native calls through ctypes on the Batch's own
// layer-major arrays: a chain's parameters are read where they lie, with no transfer
// into XLA's buffers (for a deep chain that copy cost more than the recurrence itself),
// and each call computes a range of rows straight into the result arrays. Rows are
// walked BLOCK at a time: the block's spans stay in the L1 cache while every layer's
// parameter rows stream through, one vector operation per lane group. The operations
// and their order are the float32 program's, so every row it computes exactly is
// identical; a row whose spans reach 2**24 is flagged OVERFLOW and the driver computes
// it again in int64, as it does for the XLA program.
//
// Arguments: kernel, stride, dilation, pad_before, pad_after point at entry [0, 0, 0] of
// [L, A, N] arrays of one integer type (``type_bytes``: 1, 2, 4 or 8) whose rows are
// contiguous; ``layer`` and ``axis`` are their strides in elements (pad_after is read only
// when ``sized``). size0 [A]: the input size (read when ``sized``). Rows [begin, end) are
// computed into u, v, J, rmin, size, fault [A, N] int32 and flags [A, N] int8, whose
// axis stride is ``out_axis`` elements.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace {

constexpr int32_t KNOWN = 1, ALIGNED = 2, OVERFLOW = 8;  // rfsearch.recurrence
constexpr int32_t ERR_EMPTY = 3, FAULT_CODES = 4;
constexpr int32_t NO_FAULT = std::numeric_limits<int32_t>::max();
constexpr float EXACT = 16777216.0f;    // rfsearch.kernel.EXACT_F32
constexpr float NO_EMPTY = 16777216.0f;  // rfsearch.kernel.NO_EMPTY
constexpr int64_t BLOCK = 1024;  // rows whose spans are carried through every layer at once

struct Spans {  // rfsearch.kernel.Spans of one block of rows on one axis
  float span[BLOCK], P[BLOCK], J[BLOCK], size[BLOCK], bound[BLOCK], empty_at[BLOCK];
};

struct Layout {
  const void *kernel, *stride, *dilation, *pad_before, *pad_after;
  int64_t layers, layer, axis;
};

// One layer over a block of rows: rfsearch.kernel._plain_chain's step, same order of
// operations.
template <typename T, bool SIZED>
void step(Spans& x, const T* k, const T* s, const T* d, const T* pb, const T* pa, int64_t n,
          float node) {
  for (int64_t i = 0; i < n; ++i) {
    const float kernel = k[i], stride = s[i], dilation = d[i], before = pb[i];
    const float k_eff = dilation * (kernel - 1.0f) + 1.0f;
    const float J = x.J[i];
    x.span[i] = x.span[i] + (k_eff - 1.0f) * J;
    x.P[i] = x.P[i] + before * J;
    x.J[i] = J * stride;
    if (SIZED) {
      const float after = pa[i];
      const float size = std::floor((x.size[i] + before + after - k_eff) / stride) + 1.0f;
      const bool first = (size < 1.0f) & (x.empty_at[i] == NO_EMPTY);
      x.bound[i] = x.bound[i] + before + after;
      x.empty_at[i] = first ? node : x.empty_at[i];
      x.size[i] = size;
    }
  }
}

// rfsearch.kernel._from_spans for one block; a value that is not exact is clamped before
// its conversion (the row is flagged, and its numbers are replaced by the driver).
int32_t whole(float value) { return static_cast<int32_t>(std::min(value, EXACT)); }

void store(const Spans& x, int64_t n, int32_t* u, int32_t* v, int32_t* J, int32_t* rmin,
           int32_t* size, int8_t* flags, int32_t* fault) {
  for (int64_t i = 0; i < n; ++i) {
    const bool exact = (x.span[i] < EXACT) & (x.P[i] < EXACT) & (x.J[i] < EXACT) &
                       (x.bound[i] < EXACT);
    const int32_t start = -whole(x.P[i]), span = whole(x.span[i]);
    u[i] = start;
    v[i] = start + span;
    J[i] = whole(x.J[i]);
    rmin[i] = span;
    size[i] = static_cast<int32_t>(std::max(std::min(x.size[i], EXACT), -EXACT));
    flags[i] = static_cast<int8_t>(exact ? KNOWN | ALIGNED : KNOWN | ALIGNED | OVERFLOW);
    fault[i] = x.empty_at[i] < NO_EMPTY ? whole(x.empty_at[i]) * FAULT_CODES + ERR_EMPTY
                                        : NO_FAULT;
  }
}

template <typename T, bool SIZED>
void rows(const Layout& in, int64_t axes, const float* size0, int64_t begin, int64_t end,
          int64_t out_axis, int32_t* u, int32_t* v, int32_t* J, int32_t* rmin, int32_t* size,
          int8_t* flags, int32_t* fault) {
  static thread_local Spans x;
  const T *k = static_cast<const T*>(in.kernel), *s = static_cast<const T*>(in.stride),
          *d = static_cast<const T*>(in.dilation), *pb = static_cast<const T*>(in.pad_before),
          *pa = static_cast<const T*>(in.pad_after);
  for (int64_t a = 0; a < axes; ++a) {
    for (int64_t first = begin; first < end; first += BLOCK) {
      const int64_t n = std::min(BLOCK, end - first);
      std::fill_n(x.span, n, 0.0f);
      std::fill_n(x.P, n, 0.0f);
      std::fill_n(x.J, n, 1.0f);
      std::fill_n(x.size, n, SIZED ? size0[a] : 0.0f);
      std::fill_n(x.bound, n, SIZED ? size0[a] : 0.0f);
      std::fill_n(x.empty_at, n, NO_EMPTY);
      for (int64_t l = 0; l < in.layers; ++l) {
        const int64_t at = l * in.layer + a * in.axis + first;
        step<T, SIZED>(x, k + at, s + at, d + at, pb + at, SIZED ? pa + at : nullptr, n,
                       static_cast<float>(l));
      }
      const int64_t o = a * out_axis + first;
      store(x, n, u + o, v + o, J + o, rmin + o, size + o, flags + o, fault + o);
    }
  }
}

template <typename T>
void typed(const Layout& in, int64_t axes, bool sized, const float* size0, int64_t begin,
           int64_t end, int64_t out_axis, int32_t* u, int32_t* v, int32_t* J, int32_t* rmin,
           int32_t* size, int8_t* flags, int32_t* fault) {
  (sized ? rows<T, true> : rows<T, false>)(in, axes, size0, begin, end, out_axis, u, v, J,
                                           rmin, size, flags, fault);
}

}  // namespace

// Returns 0, or -1 for a type width it does not read.
extern "C" int RfsearchChainRows(const void* kernel, const void* stride, const void* dilation,
                                 const void* pad_before, const void* pad_after,
                                 int64_t type_bytes, int64_t layers, int64_t layer,
                                 int64_t axis, int64_t axes, int sized, const float* size0,
                                 int64_t begin, int64_t end, int64_t out_axis, int32_t* u,
                                 int32_t* v, int32_t* J, int32_t* rmin, int32_t* size,
                                 int8_t* flags, int32_t* fault) {
  const Layout in{kernel, stride, dilation, pad_before, pad_after, layers, layer, axis};
  const bool s = sized != 0;
  switch (type_bytes) {
    case 1: typed<int8_t>(in, axes, s, size0, begin, end, out_axis, u, v, J, rmin, size, flags, fault); return 0;
    case 2: typed<int16_t>(in, axes, s, size0, begin, end, out_axis, u, v, J, rmin, size, flags, fault); return 0;
    case 4: typed<int32_t>(in, axes, s, size0, begin, end, out_axis, u, v, J, rmin, size, flags, fault); return 0;
    case 8: typed<int64_t>(in, axes, s, size0, begin, end, out_axis, u, v, J, rmin, size, flags, fault); return 0;
    default: return -1;
  }
}
