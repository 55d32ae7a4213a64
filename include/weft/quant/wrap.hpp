// weft/quant/wrap.hpp - putting quantisers on existing nn modules without copying them, and
// exporting the integer codes for deployment.
//
// quantize_linears(model, weight_factory, selector, input_factory) attaches the factory's weight
// quantiser (at the quantizer stage of the layer's transform chain: after a compander, before a
// mask) and optionally an input quantiser to every nn::Linear the selector picks (nn/select.hpp:
// names, a regex, a predicate on (name, layer), or all by default) of a module (an MLP, a
// MultiHeadAttention's four projections, a whole TinyViT), and returns the list.
// statsq_factory / lsq_factory build the usual factories. A layer that already carries a weight
// quantiser is an error (model unchanged).
//
//   auto att = quant::quantize_linears(model, quant::statsq_factory<float>(so),
//                                      [](const std::string& name, const nn::Linear<float>&) {
//                                        return name != "head";      // keep the head in float
//                                      });
//   quant::OscillationTracker<float> tr;  for (auto& l : att.layers) tr.track(l.weight);
//
// Export (spec Sec. 7): export_weights(att.layers[i]) gives the codes and steps of a layer's
// quantised weight, taking the quantiser from the record (QuantizedLayer, as quantize_linears /
// quantize_linear return it) (QuantizedWeights: value = step (code + offset), offset 1/2 for StatsQ), and
// quantized_linear(qw, x, bias) computes y = x Q(W)^T from the codes the way an integer kernel
// would: y_r = step_r (sum_j x_j k_rj + offset sum_j x_j) (+ b_r), the half-step offset becoming
// a correction term per output.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "weft/nn/attachment.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/select.hpp"
#include "weft/quant/lsq.hpp"
#include "weft/quant/statsq.hpp"

