// The DAG recurrence of rfsearch.recurrence as one XLA FFI custom call for CPUs.
//
// XLA's CPU gather moves one element at a time, and the DAG program of rfsearch.kernel
// gathers every input slot of every node of every network from a buffer far larger than
// the caches. This kernel walks LANES networks at a time through all their nodes: their
// node states (a few KiB per network) stay in the L1 cache, each step is a handful of
// vector instructions over the LANES networks, and reading an input is one vector gather
// per state word. It computes what rfsearch.kernel._dag computes, in the same width:
// every row without the OVERFLOW flag is identical (overflowing int32 rows are computed
// again in int64 by the driver).
//
// Arguments, tiled LANES networks at a time (rfsearch.encode.tiled) so that a tile's
// inputs are one contiguous block: op [N / LANES, L, 1, LANES] int8; kernel, stride,
// dilation, pad_before, pad_after [N / LANES, L, A, LANES] (one of int8, int16, int32);
// preds [N / LANES, L, M, LANES] int32 ([L, M] when every network shares one topology);
// output [N] int32; input_size [2] int32. Results: u, v, J, rmin, size [A, N] in the compute width (int32 or int64),
// flags [A, N] int8, fault [A, N] int32. Built with -fwrapv: signed arithmetic wraps,
// as XLA's does.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// rfsearch.recurrence and rfsearch.ops constants (rfsearch.native checks them).
constexpr int32_t KNOWN = 1, ALIGNED = 2, UNBOUNDED = 4, OVERFLOW = 8, MISALIGNED = 16;
constexpr int32_t ERR_NONE = 0, ERR_JUMP = 1, ERR_SIZE = 2, ERR_EMPTY = 3, FAULT_CODES = 4;
constexpr int32_t NO_FAULT = std::numeric_limits<int32_t>::max();
constexpr int32_t GLOBAL_POOL = 7, DENSE = 8, PAD_SAME_LOWER = -2;
// A node's flags and fault share one stored word, fault << FLAG_BITS | flags (as in
// rfsearch.kernel), so that reading an input takes one gather fewer.
constexpr int FLAG_BITS = 5;
constexpr int32_t PACKED_NO_FAULT = (1 << 26) - 1;

template <typename T>
struct Limits;  // rfsearch.recurrence.LIMITS
template <>
struct Limits<int32_t> {
  static constexpr int32_t param = 1 << 14, position = 1 << 29;
};
template <>
struct Limits<int64_t> {
  static constexpr int64_t param = int64_t{1} << 30, position = int64_t{1} << 61;
};

// ---------------------------------------------------------------- vectors of LANES networks

// Networks per tile: one vector register of int32 lanes (16 with AVX-512, 8 with AVX2,
// else 4: wider vectors without the registers for them spill and run slower).
#if defined(__AVX512F__)
constexpr int64_t LANES = 16;
#elif defined(__AVX2__)
constexpr int64_t LANES = 8;
#else
constexpr int64_t LANES = 4;
#endif
template <typename E>
using Vec [[gnu::vector_size(LANES * sizeof(E))]] = E;
using I32 = Vec<int32_t>;

template <typename To, typename V>
inline Vec<To> convert(V x) {
  if constexpr (std::is_same_v<V, Vec<To>>) {
    return x;
  } else {
    return __builtin_convertvector(x, Vec<To>);
  }
}
template <typename V>
inline V vmin(V a, V b) { return a < b ? a : b; }
template <typename V>
inline V vmax(V a, V b) { return a > b ? a : b; }
// A comparison's lane mask (all ones or zero) of width T as a mask of int32 lanes.
template <typename M>
inline I32 mask32(M m) { return convert<int32_t>(m); }

