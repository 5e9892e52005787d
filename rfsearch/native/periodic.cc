// The periodic program of rfsearch.periodic (rfsearch.periodic.propagate) as one XLA FFI
// custom call for CPUs.
//
// XLA runs that program as a scan over nodes whose every step gathers box tables with
// take_along_axis, one element at a time on CPUs. This kernel walks one network at a time
// through its nodes, per axis: merge the inputs' tables (union on the least common period,
// or unit by unit on the shared table), then apply the layer (the units each table entry
// reads, the hull of their boxes, the new period and map size). Its state tables stay in
// the cache. It computes what the XLA program computes, field by field, in int64 (built
// with -fwrapv: signed arithmetic wraps, as XLA's does); tests/test_native.py compares
// the two on random networks of every op.
//
// Arguments, network-major (rfsearch.native.periodic_states lays them out):
//   codes [N, L, 3] int8: kind (rfsearch.reads WINDOW / RESAMPLE / WHOLE), same, ceil;
//   wide [N, L, A, 8] int64: k_eff, s, pb, pa, D, mul, add, step (rfsearch.periodic.WIDE);
//   a0, b0 [N, L, A, DM] int64: one period of first / last units read (resampling);
//   preds [N, L, M] int32 (-1: empty slot); input_size [A] int64.
// Results: lo, hi [N, L, A, P] int64; known [N, L, A, P] int8; T, K, size [N, L, A]
// int64; flags, fault [N, L, A] int32. Attributes: P (table entries), M (0: one period;
// > 0: unit by unit, entry e is unit e - M), R (the most units an entry reads), sized.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// rfsearch.recurrence, rfsearch.reads and rfsearch.ops constants (rfsearch.native checks
// them).
constexpr int32_t KNOWN = 1, ALIGNED = 2, UNBOUNDED = 4, OVERFLOW = 8, MISALIGNED = 16,
                  MIXED = 32;
constexpr int32_t ERR_NONE = 0, ERR_JUMP = 1, ERR_SIZE = 2, ERR_EMPTY = 3, FAULT_CODES = 4;
constexpr int32_t NO_FAULT = std::numeric_limits<int32_t>::max();
constexpr int8_t WINDOW = 0, RESAMPLE = 1, WHOLE = 2, PAD_SAME_LOWER = -2;
constexpr int64_t PARAM = int64_t{1} << 30, POSITION = int64_t{1} << 61;  // LIMITS[int64]
constexpr int64_t BIG = std::numeric_limits<int64_t>::max();
constexpr int64_t FILL = std::numeric_limits<int64_t>::min();  // jnp's out-of-range gather
enum Wide { K_EFF, S, PB, PA, D, MUL, ADD, STEP, WIDE };