WEFT_NAMESPACE_BEGIN
namespace quant {

using nn::find_linears;  // every Linear of a model with its dotted name (nn/linear.hpp)

/// A predicate on (name, layer); converts to an nn::Selector.
template <class T>
using LinearFilter = std::function<bool(const std::string& name, const nn::Linear<T>& layer)>;
template <class T>
using WeightQuantizerFactory = std::function<std::shared_ptr<WeightQuantizer<T>>(const std::string& name, nn::Linear<T>& layer)>;
template <class T>
using InputQuantizerFactory = std::function<std::shared_ptr<nn::InputTransform<T>>(const std::string& name, nn::Linear<T>& layer)>;

/// One quantised layer: where it is and what was attached.
template <class T>
struct QuantizedLayer {
  std::string name;
  nn::Linear<T>* layer = nullptr;
  std::shared_ptr<WeightQuantizer<T>> weight;      ///< null when no weight quantiser was attached
  std::shared_ptr<nn::InputTransform<T>> input;    ///< null when no input quantiser was attached
};

/// What quantize_linears returns: an nn::Attachment (technique "quant": its weight and input
/// quantisers; detach() removes them, the stored weights were never rewritten) with the typed view
/// `layers`.
template <class T>
struct QuantAttachment : nn::Attachment<T> {
  using nn::Attachment<T>::Attachment;
  std::vector<QuantizedLayer<T>> layers;
  /// The entry of `layer` in this record, or null when the record does not hold it (a look-up
  /// by address in the record, for functions that are handed a layer and its record).
  const QuantizedLayer<T>* find(const nn::Linear<T>& layer) const noexcept {
    for (const auto& l : layers)
      if (l.layer == &layer) return &l;
    return nullptr;
  }
  /// The weight quantisers, in layer order.
  std::vector<std::shared_ptr<WeightQuantizer<T>>> weight_quantizers() const {
    std::vector<std::shared_ptr<WeightQuantizer<T>>> out;
    for (auto& l : layers)
      if (l.weight) out.push_back(l.weight);
    return out;
  }
};

/// Attaches w (at the quantizer stage of the weight's transform chain) and in (appended to the
/// input transforms) to one layer; either may be null.
template <class T>
QuantizedLayer<T> quantize_linear(nn::Linear<T>& layer, std::shared_ptr<WeightQuantizer<T>> w,
                                  std::shared_ptr<nn::InputTransform<T>> in = nullptr, std::string name = {}) {
  WEFT_CHECK(layer.weight.defined(), config, "quant::quantize_linear", "expected a constructed Linear, got an empty one");
  WEFT_CHECK(w || in, config, "quant::quantize_linear", "expected a weight or an input quantiser, got neither");
  if (w) layer.check_transform(*w, "quant::quantize_linear");
  if (w) layer.add_transform(w);
  if (in) layer.add_input_transform(in);
  return QuantizedLayer<T>{std::move(name), &layer, std::move(w), std::move(in)};
}

/// Quantises every Linear of `model` that `select` picks (all by default) with the factories'
/// quantisers. Every factory call and every composition check happens before any layer changes,
/// so a throwing call leaves the model as it was.
template <class T>
QuantAttachment<T> quantize_linears(nn::Module<T>& model, const WeightQuantizerFactory<T>& weight,
                                    const nn::SelectorArg<T>& select = {}, const InputQuantizerFactory<T>& input = {}) {
  const char* fn = "quant::quantize_linears";
  WEFT_CHECK(weight || input, config, fn, "expected a weight or an input quantiser factory, got neither");
  QuantAttachment<T> att("quant");
  for (auto& l : select.resolve(model, fn)) {
    WEFT_CHECK(l.second->weight.defined(), config, fn, "expected constructed layers, got an empty Linear '", l.first, "'");
    QuantizedLayer<T> q{l.first, l.second, weight ? weight(l.first, *l.second) : nullptr,
                        input ? input(l.first, *l.second) : nullptr};
    WEFT_CHECK(q.weight || q.input, config, fn, "expected the factories to return a quantiser for '", l.first,
               "', got none");
    if (q.weight) l.second->check_transform(*q.weight, fn);  // e.g. a second quantiser on one weight
    att.layers.push_back(std::move(q));
  }
  for (auto& q : att.layers) {
    if (q.weight) q.layer->add_transform(q.weight);
    if (q.input) q.layer->add_input_transform(q.input);
    if (q.weight) att.record(q.name, *q.layer, std::shared_ptr<nn::WeightTransform<T>>(q.weight));
    if (q.input) att.record(q.name, *q.layer, q.input);
  }
  att.seal();
  return att;
}

/// A factory of StatsQ transforms with options o (the same options for every layer). When `made`
/// is given, every quantiser it makes is also appended there, typed (for quant::CgaController,
/// which needs StatsQ objects; in the layer order of the record when quantize_linears calls it).
template <class T>
WeightQuantizerFactory<T> statsq_factory(const StatsQOptions& o = {},
                                         std::vector<std::shared_ptr<StatsQuantizerBase<T>>>* made = nullptr) {
  StatsQuantizer<dynamic_bits, T> probe(o);  // validates the options now
  (void)probe;
  return [o, made](const std::string&, nn::Linear<T>&) {
    auto q = std::make_shared<StatsQuantizer<dynamic_bits, T>>(o);
    if (made) made->push_back(q);
    return q;
  };
}
/// A factory of LSQ transforms with options o, each scale initialised from its layer's weight.
template <class T>
WeightQuantizerFactory<T> lsq_factory(const LsqOptions& o = {}) {
  return [o](const std::string&, nn::Linear<T>& l) { return std::make_shared<LsqQuantizer<dynamic_bits, T>>(o, l.weight.value()); };
}

/// Codes and steps of a quantised layer of a QuantAttachment: its weight quantiser, fed with the
/// stored weight through the enabled transforms before it; none may follow it (a mask after it
/// makes the effective weight Q(W) * M, which the codes alone do not describe).
template <class T>
QuantizedWeights<T> export_weights(const QuantizedLayer<T>& q) {
  const char* fn = "quant::export_weights";
  WEFT_CHECK(q.layer != nullptr && q.weight != nullptr, config, fn, "expected a layer with a weight quantiser, got ",
             q.layer ? "an input quantiser only" : "no layer", " for '", q.name, "'");
  const auto& tr = q.layer->transforms();
  std::size_t at = tr.size();
  for (std::size_t i = 0; i < tr.size(); ++i)
    if (tr[i].get() == q.weight.get()) at = i;
  WEFT_CHECK(at < tr.size(), config, fn, "expected the quantiser of '", q.name, "' on its layer, got it removed");
  for (std::size_t i = at + 1; i < tr.size(); ++i)
    WEFT_CHECK(!tr[i]->enabled(), config, fn, "expected the weight quantiser last in the chain of '", q.name, "', got '",
               tr[i]->name(), "' after it");
  Tensor<T> w = q.layer->weight.value().clone();
  for (std::size_t i = 0; i < at; ++i)
    if (tr[i]->enabled()) w = tr[i]->fold(w);
  return q.weight->quantize(w);
}

/// y = x Q(W)^T (+ bias) from the integer codes (see the file comment); x (..., in), W (out, in)
/// quantised per row or per tensor.
template <class T>
Tensor<T> quantized_linear(const QuantizedWeights<T>& qw, const Tensor<T>& x, const Tensor<T>* bias = nullptr) {
  const char* fn = "quant::quantized_linear";
  qw.validate(fn);
  WEFT_CHECK(qw.shape.rank() == 2, shape, fn, "expected codes of a rank-2 weight, got shape ", qw.shape);
  const index_t out = qw.shape[0], in = qw.shape[1];
  const bool per_row = qw.geometry.outer == 1 && qw.geometry.groups == out && qw.geometry.inner == in;
  const bool per_tensor = qw.geometry.groups == 1;
  WEFT_CHECK(per_row || per_tensor, config, fn, "expected per-row or per-tensor steps, got ", qw.geometry.groups, " groups");
  WEFT_CHECK(x.rank() >= 1 && x.shape().last() == in, shape, fn, "expected x of shape (..., ", in, "), got ", x.shape());
  if (bias) WEFT_CHECK(bias->shape() == Shape{out}, shape, fn, "expected a bias of shape (", out, "), got ", bias->shape());
  const index_t rows = x.numel() / in;
  Tensor<T> y(x.shape().with(-1, out));
  for (index_t b = 0; b < rows; ++b) {
    const T* xr = x.data() + b * in;
    T xsum(0);
    for (index_t j = 0; j < in; ++j) xsum += xr[j];
    for (index_t r = 0; r < out; ++r) {
      const qcode_t* k = qw.codes.data() + r * in;
      T acc(0);  // an integer kernel accumulates sum_j x_j k_j in its own precision
      for (index_t j = 0; j < in; ++j) acc += xr[j] * T(k[j]);
      T v = qw.step[std::size_t(per_row ? r : 0)] * (acc + qw.offset * xsum);
      if (bias) v += bias->flat(r);
      y.flat(b * out + r) = v;
    }
  }
  return y;
}

}  // namespace quant
WEFT_NAMESPACE_END