// base[offset[t]] for every lane t (hardware gathers where the ISA has them).
template <typename E>
inline Vec<E> gather(const E* base, I32 offset) {
#if defined(__AVX512F__)
  static_assert(sizeof(I32) == sizeof(__m512i));
  if constexpr (sizeof(E) == 4) {
    return reinterpret_cast<Vec<E>>(
        _mm512_i32gather_epi32(reinterpret_cast<__m512i>(offset), base, 4));
  } else if constexpr (sizeof(E) == 8) {
    const __m512i all = reinterpret_cast<__m512i>(offset);
    const __m512i lo = _mm512_i32gather_epi64(_mm512_castsi512_si256(all), base, 8);
    const __m512i hi = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(all, 1), base, 8);
    Vec<E> out;
    std::memcpy(&out, &lo, sizeof(lo));
    std::memcpy(reinterpret_cast<char*>(&out) + sizeof(lo), &hi, sizeof(hi));
    return out;
  }
#elif defined(__AVX2__)
  static_assert(sizeof(I32) == sizeof(__m256i));
  if constexpr (sizeof(E) == 4) {
    return reinterpret_cast<Vec<E>>(_mm256_i32gather_epi32(
        reinterpret_cast<const int*>(base), reinterpret_cast<__m256i>(offset), 4));
  } else if constexpr (sizeof(E) == 8) {
    const __m256i all = reinterpret_cast<__m256i>(offset);
    const auto* base64 = reinterpret_cast<const long long*>(base);
    const __m256i lo = _mm256_i32gather_epi64(base64, _mm256_castsi256_si128(all), 8);
    const __m256i hi = _mm256_i32gather_epi64(base64, _mm256_extracti128_si256(all, 1), 8);
    Vec<E> out;
    std::memcpy(&out, &lo, sizeof(lo));
    std::memcpy(reinterpret_cast<char*>(&out) + sizeof(lo), &hi, sizeof(hi));
    return out;
  }
#endif
  Vec<E> out;
  for (int64_t t = 0; t < LANES; ++t) out[t] = base[offset[t]];
  return out;
}

// LANES consecutive values, widened to T.
template <typename T, typename E>
inline Vec<T> load(const E* at) {
  Vec<E> raw;
  std::memcpy(&raw, at, sizeof(raw));
  return convert<T>(raw);
}

// rfsearch.recurrence.floor_divide, b > 0: int32 in float32 (exact wherever no
// overflow is flagged), int64 exactly.
inline I32 floor_divide(I32 a, I32 b) {
  const Vec<float> q = convert<float>(a) / convert<float>(b);
  const I32 t = convert<int32_t>(q);  // truncated towards zero
  return t + (convert<float>(t) > q);  // a true mask is -1
}
inline Vec<int64_t> floor_divide(Vec<int64_t> a, Vec<int64_t> b) {
  Vec<int64_t> out;
  for (int64_t t = 0; t < LANES; ++t) {
    if (b[t] <= 0) {  // never from the encoder (strides are >= 1): no trap, like XLA
      out[t] = -1;
      continue;
    }
    const int64_t q = a[t] / b[t];
    out[t] = (a[t] % b[t] != 0 && a[t] < 0) ? q - 1 : q;
  }
  return out;
}

// ---------------------------------------------------------------- the recurrence

template <typename T>
struct State {  // rfsearch.recurrence.NodeState of one node and axis, for LANES networks
  Vec<T> u, v, J, rmin, size;
  I32 flags, fault;
};

template <typename T>
struct Window {  // one node's parameters, for LANES networks
  Vec<T> kernel, stride, dilation, before, after, op;
};

// merge(): union of the input slots (u = min, v = max); slot 0 gives jump and size,
// and the node is aligned when every input has its jump and centre.
template <typename T, int64_t M>
inline State<T> merge(const State<T> (&in)[M], I32* code) {
  const State<T>& first = in[0];
  State<T> x = first;
  I32 flags_and = first.flags, flags_or = first.flags;
  Vec<T> same_jump = first.J == first.J, same_centre = same_jump, same_size = same_jump;
  const Vec<T> centre = first.u + first.v;
  for (int64_t m = 1; m < M; ++m) {
    const State<T>& y = in[m];
    x.u = vmin(x.u, y.u);
    x.v = vmax(x.v, y.v);
    x.rmin = vmin(x.rmin, y.rmin);
    x.fault = vmin(x.fault, y.fault);
    same_jump &= y.J == first.J;
    same_centre &= (y.u + y.v) == centre;
    same_size &= y.size == first.size;
    flags_and &= y.flags;
    flags_or |= y.flags;
  }
  const I32 centred = mask32(same_jump & same_centre);
  const I32 aligned = centred & flags_and & ALIGNED;
  const I32 certain = ~centred & ((flags_and & KNOWN) != 0) & MISALIGNED;
  x.flags = (flags_and & KNOWN) | aligned | certain | (flags_or & (UNBOUNDED | OVERFLOW | MISALIGNED));
  const I32 none = I32{} + ERR_NONE;
  *code = mask32(same_jump) ? (mask32(same_size) ? none : none + ERR_SIZE) : none + ERR_JUMP;
  return x;
}

