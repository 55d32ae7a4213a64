// examples/common/roundtrip.hpp - issue 16's "detach round trip": every family attached to one
// nn::MLP, then detached in reverse order. Shared by examples/compose_detach.cpp (the
// scripts/reproduce row) and tests/peft/attachment_test.cpp (which adds the out-of-order checks),
// so both run the same composition. Needs only weft headers (no CLI11, no doctest).
//
// attach_every_family(m, rng) attaches, on an MLP with Linears "layers.0" .. "layers.2" (each
// 16 x 16 or 8 x 16), in this order, and returns the nine records:
//   0 LoRA r = 2 on layers.0              5 StatsQ 2 bits + a 4-bit activation quantiser on
//   1 PiSSA r = 2 on layers.1 (rewrites W)   layers.0 and layers.2 (weight and input quantisers)
//   2 BoneShared r = 4 on layers.2        6 the compander on layers.1 (rewrites W_res to v)
//   3 BoneAffine r = 4 on layers.0        7 LSQ 3 bits on layers.1
//   4 a Compacter (PHM) adapter on layers.1  8 a 50 % pruning mask on layers.2 (rewrites W)
// and sets every adapter parameter to N(0, 0.05^2) draws, so each adapter changes the output.
// Every weight transform stage meets another on one layer (layers.0: BoneAffine -> StatsQ;
// layers.1: compander -> LSQ under PiSSA and a PHM adapter; layers.2: StatsQ -> mask).
//
//   Rng rng(seed);  nn::MLP<float> m({16, 16, 16, 8}, rng);
//   auto r = roundtrip::run<float>(seed);   // bit-identical weights and outputs after the round trip?
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "weft/nn/attachment.hpp"
#include "weft/nn/layers.hpp"
#include "weft/peft/model.hpp"
#include "weft/phm/adapter.hpp"
#include "weft/prune/attach.hpp"
#include "weft/quant/activation.hpp"
#include "weft/quant/wrap.hpp"
#include "weft/reparam/attach.hpp"

namespace weft_examples::roundtrip {

using namespace weft;

/// The model's forward output on x, without gradients.
template <class T>
Tensor<T> output(nn::MLP<T>& m, const Tensor<T>& x) {
  Tape<T> tape;
  no_grad ng;
  return m(tape.constant(x)).value().clone();
}

/// Every stored parameter of the model's Linears (weights and biases), cloned.
template <class T>
std::vector<Tensor<T>> stored(nn::MLP<T>& m) {
  std::vector<Tensor<T>> out;
  for (auto& l : m.layers) {
    out.push_back(l.weight.value().clone());
    out.push_back(l.bias.value().clone());
  }
  return out;
}

/// Same shape and the same bits in every element.
template <class T>
bool identical(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.numel(); ++i) {
    const T u = a.flat(i), v = b.flat(i);
    if (std::memcmp(&u, &v, sizeof(T)) != 0) return false;
  }
  return true;
}
template <class T>
bool identical(const std::vector<Tensor<T>>& a, const std::vector<Tensor<T>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!identical(a[i], b[i])) return false;
  return true;
}

/// Attached objects on the model's Linears (all four slots).
template <class T>
std::size_t attached_count(nn::MLP<T>& m) {
  std::size_t n = 0;
  for (auto& l : m.layers)
    n += l.transforms().size() + l.side_paths().size() + l.input_transforms().size() + l.output_adapters().size();
  return n;
}

/// A tensor of N(0, sd^2) draws.
template <class T>
Tensor<T> normal(const Shape& s, Rng& rng, double sd) {
  Tensor<T> t(s);
  for (index_t i = 0; i < t.numel(); ++i) t.flat(i) = T(rng.normal(0.0, sd));
  return t;
}

