// Tests of the language-model pieces: causal_attention (core/autograd/functions/attention.hpp)
// against a masked loop reference, with float64 gradient checks, causality and thread
// independence; nn::Embedding and nn::PositionalEmbedding (nn/embedding.hpp); the text data
// of nn/text_data.hpp; nn::CausalLM, its loss, evaluation and sampler (nn/causal_lm.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/parallel.hpp"
#include "weft/nn/causal_lm.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/state_dict.hpp"

namespace weft_unit_nn_causal_lm_test {

using namespace weft;
using weft::nn_test::contract;
using weft::nn_test::param_grad_check;

namespace {

/// Causal softmax(Q_h K_h^T / sqrt(d)) V_h with plain loops: token i sees tokens 0..i.
Tensor<double> causal_reference(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v, index_t H) {
  const index_t B = q.dim(0), N = q.dim(1), D = q.dim(2), d = D / H;
  Tensor<double> out(q.shape());
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h)
      for (index_t i = 0; i < N; ++i) {
        std::vector<double> s(std::size_t(i + 1));
        double mx = -1e300, z = 0;
        for (index_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (index_t c = 0; c < d; ++c) dot += q(b, i, h * d + c) * k(b, j, h * d + c);
          s[std::size_t(j)] = dot / std::sqrt(double(d));
          mx = std::max(mx, s[std::size_t(j)]);
        }
        for (auto& e : s) z += (e = std::exp(e - mx));
        for (index_t c = 0; c < d; ++c) {
          double acc = 0;
          for (index_t j = 0; j <= i; ++j) acc += s[std::size_t(j)] / z * v(b, j, h * d + c);
          out(b, i, h * d + c) = acc;
        }
      }
  return out;
}

nn::CausalLMConfig tiny_config(bool tied) {
  nn::CausalLMConfig c;
  c.vocab = 5;
  c.dim = 8;
  c.layers = 2;
  c.heads = 2;
  c.context = 6;
  c.mlp_ratio = 2;
  c.tied_head = tied;
  return c;
}

nn::TokenBatch batch_of(std::vector<index_t> ids, index_t batch, index_t len) {
  nn::TokenBatch b;
  b.batch = batch;
  b.len = len;
  b.inputs = ids;
  for (std::size_t i = 0; i < ids.size(); ++i) b.targets.push_back(int((ids[i] * 3 + 1) % 5));
  return b;
}

}  // namespace

TEST_CASE("core/autograd/causal_attention: matches a masked loop reference across row blocks") {
  Rng rng(3);
  for (index_t N : {1, 5, 32, 33, 70}) {
    for (index_t H : {1, 2, 3}) {
      CAPTURE(N);
      CAPTURE(H);
      const Tensor<double> q = test::randn<double>({2, N, 6}, rng), k = test::randn<double>({2, N, 6}, rng),
                           v = test::randn<double>({2, N, 6}, rng);
      Tape<double> tape;
      Var<double> o = causal_attention(tape.constant(q), tape.constant(k), tape.constant(v), H);
      CHECK(o.shape() == Shape{2, N, 6});
      WEFT_CHECK_CLOSE(o.value(), causal_reference(q, k, v, H), 1e-12);
    }
  }
}

TEST_CASE("core/autograd/causal_attention: float64 gradients (central differences) over a block boundary") {
  Rng rng(4);
  for (index_t N : {3, 35}) {
    CAPTURE(N);
    const Tensor<double> q = test::randn<double>({2, N, 4}, rng), k = test::randn<double>({2, N, 4}, rng),
                         v = test::randn<double>({2, N, 4}, rng);
    auto f = [](Tape<double>&, const std::vector<Var<double>>& x) { return causal_attention(x[0], x[1], x[2], 2); };
    WEFT_CHECK_GRAD(weft::grad_check(f, {q, k, v}));
    // one tensor used as q, k and v: the three contributions add up
    auto g = [](Tape<double>&, const std::vector<Var<double>>& x) { return causal_attention(x[0], x[0], x[0], 2); };
    WEFT_CHECK_GRAD(weft::grad_check(g, {q}));
  }
}