// apply_window(): u' = u - p J, v' = v + (k_eff - 1 - p) J, J' = J s,
// rmin' = rmin + (k_eff - 1) J, resolving whole-map windows and 'same' padding first.
// Returns the mask of lanes whose map became empty (zero unless sized).
template <typename T, bool SIZED>
inline I32 apply_window(State<T>& x, Window<T> w, bool same, bool whole) {
  using L = Limits<T>;
  const Vec<T> one = Vec<T>{} + 1;
  Vec<T> k_eff = w.dilation * (w.kernel - 1) + 1;
  if (whole) {
    const auto is_whole = (w.op == GLOBAL_POOL) | (w.op == DENSE);
    if constexpr (SIZED) {
      k_eff = is_whole ? vmax(x.size, one) : k_eff;
    } else {  // the map size is unknown: the region is unbounded
      k_eff = is_whole ? one : k_eff;
      x.flags |= mask32(is_whole) & UNBOUNDED;
    }
  }
  if (same) {  // same_padding(); an unknown size takes the n % s == 0 case
    const auto is_same = w.before < 0;
    const auto lower = w.before == PAD_SAME_LOWER;
    Vec<T> rem{};
    if constexpr (SIZED) rem = x.size - w.stride * floor_divide(x.size, w.stride);
    const Vec<T> total = vmax(k_eff - (rem == 0 ? w.stride : rem), Vec<T>{});
    const Vec<T> half = total >> 1;  // total >= 0
    const Vec<T> before = lower ? total - half : half;
    w.after = is_same ? total - before : w.after;
    w.before = is_same ? before : w.before;
    if constexpr (!SIZED) {
      const I32 unknown = mask32(is_same & (w.stride > 1) & (k_eff > 1));
      x.flags &= ~(unknown & KNOWN);
    }
  }
  const Vec<T> J = x.J;
  x.u = x.u - w.before * J;
  x.v = x.v + (k_eff - 1 - w.before) * J;
  x.J = J * w.stride;
  x.rmin = x.rmin + (k_eff - 1) * J;
  auto overflow = (x.J > L::param) | (-x.u > L::position) | ((x.v - x.u) > L::position);
  I32 empty{};
  if constexpr (SIZED) {
    x.size = floor_divide(x.size + w.before + w.after - k_eff, w.stride) + 1;
    overflow |= x.size > L::param;
    empty = mask32(x.size < 1);
  }
  x.flags |= mask32(overflow) & OVERFLOW;
  return empty;
}

// ---------------------------------------------------------------- batches

struct Inputs {
  const int8_t* op;
  const void *kernel, *stride, *dilation, *pad_before, *pad_after;
  int param_bytes;  // the parameters' width: 1, 2 or 4 bytes
  const int32_t* preds;
  bool shared;  // preds is [L, M]
  const int32_t *output, *input_size;
  int64_t L, A, N;
  bool same, whole;
};

// LANES parameters at element ``at`` of a parameter array, widened to T.
template <typename T>
inline Vec<T> param(const Inputs& in, const void* base, int64_t at) {
  switch (in.param_bytes) {
    case 1: return load<T>(static_cast<const int8_t*>(base) + at);
    case 2: return load<T>(static_cast<const int16_t*>(base) + at);
    default: return load<T>(static_cast<const int32_t*>(base) + at);
  }
}

template <typename T>
struct Outputs {
  T *u, *v, *J, *rmin, *size;
  int8_t* flags;
  int32_t* fault;
};