// Python's integer floor division and modulo, as jnp.floor_divide computes them: never
// trapping, so a value XLA computes and then ignores (a resampling layer's 'same' rest
// with N = 0) does not stop the process. XLA's a / 0 is -1 with rest a; a / -1 wraps.
inline int64_t floordiv(int64_t a, int64_t b) {
  if (b == 0) return a != 0 ? -2 : -1;
  if (b == -1) return -a;
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
inline int64_t floormod(int64_t a, int64_t b) { return a - floordiv(a, b) * b; }
inline int64_t magnitude(int64_t a) { return a < 0 ? -a : a; }  // wraps at INT64_MIN
inline int64_t gcd(int64_t a, int64_t b) {
  a = magnitude(a), b = magnitude(b);
  while (b != 0) {
    const int64_t t = a % b;
    a = b, b = t;
  }
  return a;
}
inline int64_t lcm(int64_t a, int64_t b) {  // as jnp.lcm
  const int64_t d = gcd(a, b);
  return d == 0 ? 0 : magnitude(a * floordiv(b, d));
}

// One node's state along one axis: views into the result buffers.
struct Axis {
  int64_t* lo;
  int64_t* hi;
  int8_t* known;
  int64_t *T, *K, *size;
  int32_t *flags, *fault;
};

// The merged inputs of a node along one axis (before its layer).
struct Merged {
  std::vector<int64_t> lo, hi;
  std::vector<int8_t> known;
  int64_t T, K, size;
  int32_t flags, fault;
};

struct Program {
  int64_t L, A, P, M, R, Ms, DM;
  bool sized;

  // values at unit x of a table (rfsearch.periodic.box_at): one period, or unit by unit.
  int64_t box_at(const int64_t* values, int64_t T, int64_t K, int64_t x) const {
    if (M) return values[std::clamp<int64_t>(x + M, 0, P - 1)];
    const int64_t q = floordiv(x, T), i = x - q * T;
    return (i >= 0 && i < P ? values[i] : FILL) + q * K;
  }
  // Unit by unit: whether unit x lies in the table and has a known box (known_at).
  bool known_at(const int8_t* known, int64_t x) const {
    return x + M >= 0 && x + M < P && known[std::clamp<int64_t>(x + M, 0, P - 1)];
  }
  bool real(int64_t size, int64_t e) const { return e - M >= 0 && e - M < size; }

  // The union of a node's inputs along one axis (rfsearch.periodic._merge): on their
  // least common period, or unit by unit on the shared table. Returns the error code.
  int32_t merge(const std::vector<Axis>& in, Merged& x) const {
    const Axis& first = in[0];
    const int64_t g0 = gcd(*first.K, *first.T);
    bool same_jump = true, same_size = true;
    int64_t common = *first.T;
    int32_t fa = ~0, fo = 0;
    x.fault = NO_FAULT;
    for (const Axis& m : in) {
      const int64_t g = gcd(*m.K, *m.T);
      same_jump &= floordiv(*m.K, g) == floordiv(*first.K, g0) &&
                   floordiv(*m.T, g) == floordiv(*first.T, g0);
      same_size &= *m.size == *first.size;
      if (!M) common = lcm(common, *m.T);
      fa &= *m.flags, fo |= *m.flags;
      x.fault = std::min(x.fault, *m.fault);
    }
    bool centred = same_jump;
    for (int64_t e = 0; e < P; ++e) {
      bool known = first.known[e] != 0;
      if (M) {
        for (const Axis& m : in) known &= m.known[e] != 0;
      }
      const bool inside = M ? real(*first.size, e) && known : e < common;
      int64_t lo = BIG, hi = -BIG, centre = 0;
      for (size_t m = 0; m < in.size(); ++m) {
        const Axis& a = in[m];
        const int64_t l = M ? a.lo[e] : box_at(a.lo, *a.T, *a.K, e);
        const int64_t h = M ? a.hi[e] : box_at(a.hi, *a.T, *a.K, e);
        if (m == 0) centre = l + h;
        if (inside) centred &= l + h == centre;
        lo = std::min(lo, l), hi = std::max(hi, h);
      }
      x.lo[e] = lo, x.hi[e] = hi, x.known[e] = known;
    }
    const int32_t aligned = centred ? (fa & ALIGNED) : 0;
    const int32_t certain = !centred && (fa & KNOWN) ? MISALIGNED : 0;
    x.flags = (fa & KNOWN) | aligned | certain |
              (fo & (UNBOUNDED | OVERFLOW | MISALIGNED | MIXED));
    if (M && !same_jump) x.flags |= MIXED;  // unit by unit, different jumps: no one stride
    x.T = common, x.K = floordiv(*first.K * common, *first.T), x.size = *first.size;
    if (!M && !same_jump) return ERR_JUMP;
    return same_size ? ERR_NONE : ERR_SIZE;
  }

  // The box of entry e of a layer reading units first, first + step, ..., last
  // (rfsearch.periodic._hull): the union of their boxes, and whether they are known.
  // Periodically lo(u + T) = lo(u) + K >= lo(u), so the least lo is among the first T
  // units read and the largest hi among the last T.
  void hull(const Merged& x, int64_t first, int64_t last, int64_t step, const Axis& y,
            int64_t e) const {
    int64_t lo = box_at(x.lo.data(), x.T, x.K, first);
    int64_t hi = box_at(x.hi.data(), x.T, x.K, last);
    bool known = M ? known_at(x.known.data(), first) && known_at(x.known.data(), last)
                   : x.known[e] != 0;
    if (R > 1) {
      int64_t count = floordiv(last - first, step) + 1;
      if (!M) count = std::min(count, x.T);
      for (int64_t j = 1; j < std::min(R, count); ++j) {
        lo = std::min(lo, box_at(x.lo.data(), x.T, x.K, first + j * step));
        hi = std::max(hi, box_at(x.hi.data(), x.T, x.K, last - j * step));
        if (M) known &= known_at(x.known.data(), first + j * step);
      }
    }
    y.lo[e] = lo, y.hi[e] = hi, y.known[e] = known;
  }

  // Unit by unit, a whole-map layer: every entry reads the union of the map's units.
  void whole_map(const Merged& x, const Axis& y) const {
    int64_t lo = BIG, hi = -BIG;
    bool known = true;
    for (int64_t e = 0; e < P; ++e) {
      if (!real(x.size, e)) continue;
      lo = std::min(lo, x.lo[e]), hi = std::max(hi, x.hi[e]), known &= x.known[e] != 0;
    }
    std::fill(y.lo, y.lo + P, lo), std::fill(y.hi, y.hi + P, hi);
    std::fill(y.known, y.known + P, static_cast<int8_t>(known));
  }

  // Output size of a window: floor, or PyTorch's ceil mode (rfsearch.periodic._window_sizes).
  static int64_t window_size(int64_t n, int64_t pb, int64_t pa, int64_t k_eff, int64_t s,
                             bool ceil) {
    const int64_t span = n + pb + pa - k_eff;
    if (!ceil) return floordiv(span, s) + 1;
    const int64_t up = -floordiv(-span, s) + 1;
    return up - ((up - 1) * s >= n + pb ? 1 : 0);
  }

  // One node's layer after its merge (rfsearch.periodic._apply, _padding, _reads): writes
  // the node's state and returns whether its map became empty.
  bool apply(const Merged& x, const int8_t* codes, const int64_t* w, const int64_t* a0,
             const int64_t* b0, const Axis& y) const {
    const int8_t kind = codes[0], same = codes[1];
    const bool whole = kind == WHOLE, window = kind != RESAMPLE;
    const int64_t n = x.size, s = w[S];
    const int64_t k_eff = whole ? (sized ? std::max<int64_t>(n, 1) : 1) : w[K_EFF];
    int32_t flags = x.flags;
    const int64_t rem = sized ? n - s * floordiv(n, s) : 0;  // TF/ONNX 'same' padding
    const int64_t total = std::max<int64_t>(k_eff - (rem == 0 ? s : rem), 0);
    const int64_t before = same == PAD_SAME_LOWER ? total - floordiv(total, 2)
                                                  : floordiv(total, 2);
    const int64_t pb = same ? before : w[PB], pa = same ? total - before : w[PA];
    if (!sized && same && s > 1 && k_eff > 1) flags &= ~KNOWN;  // pads by the size
    if (!sized && whole) flags |= UNBOUNDED;
    const int64_t period = window ? 1 : w[D];
    for (int64_t e = 0; e < P; ++e) {
      const int64_t unit = e - M, phase = floormod(unit, period), q = floordiv(unit, period);
      const int64_t first = window ? unit * s - pb : a0[phase] + q * s;
      const int64_t last = window ? first + k_eff - 1 : b0[phase] + q * s;
      hull(x, first, last, w[STEP], y, e);
    }
    if (M && whole) whole_map(x, y);
    const int64_t g = gcd(s, x.T);
    int64_t T = floordiv(period * x.T, g), K = floordiv(x.K * s, g);
    if (M) {  // unit by unit, T and K only carry the jump: lowest terms
      const int64_t h = gcd(T, K);
      T = floordiv(T, h), K = floordiv(K, h);
    }
    const int64_t size = !sized ? n
                         : window ? window_size(n, pb, pa, k_eff, s, codes[2] != 0)
                                  : w[MUL] * n + w[ADD];
    bool overflow = (M ? T > PARAM : T > P) || K > PARAM || size > PARAM;
    for (int64_t e = 0; e < P; ++e)
      overflow |= magnitude(y.lo[e]) > POSITION || magnitude(y.hi[e]) > POSITION;
    *y.T = T, *y.K = K, *y.size = size, *y.flags = flags | (overflow ? OVERFLOW : 0);
    return sized && size < 1;
  }
};

// Result buffers and the arguments, network-major.
struct Buffers {
  const int8_t* codes;
  const int64_t *wide, *a0, *b0;
  const int32_t* preds;
  const int64_t* input_size;
  int64_t *lo, *hi, *T, *K, *size;
  int8_t* known;
  int32_t *flags, *fault;
};

// Node v of network j along axis a.
Axis at(const Program& p, const Buffers& b, int64_t j, int64_t v, int64_t a) {
  const int64_t cell = (j * p.L + v) * p.A + a;
  return {b.lo + cell * p.P, b.hi + cell * p.P, b.known + cell * p.P, b.T + cell,
          b.K + cell, b.size + cell, b.flags + cell, b.fault + cell};
}

// Every node of network j: node 0 is the input, then merge and layer node by node.
void run_network(const Program& p, const Buffers& b, int64_t j, Merged& x,
                 std::vector<Axis>& in) {
  for (int64_t a = 0; a < p.A; ++a) {  // rfsearch.periodic._input_state
    const Axis y = at(p, b, j, 0, a);
    for (int64_t e = 0; e < p.P; ++e) y.lo[e] = y.hi[e] = p.M ? e - p.M : 0, y.known[e] = 1;
    *y.T = *y.K = 1, *y.size = b.input_size[a];
    *y.flags = KNOWN | ALIGNED, *y.fault = NO_FAULT;
  }
  for (int64_t v = 1; v < p.L; ++v) {
    const int32_t* slots = b.preds + (j * p.L + v) * p.Ms;
    const int64_t cell = j * p.L + v;
    for (int64_t a = 0; a < p.A; ++a) {
      for (int64_t m = 0; m < p.Ms; ++m)  // an empty slot repeats slot 0 (input_slots)
        in[m] = at(p, b, j, slots[m] >= 0 ? slots[m] : std::max(slots[0], 0), a);
      int32_t code = p.merge(in, x);
      const int64_t* w = b.wide + (cell * p.A + a) * WIDE;
      const Axis y = at(p, b, j, v, a);
      const bool empty = p.apply(x, b.codes + cell * 3, w, b.a0 + (cell * p.A + a) * p.DM,
                                 b.b0 + (cell * p.A + a) * p.DM, y);
      if (code == ERR_NONE && empty) code = ERR_EMPTY;
      const int32_t own = code == ERR_NONE ? NO_FAULT : static_cast<int32_t>(v) * FAULT_CODES + code;
      *y.fault = std::min(x.fault, own);
    }
  }
}

// ---------------------------------------------------------------- the FFI handler

using Buffer = ffi::AnyBuffer;
using Result = ffi::Result<ffi::AnyBuffer>;

ffi::Error periodic(Buffer codes, Buffer wide, Buffer a0, Buffer b0, Buffer preds,
                    Buffer input_size, Result lo, Result hi, Result known, Result T, Result K,
                    Result size, Result flags, Result fault, int64_t P, int64_t M, int64_t R,
                    bool sized) {
  const auto w = wide.dimensions(), r = a0.dimensions(), s = preds.dimensions();
  if (w.size() != 4 || w[3] != WIDE || r.size() != 4 || s.size() != 3 || P < 1 || M < 0)
    return ffi::Error::InvalidArgument("rfsearch_periodic: argument shapes");
  const int64_t N = w[0], L = w[1], A = w[2];
  if (codes.element_count() != N * L * 3 || b0.element_count() != a0.element_count() ||
      r[0] != N || r[1] != L || r[2] != A || s[0] != N || s[1] != L || s[2] < 1 ||
      input_size.element_count() != A || lo->element_count() != N * L * A * P ||
      codes.element_type() != ffi::DataType::S8 || wide.element_type() != ffi::DataType::S64 ||
      a0.element_type() != ffi::DataType::S64 || b0.element_type() != ffi::DataType::S64 ||
      preds.element_type() != ffi::DataType::S32 ||
      input_size.element_type() != ffi::DataType::S64 || L * FAULT_CODES >= NO_FAULT)
    return ffi::Error::InvalidArgument("rfsearch_periodic: argument shapes or types");
  const Program p{L, A, P, M, R, s[2], r[3], sized};
  const Buffers b{codes.typed_data<int8_t>(), wide.typed_data<int64_t>(),
                  a0.typed_data<int64_t>(), b0.typed_data<int64_t>(),
                  preds.typed_data<int32_t>(), input_size.typed_data<int64_t>(),
                  lo->typed_data<int64_t>(), hi->typed_data<int64_t>(),
                  T->typed_data<int64_t>(), K->typed_data<int64_t>(),
                  size->typed_data<int64_t>(), known->typed_data<int8_t>(),
                  flags->typed_data<int32_t>(), fault->typed_data<int32_t>()};
  Merged x{std::vector<int64_t>(P), std::vector<int64_t>(P), std::vector<int8_t>(P), 0, 0, 0,
           0, 0};
  std::vector<Axis> in(p.Ms);
  for (int64_t j = 0; j < N; ++j) run_network(p, b, j, x, in);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RfsearchPeriodic, periodic,
                              ffi::Ffi::Bind()
                                  .Arg<Buffer>()  // codes
                                  .Arg<Buffer>()  // wide
                                  .Arg<Buffer>()  // a0
                                  .Arg<Buffer>()  // b0
                                  .Arg<Buffer>()  // preds
                                  .Arg<Buffer>()  // input_size
                                  .Ret<Buffer>()  // lo
                                  .Ret<Buffer>()  // hi
                                  .Ret<Buffer>()  // known
                                  .Ret<Buffer>()  // T
                                  .Ret<Buffer>()  // K
                                  .Ret<Buffer>()  // size
                                  .Ret<Buffer>()  // flags
                                  .Ret<Buffer>()  // fault
                                  .Attr<int64_t>("P")
                                  .Attr<int64_t>("M")
                                  .Attr<int64_t>("R")
                                  .Attr<bool>("sized"));
