// examples/common/prune_charlm.hpp - the character-level language model of the D-Pruner
// verification protocol (../shared/specs/pruning_dpruner.md, section 10): text preprocessing,
// the splits into context windows, the model, pretraining and evaluation.
//
// Text: lower-case, drop '\r', tab -> space, runs of spaces -> one space; vocabulary (50)
// a-z 0-9 space \n . , ; : ' " ! ? ( ) - and '#' for anything else. Split: first floor(0.7 n)
// symbols train, up to floor(0.8 n) calibration, the rest test. An example is a position of a
// split with its K previous symbols (inside the split) as the context.
// Model: embedding 50 x E (N(0, 0.3^2)), concatenated (K E) -> Linear H, ReLU -> Linear H, ReLU
// -> Linear 50; He-normal sqrt(2 / fan_in) for the first two, sqrt(1 / fan_in) for the last,
// zero biases.
#pragma once

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/autograd/functions/shape.hpp"
#include "weft/core/autograd/functions/unary.hpp"
#include "weft/core/data.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"

namespace weft_examples::charlm {

using weft::index_t;

inline constexpr int vocab_size = 50;

inline int symbol_of(char ch) {
  static const std::string extra = " \n.,;:'\"!?()-";
  if (ch >= 'a' && ch <= 'z') return ch - 'a';
  if (ch >= '0' && ch <= '9') return 26 + (ch - '0');
  const std::size_t p = extra.find(ch);
  return p == std::string::npos ? 49 : 36 + int(p);
}

/// The preprocessed symbols of a text file of data/.
inline std::vector<int> load_symbols(const std::string& file) {
  std::ifstream f(weft::data_path(file), std::ios::binary);
  WEFT_CHECK(f.good(), io, "examples::load_symbols", "expected a readable file, got ", file);
  const std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<int> out;
  out.reserve(raw.size());
  bool last_space = false;
  for (char ch : raw) {
    if (ch == '\r') continue;
    if (ch == '\t') ch = ' ';
    if (ch >= 'A' && ch <= 'Z') ch = char(ch - 'A' + 'a');
    if (ch == ' ' && last_space) continue;
    last_space = ch == ' ';
    out.push_back(symbol_of(ch));
  }
  return out;
}

/// The examples of one split: targets at positions [begin + K, end) of `sym`.
struct Split {
  const std::vector<int>* sym = nullptr;
  index_t begin = 0, end = 0, k = 6;
  index_t size() const { return end - begin - k; }
  index_t target_pos(index_t i) const { return begin + k + i; }
};

/// Train / calibration / test splits of a symbol stream (70 / 10 / 20).
struct Domain {
  std::vector<int> sym;
  Split train, calib, test;
  Domain(std::vector<int> s, index_t k) : sym(std::move(s)) {
    const index_t n = index_t(sym.size()), a = index_t(0.7 * double(n)), b = index_t(0.8 * double(n));
    train = Split{&sym, 0, a, k};
    calib = Split{&sym, a, b, k};
    test = Split{&sym, b, n, k};
  }
};

/// Context indices (B * K) and labels of examples `rows` of a list of splits viewed as one set.
inline void batch_of(const std::vector<const Split*>& parts, const std::vector<index_t>& rows, std::vector<index_t>& idx,
                     std::vector<int>& labels) {
  const index_t k = parts.front()->k;
  idx.resize(rows.size() * std::size_t(k));
  labels.resize(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    index_t i = rows[r];
    std::size_t p = 0;
    while (i >= parts[p]->size()) i -= parts[p++]->size();
    const index_t t = parts[p]->target_pos(i);
    for (index_t j = 0; j < k; ++j) idx[r * std::size_t(k) + std::size_t(j)] = (*parts[p]->sym)[std::size_t(t - k + j)];
    labels[r] = (*parts[p]->sym)[std::size_t(t)];
  }
}

inline index_t total_size(const std::vector<const Split*>& parts) {
  index_t n = 0;
  for (auto* p : parts) n += p->size();
  return n;
}

struct ModelConfig {
  index_t k = 6, embed = 10, hidden = 64;
};

class CharLM : public weft::nn::Module<float> {
 public:
  weft::Parameter<float> emb;
  weft::nn::Linear<float> fc1, fc2, fc3;
  ModelConfig cfg;

  CharLM(const ModelConfig& c, weft::Rng& rng) : cfg(c) {
    weft::Tensor<float> e(weft::Shape{vocab_size, c.embed});
    weft::init::normal(e, 0.0, 0.3, rng);
    emb = weft::Parameter<float>(e, "emb");
    fc1 = make_linear(c.k * c.embed, c.hidden, 2.0, rng);
    fc2 = make_linear(c.hidden, c.hidden, 2.0, rng);
    fc3 = make_linear(c.hidden, vocab_size, 1.0, rng);
  }
  void visit(weft::nn::Members<float>& m) override {
    m.param("emb", emb);
    m.child("fc1", fc1);
    m.child("fc2", fc2);
    m.child("fc3", fc3);
  }
  /// Logits (B, 50) for context indices idx (B * K).
  weft::Var<float> forward(weft::Tape<float>& tape, const std::vector<index_t>& idx) {
    const index_t b = index_t(idx.size()) / cfg.k;
    weft::Var<float> x = weft::reshape(weft::gather_rows(tape.param(emb), idx), {b, cfg.k * cfg.embed});
    return fc3(weft::relu(fc2(weft::relu(fc1(x)))));
  }

 private:
  static weft::nn::Linear<float> make_linear(index_t in, index_t out, double gain, weft::Rng& rng) {
    weft::nn::Linear<float> l(in, out, rng);
    weft::init::normal(l.weight.value(), 0.0, std::sqrt(gain / double(in)), rng);
    l.bias.value().set_zero();
    return l;
  }
};

/// Pretraining: Adam (lr, betas 0.9 / 0.999, eps 1e-8), `epochs` over the shuffled union of parts.
inline void pretrain(CharLM& model, const std::vector<const Split*>& parts, int epochs, index_t batch, double lr,
                     std::uint64_t seed) {
  weft::nn::AdamOptions ao;
  ao.lr = lr;
  weft::nn::Adam<float> opt(model.parameters(), ao);
  weft::nn::TrainerOptions to;
  to.epochs = epochs;
  to.batch_size = batch;
  to.seed = seed;
  weft::nn::Trainer<float> trainer(opt, to);
  std::vector<index_t> idx;
  std::vector<int> lab;
  trainer.fit(total_size(parts), [&](weft::Tape<float>& tape, const std::vector<index_t>& rows) {
    batch_of(parts, rows, idx, lab);
    return weft::cross_entropy(model.forward(tape, idx), lab);
  });
}

/// Runs the model over every example of a split (no gradients) and returns the mean test loss
/// in nats per symbol; `each_batch` (optional) is called after each forward (calibration).
inline double evaluate(CharLM& model, const Split& s, index_t batch = 256) {
  weft::Tape<float> tape;
  weft::no_grad ng;
  std::vector<index_t> rows, idx;
  std::vector<int> lab;
  weft::CrossEntropyOptions co;
  co.reduction = weft::Reduction::sum;
  double total = 0;
  const std::vector<const Split*> parts = {&s};
  for (index_t b = 0; b < s.size(); b += batch) {
    rows.clear();
    for (index_t i = b; i < std::min(s.size(), b + batch); ++i) rows.push_back(i);
    batch_of(parts, rows, idx, lab);
    total += double(weft::cross_entropy(model.forward(tape, idx), lab, co).item());
    tape.reset();
  }
  return total / double(s.size());
}

}  // namespace weft_examples::charlm