// The node states of one tile: [L, A] cells of LANES lanes per word.
template <typename T>
struct Tile {
  std::vector<T> u, v, J, rmin, size;
  std::vector<int32_t> word;
  explicit Tile(int64_t cells)
      : u(cells * LANES), v(cells * LANES), J(cells * LANES), rmin(cells * LANES),
        size(cells * LANES), word(cells * LANES) {}

  template <bool SIZED>
  State<T> read(I32 offset) const {  // lane t reads cell offset[t] / LANES
    State<T> s{gather(u.data(), offset), gather(v.data(), offset), gather(J.data(), offset),
               gather(rmin.data(), offset), Vec<T>{}, I32{}, I32{}};
    if constexpr (SIZED) s.size = gather(size.data(), offset);
    const I32 word_ = gather(word.data(), offset);
    const I32 fault = word_ >> FLAG_BITS;
    s.flags = word_ & ((1 << FLAG_BITS) - 1);
    s.fault = fault == PACKED_NO_FAULT ? I32{} + NO_FAULT : fault;
    return s;
  }
  void write(int64_t cell, const State<T>& s) {
    const int64_t at = cell * LANES;
    std::memcpy(&u[at], &s.u, sizeof(s.u));
    std::memcpy(&v[at], &s.v, sizeof(s.v));
    std::memcpy(&J[at], &s.J, sizeof(s.J));
    std::memcpy(&rmin[at], &s.rmin, sizeof(s.rmin));
    std::memcpy(&size[at], &s.size, sizeof(s.size));
    const I32 word_ = (vmin(s.fault, I32{} + PACKED_NO_FAULT) << FLAG_BITS) | s.flags;
    std::memcpy(&word[at], &word_, sizeof(word_));
  }
};

// Every node of the networks of tile b, [b * LANES, (b + 1) * LANES), in topological order.
template <typename T, int64_t M, bool SIZED>
void run_tile(const Inputs& in, int64_t b, Tile<T>& tile, const Outputs<T>& out) {
  const int64_t L = in.L, A = in.A, N = in.N, n0 = b * LANES;
  I32 lane;
  for (int64_t t = 0; t < LANES; ++t) lane[t] = static_cast<int32_t>(t);
  for (int64_t a = 0; a < A; ++a) {  // node 0 reads the input state (input_state())
    const Vec<T> size = Vec<T>{} + (SIZED ? static_cast<T>(in.input_size[a]) : T{0});
    tile.write(a, State<T>{Vec<T>{}, Vec<T>{}, Vec<T>{} + 1, Vec<T>{}, size,
                           I32{} + (KNOWN | ALIGNED), I32{} + NO_FAULT});
  }
  for (int64_t j = 0; j < L; ++j) {
    const I32 last = I32{} + static_cast<int32_t>(std::max<int64_t>(j - 1, 0));
    // input_slots(): an empty slot repeats slot 0. Slots are clamped to nodes already
    // computed, for memory safety; the encoder never writes others (XLA's program would
    // read a zero state there instead).
    I32 slot[M];
    for (int64_t m = 0; m < M; ++m) {
      slot[m] = in.shared ? I32{} + in.preds[j * M + m]
                          : load<int32_t>(in.preds + ((b * L + j) * M + m) * LANES);
    }
    const I32 first = vmin(vmax(slot[0], I32{}), last);
    for (int64_t m = 0; m < M; ++m) slot[m] = slot[m] >= 0 ? vmin(slot[m], last) : first;
    const Vec<T> op = load<T>(in.op + (b * L + j) * LANES);
    for (int64_t a = 0; a < A; ++a) {
      State<T> inputs[M];
      for (int64_t m = 0; m < M; ++m) {
        const I32 cell = slot[m] * static_cast<int32_t>(A) + static_cast<int32_t>(a);
        inputs[m] = tile.template read<SIZED>(cell * static_cast<int32_t>(LANES) + lane);
      }
      I32 code;
      State<T> x = merge<T, M>(inputs, &code);
      const int64_t at = ((b * L + j) * A + a) * LANES;
      const Window<T> w{param<T>(in, in.kernel, at), param<T>(in, in.stride, at),
                        param<T>(in, in.dilation, at), param<T>(in, in.pad_before, at),
                        param<T>(in, in.pad_after, at), op};
      const I32 empty = apply_window<T, SIZED>(x, w, in.same, in.whole);
      code = (code == ERR_NONE) & empty ? I32{} + ERR_EMPTY : code;  // record_fault()
      const I32 own = code == ERR_NONE ? I32{} + NO_FAULT : code + static_cast<int32_t>(j) * FAULT_CODES;
      x.fault = vmin(x.fault, own);
      tile.write(j * A + a, x);
    }
  }
  for (int64_t t = 0; t < LANES; ++t) {  // the output node's state
    const int64_t n = n0 + t;
    const int64_t node = std::min<int64_t>(std::max(in.output[n], 0), L - 1);
    for (int64_t a = 0; a < A; ++a) {
      const int64_t cell = (node * A + a) * LANES + t, at = a * N + n;
      const int32_t fault = tile.word[cell] >> FLAG_BITS;
      out.u[at] = tile.u[cell], out.v[at] = tile.v[cell], out.J[at] = tile.J[cell];
      out.rmin[at] = tile.rmin[cell], out.size[at] = SIZED ? tile.size[cell] : T{0};
      out.flags[at] = static_cast<int8_t>(tile.word[cell] & ((1 << FLAG_BITS) - 1));
      out.fault[at] = fault == PACKED_NO_FAULT ? NO_FAULT : fault;
    }
  }
}

