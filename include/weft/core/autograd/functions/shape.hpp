// weft/core/autograd/functions/shape.hpp - differentiable reshape, transpose, concat, slice and
// row gathering.
//
// reshape shares storage with its input (no copy); transpose, concat, slice and gather_rows
// copy (weft tensors are always contiguous).
#pragma once

#include <cstring>
#include <vector>

#include "weft/core/autograd/tape.hpp"
#include "weft/core/ops/reduce.hpp"

WEFT_NAMESPACE_BEGIN

/// A view of a with a new shape of the same number of elements.
template <class T>
Var<T> reshape(const Var<T>& a, const Shape& s) {
  Tape<T>& t = a.tape();
  WEFT_CHECK(s.numel() == a.numel(), shape, "reshape", "expected a shape with ", a.numel(),
             " elements (from ", a.shape(), "), got ", s);
  return t.record(a.value().reshape(s), {a}, [a](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a)) ga->array() += g.array();
  });
}
/// reshape with at most one extent given as -1 (inferred).
template <class T>
Var<T> reshape(const Var<T>& a, std::initializer_list<index_t> dims) {
  return reshape(a, a.value().reshape(dims).shape());
}

/// Copy of a with axes a0 and a1 swapped (default: the last two).
template <class T>
Var<T> transpose(const Var<T>& a, int a0 = -2, int a1 = -1) {
  Tape<T>& t = a.tape();
  Tensor<T> tr = a.value().transpose(a0, a1);  // validates; owning copy
  Tensor<T> out = t.alloc_uninit(tr.shape());
  out.copy_from(tr);
  return t.record(out, {a}, [a, a0, a1](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a)) ga->array() += g.transpose(a0, a1).array();
  });
}

/// Concatenation along `axis`; all inputs have equal rank and extents except along axis.
template <class T>
Var<T> concat(const std::vector<Var<T>>& xs, int axis = 0) {
  WEFT_CHECK(!xs.empty(), shape, "concat", "expected at least one input, got none");
  Tape<T>& t = xs[0].tape();
  const Shape& s0 = xs[0].shape();
  const int ax = s0.normalize_axis(axis, "concat");
  index_t total = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Shape& si = xs[i].shape();
    bool ok = si.rank() == s0.rank();
    for (int k = 0; ok && k < s0.rank(); ++k) ok = (k == ax) || si[k] == s0[k];
    WEFT_CHECK(ok, shape, "concat", "expected input ", i, " to match ", s0, " except on axis ", ax,
               ", got ", si);
    total += si[ax];
  }
  const Shape os = s0.with(ax, total);
  Tensor<T> out = t.alloc_uninit(os);
  const ops::AxisSplit so = ops::axis_split(os, ax);
  // offsets of each input along the axis, kept in the arena for the backward pass
  const std::size_t n = xs.size();
  index_t* offs = static_cast<index_t*>(t.alloc_bytes(sizeof(index_t) * (n + 1), alignof(index_t)));
  offs[0] = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const index_t len = xs[i].shape()[ax];
    offs[i + 1] = offs[i] + len;
    const T* src = xs[i].value().data();
    for (index_t o = 0; o < so.outer; ++o)
      std::memcpy(out.data() + (o * total + offs[i]) * so.inner, src + o * len * so.inner,
                  sizeof(T) * std::size_t(len * so.inner));
  }
  Var<T>* ins = static_cast<Var<T>*>(t.alloc_bytes(sizeof(Var<T>) * n, alignof(Var<T>)));
  for (std::size_t i = 0; i < n; ++i) new (ins + i) Var<T>(xs[i]);
  return t.record_range(out, xs.begin(), xs.end(), [ins, offs, n, so, total](Tape<T>& tp, const Tensor<T>& g) {
    for (std::size_t i = 0; i < n; ++i) {
      Tensor<T>* gi = tp.grad_sink(ins[i]);
      if (!gi) continue;
      const index_t len = offs[i + 1] - offs[i];
      for (index_t o = 0; o < so.outer; ++o) {
        const T* src = g.data() + (o * total + offs[i]) * so.inner;
        T* dst = gi->data() + o * len * so.inner;
        for (index_t j = 0; j < len * so.inner; ++j) dst[j] += src[j];
      }
    }
  });
}

/// The elements with index in [begin, end) along `axis` (a copy).
template <class T>
Var<T> slice(const Var<T>& a, int axis, index_t begin, index_t end) {
  Tape<T>& t = a.tape();
  const Shape& s = a.shape();
  const int ax = s.normalize_axis(axis, "slice");
  WEFT_CHECK(0 <= begin && begin <= end && end <= s[ax], shape, "slice", "expected 0 <= begin <= end <= ",
             s[ax], " on axis ", ax, " of shape ", s, ", got [", begin, ", ", end, ")");
  const ops::AxisSplit sp = ops::axis_split(s, ax);
  const index_t len = end - begin;
  Tensor<T> out = t.alloc_uninit(s.with(ax, len));
  for (index_t o = 0; o < sp.outer; ++o)
    std::memcpy(out.data() + o * len * sp.inner, a.value().data() + (o * sp.len + begin) * sp.inner,
                sizeof(T) * std::size_t(len * sp.inner));
  return t.record(out, {a}, [a, sp, begin, len](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a))
      for (index_t o = 0; o < sp.outer; ++o) {
        const T* src = g.data() + o * len * sp.inner;
        T* dst = ga->data() + (o * sp.len + begin) * sp.inner;
        for (index_t j = 0; j < len * sp.inner; ++j) dst[j] += src[j];
      }
  });
}

/// Rows (entries of the leading axis) of a at the given indices, in order; repeats allowed
/// (their gradients add up).
template <class T>
Var<T> gather_rows(const Var<T>& a, const std::vector<index_t>& idx) {
  Tape<T>& t = a.tape();
  const Shape& s = a.shape();
  WEFT_CHECK(s.rank() >= 1, shape, "gather_rows", "expected rank >= 1, got a scalar");
  const index_t rows = s[0], width = s.stride(0), n = index_t(idx.size());
  for (std::size_t i = 0; i < idx.size(); ++i)
    WEFT_CHECK(idx[i] >= 0 && idx[i] < rows, shape, "gather_rows", "expected indices in [0, ", rows,
               "), got ", idx[i], " at position ", i);
  Tensor<T> out = t.alloc_uninit(s.with(0, n));
  index_t* ix = static_cast<index_t*>(t.alloc_bytes(sizeof(index_t) * std::size_t(n ? n : 1), alignof(index_t)));
  for (index_t i = 0; i < n; ++i) {
    ix[i] = idx[std::size_t(i)];
    std::memcpy(out.data() + i * width, a.value().data() + ix[i] * width, sizeof(T) * std::size_t(width));
  }
  return t.record(out, {a}, [a, ix, n, width](Tape<T>& tp, const Tensor<T>& g) {
    if (Tensor<T>* ga = tp.grad_sink(a))
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < width; ++j) ga->data()[ix[i] * width + j] += g.data()[i * width + j];
  });
}

WEFT_NAMESPACE_END