TEST_CASE("core/autograd/causal_attention: outputs before a token do not depend on it") {
  Rng rng(5);
  const Tensor<double> q = test::randn<double>({1, 40, 8}, rng), k = test::randn<double>({1, 40, 8}, rng),
                       v = test::randn<double>({1, 40, 8}, rng);
  Tensor<double> k2 = k.clone(), v2 = v.clone(), q2 = q.clone();
  for (index_t c = 0; c < 8; ++c) {  // change token 36 (and after) everywhere
    for (index_t i = 36; i < 40; ++i) k2(0, i, c) += 1.0, v2(0, i, c) -= 2.0, q2(0, i, c) *= 3.0;
  }
  Tape<double> tape;
  const Tensor<double>& a = causal_attention(tape.constant(q), tape.constant(k), tape.constant(v), 2).value();
  const Tensor<double>& b = causal_attention(tape.constant(q2), tape.constant(k2), tape.constant(v2), 2).value();
  for (index_t i = 0; i < 40; ++i)
    for (index_t c = 0; c < 8; ++c) {
      if (i < 36) CHECK(a(0, i, c) == b(0, i, c));
      else if (c == 0) CHECK(a(0, i, c) != b(0, i, c));
    }
}

TEST_CASE("core/autograd/causal_attention: 1 and 2 threads agree bit for bit (values and gradients)") {
  Rng rng(6);
  const Tensor<float> q = test::randn<float>({3, 50, 16}, rng), k = test::randn<float>({3, 50, 16}, rng),
                      v = test::randn<float>({3, 50, 16}, rng), r = test::randn<float>({3, 50, 16}, rng);
  const int saved = num_threads();
  std::vector<Tensor<float>> res[2];
  for (int th : {1, 2}) {
    set_num_threads(th);
    Tape<float> tape;
    Var<float> a = tape.variable(q), b = tape.variable(k), c = tape.variable(v);
    Var<float> o = causal_attention(a, b, c, 4);
    tape.backward(contract(o, r));
    res[th - 1] = {o.value().clone(), a.grad().clone(), b.grad().clone(), c.grad().clone()};
  }
  set_num_threads(saved);
  for (std::size_t i = 0; i < 4; ++i) CHECK(res[0][i].array().cwiseEqual(res[1][i].array()).all());
}

TEST_CASE("core/autograd/causal_attention: bad input") {
  Tape<double> tape;
  Var<double> a = tape.constant(Tensor<double>(Shape{1, 4, 6})), b = tape.constant(Tensor<double>(Shape{1, 3, 6}));
  WEFT_NN_CHECK_FAILS(causal_attention(a, b, a, 2), ShapeError, "causal_attention");
  WEFT_NN_CHECK_FAILS(causal_attention(a, a, a, 4), ShapeError, "causal_attention");
  Var<double> r2 = tape.constant(Tensor<double>(Shape{4, 6}));
  WEFT_NN_CHECK_FAILS(causal_attention(r2, r2, r2, 2), ShapeError, "causal_attention");
}