// Not inlined into the handler: measured, inlining it there made GCC 12 allocate the hot
// loop's registers worse (25 % slower).
template <typename T, int64_t M, bool SIZED>
[[gnu::noinline]] void run(const Inputs& in, const Outputs<T>& out) {
  Tile<T> tile(in.L * in.A);
  for (int64_t b = 0; b < in.N / LANES; ++b) run_tile<T, M, SIZED>(in, b, tile, out);
}

// ---------------------------------------------------------------- the FFI handler

using Buffer = ffi::AnyBuffer;
using Result = ffi::Result<ffi::AnyBuffer>;

// Whether an argument has exactly these dimensions.
inline bool same_dims(const Buffer& a, std::initializer_list<int64_t> expected) {
  const auto dims = a.dimensions();
  if (dims.size() != expected.size()) return false;
  int64_t i = 0;
  for (int64_t d : expected) {
    if (dims[i++] != d) return false;
  }
  return true;
}

template <typename T>
ffi::Error dispatch(Buffer op, Buffer kernel, Buffer stride, Buffer dilation,
                    Buffer pad_before, Buffer pad_after, Buffer preds, Buffer output,
                    Buffer input_size, bool sized, bool same, bool whole, Result u, Result v,
                    Result J, Result rmin, Result size, Result flags, Result fault) {
  const auto dims = kernel.dimensions();
  const auto pdims = preds.dimensions();
  const bool shared = pdims.size() == 2;
  if (dims.size() != 4 || dims[3] != LANES || (!shared && pdims.size() != 4))
    return ffi::Error::InvalidArgument("rfsearch_dag: arguments are not tiled");
  const int64_t tiles = dims[0], L = dims[1], A = dims[2], N = tiles * LANES;
  const int64_t M = shared ? pdims[1] : pdims[2];
  if (L < 1 || A < 1 || M < 1 || L * FAULT_CODES >= PACKED_NO_FAULT)
    return ffi::Error::InvalidArgument("rfsearch_dag: bad node, axis or slot count");
  for (const Buffer* p : {&stride, &dilation, &pad_before, &pad_after}) {
    if (p->element_type() != kernel.element_type() || !same_dims(*p, {tiles, L, A, LANES}))
      return ffi::Error::InvalidArgument("rfsearch_dag: parameters differ in shape or type");
  }
  const bool preds_ok = shared ? same_dims(preds, {L, M}) : same_dims(preds, {tiles, L, M, LANES});
  if (!same_dims(op, {tiles, L, 1, LANES}) || !preds_ok || !same_dims(output, {N}) ||
      input_size.element_count() < 2 || op.element_type() != ffi::DataType::S8 ||
      preds.element_type() != ffi::DataType::S32 || output.element_type() != ffi::DataType::S32 ||
      input_size.element_type() != ffi::DataType::S32)
    return ffi::Error::InvalidArgument("rfsearch_dag: op, preds, output or input_size mismatch");
  const Outputs<T> outs{u->typed_data<T>(), v->typed_data<T>(), J->typed_data<T>(),
                        rmin->typed_data<T>(), size->typed_data<T>(),
                        flags->typed_data<int8_t>(), fault->typed_data<int32_t>()};
  int param_bytes = 0;
  switch (kernel.element_type()) {
    case ffi::DataType::S8: param_bytes = 1; break;
    case ffi::DataType::S16: param_bytes = 2; break;
    case ffi::DataType::S32: param_bytes = 4; break;
    default: return ffi::Error::InvalidArgument("rfsearch_dag: parameters are not int8/16/32");
  }
  const Inputs in{op.typed_data<int8_t>(), kernel.untyped_data(), stride.untyped_data(),
                  dilation.untyped_data(), pad_before.untyped_data(), pad_after.untyped_data(),
                  param_bytes, preds.typed_data<int32_t>(), shared,
                  output.typed_data<int32_t>(), input_size.typed_data<int32_t>(),
                  L, A, N, same, whole};
  auto go = [&](auto slots, auto sized_) {
    run<T, decltype(slots)::value, decltype(sized_)::value>(in, outs);
    return true;
  };
  auto with_slots = [&](auto sized_) {
    switch (M) {
      case 1: return go(std::integral_constant<int64_t, 1>{}, sized_);
      case 2: return go(std::integral_constant<int64_t, 2>{}, sized_);
      case 3: return go(std::integral_constant<int64_t, 3>{}, sized_);
      case 4: return go(std::integral_constant<int64_t, 4>{}, sized_);
      case 8: return go(std::integral_constant<int64_t, 8>{}, sized_);
      default: return false;
    }
  };
  if (!(sized ? with_slots(std::true_type{}) : with_slots(std::false_type{})))
    return ffi::Error::InvalidArgument("rfsearch_dag: unsupported fan-in");
  return ffi::Error::Success();
}