/// A 50 % mask of a rows x cols matrix (every other entry).
inline prune::Mask half_mask(index_t r, index_t c, int phase) {
  prune::Mask m(r, c);
  for (std::size_t i = 0; i < m.keep.size(); ++i) m.keep[i] = std::uint8_t((int(i) + phase) % 2);
  return m;
}

/// The nine records of the file comment, attached to m = MLP({16, 16, 16, 8}).
template <class T>
std::vector<nn::Attachment<T>> attach_every_family(nn::MLP<T>& m, Rng& rng) {
  peft::LoraOptions lo;
  lo.r = 2;
  lo.alpha = 2.0;
  peft::LoraOptions pissa = lo;
  pissa.init = peft::LoraInit::pissa;
  peft::BoneOptions bo;
  bo.r = 4;
  phm::AdapterConfig pc = phm::AdapterConfig::make(phm::AdapterKind::compacter);
  pc.reduction_factor = 4;
  quant::ActivationQuantizerOptions ao;
  ao.scale = quant::ActScale::per_tensor;
  ao.bits = 4;
  quant::StatsQOptions so;
  so.bits = 2;
  quant::LsqOptions lq;
  lq.bits = 3;

  std::vector<nn::Attachment<T>> recs;  // any family's record
  recs.push_back(peft::attach_lora(m, lo, rng, {"layers.0"}));
  recs.push_back(peft::attach_lora(m, pissa, rng, {"layers.1"}));  // rewrites W
  recs.push_back(peft::attach_bone_shared(m, bo, rng, {"layers.2"}));
  recs.push_back(peft::attach_bone_affine(m, bo, rng, {"layers.0"}));
  recs.push_back(phm::add_adapters(m, pc, rng, {"layers.1"}));
  recs.push_back(quant::quantize_linears<T>(
      m, quant::statsq_factory<T>(so), nn::Selector<T>({"layers.0", "layers.2"}),
      [&](const std::string&, nn::Linear<T>& l) { return std::make_shared<quant::ActivationQuantizer<T>>(ao, l.in_features()); }));
  recs.push_back(reparam::attach_compander(m, reparam::CompanderOptions{}, {"layers.1"}));  // rewrites W_res to v
  recs.push_back(quant::quantize_linears(m, quant::lsq_factory<T>(lq), {"layers.1"}));
  recs.push_back(prune::apply_masks(m, {"layers.2"}, std::vector<prune::Mask>{half_mask(8, 16, 1)}));  // rewrites W
  for (auto& r : recs)
    if (r.is_adapter())
      for (auto p : r.parameters()) p.value().copy_from(normal<T>(p.shape(), rng, 0.05));
  return recs;
}

/// What one round trip gave.
struct Result {
  std::size_t records = 0;        ///< records attached (9)
  std::size_t objects = 0;        ///< objects on the layers while attached
  bool output_changed = false;    ///< the attached model's output differs from the untouched one
  bool weights_identical = false; ///< after detaching in reverse order, every weight and bias
  bool output_identical = false;  ///< ... and the forward output, bit for bit
  std::size_t left = 0;           ///< objects still attached afterwards (0)
};

/// One round trip on a fresh MLP({16, 16, 16, 8}) and a (5, 16) input drawn from `seed`.
template <class T>
Result run(std::uint64_t seed) {
  Rng rng(seed);
  nn::MLP<T> m({16, 16, 16, 8}, rng);
  const Tensor<T> x = normal<T>({5, 16}, rng, 1.0);
  const auto w0 = stored(m);
  const Tensor<T> y0 = output(m, x);
  auto recs = attach_every_family(m, rng);
  Result r;
  r.records = recs.size();
  r.objects = attached_count(m);
  r.output_changed = !identical(output(m, x), y0);
  for (auto it = recs.rbegin(); it != recs.rend(); ++it) it->detach();
  r.left = attached_count(m);
  r.weights_identical = identical(stored(m), w0);
  r.output_identical = identical(output(m, x), y0);
  return r;
}

}  // namespace weft_examples::roundtrip