TEST_CASE("nn/attention: causal MultiHeadAttention agrees with full attention on the last token") {
  Rng rng(7);
  nn::MultiHeadAttention<double> mha(8, 2, rng);
  const Tensor<double> x = test::randn<double>({2, 5, 8}, rng);
  Tape<double> tape;
  const Tensor<double> full = mha(tape.constant(x)).value().clone();
  mha.causal = true;
  const Tensor<double> causal = mha(tape.constant(x)).value().clone();
  for (index_t b = 0; b < 2; ++b)
    for (index_t c = 0; c < 8; ++c) {
      CHECK(causal(b, 4, c) == doctest::Approx(full(b, 4, c)).epsilon(1e-12));
      CHECK(causal(b, 0, c) != doctest::Approx(full(b, 0, c)).epsilon(1e-6));
    }
  const Tensor<double> R = test::randn<double>({2, 5, 8}, rng);
  auto r = param_grad_check(mha.parameters(), [&](Tape<double>& t) { return contract(mha(t.constant(x)), R); });
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("nn/embedding: Embedding gathers rows, scatter-adds gradients, rejects bad ids") {
  Rng rng(8);
  nn::Embedding<double> emb(7, 3, rng);
  CHECK(emb.weight.shape() == Shape{7, 3});
  const std::vector<index_t> ids = {2, 0, 2, 6, 2, 1};  // token 2 three times
  Tape<double> tape;
  Var<double> e = emb.forward(tape, ids, 2, 3);
  CHECK(e.shape() == Shape{2, 3, 3});
  for (index_t i = 0; i < 6; ++i)
    for (index_t c = 0; c < 3; ++c) CHECK(e.value().flat(i * 3 + c) == emb.weight.value()(ids[std::size_t(i)], c));
  const Tensor<double> R = test::randn<double>({2, 3, 3}, rng);
  auto r = param_grad_check(emb.parameters(), [&](Tape<double>& t) { return contract(emb.forward(t, ids, 2, 3), R); });
  CHECK_MESSAGE(r.ok, r.message);
  for (index_t c = 0; c < 3; ++c) {  // unused rows get exactly zero, the repeated one the sum
    CHECK(emb.weight.grad()(3, c) == 0.0);
    CHECK(emb.weight.grad()(2, c) == doctest::Approx(R.flat(c) + R.flat(6 + c) + R.flat(12 + c)));
  }
  WEFT_NN_CHECK_FAILS(emb.forward(tape, {0, 7}, 1, 2), ValueError, "nn::Embedding::forward");
  WEFT_NN_CHECK_FAILS(emb.forward(tape, {0, -1}, 1, 2), ValueError, "nn::Embedding::forward");
  WEFT_NN_CHECK_FAILS(emb.forward(tape, {0, 1, 2}, 1, 2), ShapeError, "nn::Embedding::forward");
  WEFT_NN_CHECK_FAILS(nn::Embedding<double>(0, 3, rng), ShapeError, "nn::Embedding");
}

TEST_CASE("nn/embedding: PositionalEmbedding adds the first N rows, gradient summed over the batch") {
  Rng rng(10);
  nn::PositionalEmbedding<double> pos(5, 4, rng);
  const Tensor<double> x = test::randn<double>({3, 4, 4}, rng), R = test::randn<double>({3, 4, 4}, rng);
  Tape<double> tape;
  Var<double> y = pos(tape.constant(x));
  for (index_t b = 0; b < 3; ++b)
    for (index_t i = 0; i < 4; ++i)
      for (index_t c = 0; c < 4; ++c) CHECK(y.value()(b, i, c) == x(b, i, c) + pos.weight.value()(i, c));
  auto r = param_grad_check(pos.parameters(), [&](Tape<double>& t) { return contract(pos(t.constant(x)), R); });
  CHECK_MESSAGE(r.ok, r.message);
  for (index_t c = 0; c < 4; ++c) CHECK(pos.weight.grad()(4, c) == 0.0);  // row 4 unused at N = 4
  WEFT_NN_CHECK_FAILS(pos(tape.constant(Tensor<double>(Shape{1, 6, 4}))), ShapeError, "nn::PositionalEmbedding::forward");
  WEFT_NN_CHECK_FAILS(pos(tape.constant(Tensor<double>(Shape{1, 2, 3}))), ShapeError, "nn::PositionalEmbedding::forward");
}

TEST_CASE("nn/text_data: vocabulary, split by position, seeded windows, evaluation windows") {
  const std::string text = "to be, or not to be: that is the question";
  nn::CharVocab vocab(std::vector<std::string>{text, "Q!"});
  CHECK(vocab.size() == 17);  // ' ' ! , : Q a b e h i n o q r s t u
  for (index_t i = 1; i < vocab.size(); ++i) CHECK(vocab.character(i - 1) < vocab.character(i));
  const std::vector<index_t> ids = vocab.encode(text);
  CHECK(vocab.decode(ids) == text);
  WEFT_NN_CHECK_FAILS(vocab.encode("tox"), ValueError, "nn::CharVocab::encode");
  WEFT_NN_CHECK_FAILS(vocab.character(17), ValueError, "nn::CharVocab::character");

  const nn::TextSplit s = nn::split_by_position(ids, 0.75);
  CHECK(s.train.size() == std::size_t(0.75 * double(ids.size())));
  CHECK(s.train.size() + s.val.size() == ids.size());
  CHECK(vocab.decode(s.train) + vocab.decode(s.val) == text);
  WEFT_NN_CHECK_FAILS(nn::split_by_position(ids, 1.0), ValueError, "nn::split_by_position");

  nn::TextBatcher a(s.train, {4, 5, 11}), b(s.train, {4, 5, 11}), c(s.train, {4, 5, 12});
  bool differs = false;
  for (int step = 0; step < 20; ++step) {
    const nn::TokenBatch x = a.next(), y = b.next(), z = c.next();
    CHECK(x.inputs == y.inputs);
    differs = differs || x.inputs != z.inputs;
    REQUIRE(x.inputs.size() == 20);
    for (index_t w = 0; w < 4; ++w) {  // each window is a contiguous piece of the train split
      const std::string win = vocab.decode(std::vector<index_t>(x.inputs.begin() + w * 5, x.inputs.begin() + w * 5 + 5));
      const std::size_t at = vocab.decode(s.train).find(win);
      CHECK(at != std::string::npos);
      for (index_t j = 0; j < 4; ++j) CHECK(x.targets[std::size_t(w * 5 + j)] == int(x.inputs[std::size_t(w * 5 + j + 1)]));
    }
  }
  CHECK(differs);
  WEFT_NN_CHECK_FAILS(nn::TextBatcher(s.val, {1, index_t(s.val.size()), 0}), ShapeError, "nn::TextBatcher");

  const std::vector<nn::TokenBatch> ev = nn::eval_windows(ids, 4, 3);
  std::size_t windows = 0;
  for (const auto& e : ev) {
    CHECK(e.batch <= 3);
    windows += std::size_t(e.batch);
  }
  CHECK(windows == (ids.size() - 1) / 4);
  CHECK(ev[0].targets[3] == int(ids[4]));
  CHECK(ev[0].inputs[4] == ids[4]);  // the second window starts where the first ends
}

TEST_CASE("nn/causal_lm: size, dotted names, tied head") {
  Rng rng(11);
  nn::CausalLMConfig c;
  c.vocab = 65;
  nn::CausalLM<float> m(c, rng);
  const index_t n = m.num_parameters();
  CHECK(n >= 800000);
  CHECK(n <= 1500000);
  auto names = m.named_parameters();
  CHECK(names.front().first == "tok_emb.weight");
  CHECK(names[1].first == "pos_emb.weight");
  CHECK(names[2].first == "blocks.0.ln1.gamma");
  CHECK(names.back().first == "head.weight");
  bool found = false;
  for (auto& p : names) found = found || p.first == "blocks.3.attn.q_proj.weight";
  CHECK(found);
  c.tied_head = true;
  nn::CausalLM<float> tied(c, rng);
  CHECK(tied.num_parameters() == n - 65 * 128);
  CHECK(tied.named_parameters().back().first == "norm.beta");
  WEFT_NN_CHECK_FAILS(nn::CausalLM<float>(nn::CausalLMConfig{}, rng), ValueError, "nn::CausalLM");
  c.heads = 3;
  WEFT_NN_CHECK_FAILS(nn::CausalLM<float>(c, rng), ShapeError, "nn::CausalLM");
}

TEST_CASE("nn/causal_lm: float64 parameter gradients of the loss, tied and untied") {
  for (bool tied : {false, true}) {
    CAPTURE(tied);
    Rng rng(12);
    nn::CausalLM<double> m(tiny_config(tied), rng);
    const nn::TokenBatch b = batch_of({0, 1, 2, 3, 4, 1, 1, 3, 0, 2}, 2, 5);
    auto r = param_grad_check(m.parameters(), [&](Tape<double>& t) { return m.loss(t, b); });
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("nn/causal_lm: logits at a position do not depend on later tokens") {
  Rng rng(13);
  nn::CausalLM<double> m(tiny_config(false), rng);
  Tape<double> tape;
  const Tensor<double> a = m.forward(tape, {1, 2, 3, 4, 0, 1}, 1, 6).value().clone();
  const Tensor<double> b = m.forward(tape, {1, 2, 3, 0, 4, 4}, 1, 6).value().clone();
  for (index_t j = 0; j < 5; ++j) {
    for (index_t i = 0; i < 3; ++i) CHECK(a(i, j) == b(i, j));
  }
  CHECK(a(3, 0) != b(3, 0));
  WEFT_NN_CHECK_FAILS(m.forward(tape, std::vector<index_t>(7, 0), 1, 7), ShapeError, "nn::CausalLM::forward");
}

TEST_CASE("nn/causal_lm: training learns a periodic text; sampler and state dict") {
  Rng rng(14);
  nn::CausalLMConfig c = tiny_config(false);
  c.dim = 16;
  c.context = 8;
  nn::CausalLM<float> m(c, rng);
  std::vector<index_t> ids;
  for (int i = 0; i < 400; ++i) ids.push_back(index_t((i * 2) % 5));  // 0 2 4 1 3 0 2 ...
  const double before = nn::evaluate_bits_per_token(m, ids, 8);
  nn::TextBatcher batches(ids, {8, 8, 1});
  nn::Adam<float> opt(m.parameters(), {1e-2});
  for (int step = 0; step < 150; ++step) {
    Tape<float> tape;
    m.zero_grad();
    tape.backward(m.loss(tape, batches.next()));
    nn::clip_grad_norm(m.parameters(), 1.0);
    opt.step();
  }
  const double after = nn::evaluate_bits_per_token(m, ids, 8);
  CHECK(before > 2.0);  // about log2(5) = 2.32 at initialisation
  CHECK(after < 0.2);   // the next token is determined by the previous one
  const std::vector<index_t> g = nn::generate(m, {0, 2}, 10);
  REQUIRE(g.size() == 10);
  for (std::size_t i = 0; i < g.size(); ++i) CHECK(g[i] == index_t((4 + 2 * i) % 5));
  const std::vector<index_t> s1 = nn::generate(m, {0}, 30, {5.0, 3}), s2 = nn::generate(m, {0}, 30, {5.0, 3});
  CHECK(s1 == s2);
  CHECK(s1 != nn::generate(m, {0}, 30));  // a hot sampler leaves the greedy path
  WEFT_NN_CHECK_FAILS(nn::generate(m, {}, 3), ValueError, "nn::generate");

  const std::string path = test::temp_path("causal_lm.safetensors");
  nn::save_state_dict(m, path);
  Rng other(99);
  nn::CausalLM<float> fresh(c, other);
  nn::load_state_dict(fresh, path);
  CHECK(nn::evaluate_bits_per_token(fresh, ids, 8) == after);
}

TEST_CASE("nn/causal_lm: a training step gives the same parameters bit for bit with 1 and 2 threads") {
  nn::CausalLMConfig c;
  c.vocab = 20, c.dim = 64, c.layers = 2, c.heads = 4, c.context = 64;  // products above the parallel threshold
  std::vector<index_t> text(3000);
  Rng trng(15);
  for (auto& t : text) t = index_t(trng.below(20));
  const int saved = num_threads();
  std::vector<std::vector<Tensor<float>>> after(2);
  for (int th : {1, 2}) {
    set_num_threads(th);
    Rng rng(16);
    nn::CausalLM<float> m(c, rng);
    nn::TextBatcher batches(text, {8, 64, 3});
    nn::AdamW<float> opt(m.parameters());
    for (int step = 0; step < 2; ++step) {
      Tape<float> tape;
      m.zero_grad();
      tape.backward(m.loss(tape, batches.next()));
      nn::clip_grad_norm(m.parameters(), 1.0);
      opt.step();
    }
    for (auto& p : m.parameters()) after[std::size_t(th - 1)].push_back(p.value().clone());
  }
  set_num_threads(saved);
  REQUIRE(after[0].size() == after[1].size());
  for (std::size_t i = 0; i < after[0].size(); ++i) CHECK(after[0][i].array().cwiseEqual(after[1][i].array()).all());
}

TEST_CASE("nn/causal_lm: attention is used: a copy-3-back task no bigram model can learn") {
  // blocks of 24 tokens, each a random triplet over 8 symbols repeated: the next token is the
  // one 3 back (except where a block starts), while the previous token says nothing about it
  // (a bigram model stays near log2(8) = 3 bits)
  Rng rng(17);
  std::vector<index_t> text;
  for (int blk = 0; blk < 300; ++blk) {
    const index_t t[3] = {index_t(rng.below(8)), index_t(rng.below(8)), index_t(rng.below(8))};
    for (int i = 0; i < 24; ++i) text.push_back(t[i % 3]);
  }
  nn::CausalLMConfig c;
  c.vocab = 8, c.dim = 32, c.layers = 1, c.heads = 2, c.context = 16, c.mlp_ratio = 2;
  nn::CausalLM<float> m(c, rng);
  nn::TextBatcher batches(text, {16, 16, 4});
  nn::Adam<float> opt(m.parameters(), {3e-3});
  for (int step = 0; step < 400; ++step) {
    Tape<float> tape;
    m.zero_grad();
    tape.backward(m.loss(tape, batches.next()));
    opt.step();
  }
  const double bits = nn::evaluate_bits_per_token(m, text, 16);
  CAPTURE(bits);
  // the first 3 of every 16 predictions and block starts are unpredictable: about 0.7 bits
  CHECK(bits < 1.5);
}

}  // namespace weft_unit_nn_causal_lm_test