ffi::Error dag(Buffer op, Buffer kernel, Buffer stride, Buffer dilation, Buffer pad_before,
               Buffer pad_after, Buffer preds, Buffer output, Buffer input_size, Result u,
               Result v, Result J, Result rmin, Result size, Result flags, Result fault,
               bool sized, bool same, bool whole) {
  if (u->element_type() == ffi::DataType::S32)
    return dispatch<int32_t>(op, kernel, stride, dilation, pad_before, pad_after, preds, output,
                             input_size, sized, same, whole, u, v, J, rmin, size, flags, fault);
  return dispatch<int64_t>(op, kernel, stride, dilation, pad_before, pad_after, preds, output,
                           input_size, sized, same, whole, u, v, J, rmin, size, flags, fault);
}

}  // namespace

// Networks per tile of this build (the Python side lays its arguments out in tiles of it).
extern "C" int64_t RfsearchDagLanes() { return LANES; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(RfsearchDag, dag,
                              ffi::Ffi::Bind()
                                  .Arg<Buffer>()  // op
                                  .Arg<Buffer>()  // kernel
                                  .Arg<Buffer>()  // stride
                                  .Arg<Buffer>()  // dilation
                                  .Arg<Buffer>()  // pad_before
                                  .Arg<Buffer>()  // pad_after
                                  .Arg<Buffer>()  // preds
                                  .Arg<Buffer>()  // output
                                  .Arg<Buffer>()  // input_size
                                  .Ret<Buffer>()  // u
                                  .Ret<Buffer>()  // v
                                  .Ret<Buffer>()  // J
                                  .Ret<Buffer>()  // rmin
                                  .Ret<Buffer>()  // size
                                  .Ret<Buffer>()  // flags
                                  .Ret<Buffer>()  // fault
                                  .Attr<bool>("sized")
                                  .Attr<bool>("same")
                                  .Attr<bool>("whole"));
