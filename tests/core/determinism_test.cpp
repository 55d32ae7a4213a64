// Results do not depend on the thread count: 1, 2, 3 and 4 threads give the same bits (memcmp)
// for the matrix products (every transposition, shapes that cross every split rule) and for one
// training step (forward, backward, optimiser) of an MLP, a tiny ViT, D-Pruner's dual
// importance pass, LoRA + BoneShared adapters, PHM layers (full and low-rank B) and an EP step.
// Without OpenMP every run is single-threaded and the checks hold trivially.
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <vector>

#include "support/test_util.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/ops/matmul.hpp"
#include "weft/ep.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"
#include "weft/nn/vit.hpp"
#include "weft/peft/model.hpp"
#include "weft/phm/layer.hpp"
#include "weft/prune/dpruner.hpp"

namespace weft_unit_core_determinism_test {

using namespace weft;
using weft::test::ThreadCountGuard;

namespace {

/// Runs `run` at 1, 2, 3 and 4 threads; every result must equal the 1-thread one bit for bit.
template <class T>
void check_thread_independent(const std::function<std::vector<Tensor<T>>()>& run) {
  ThreadCountGuard guard;
  set_num_threads(1);
  const std::vector<Tensor<T>> ref = run();
  REQUIRE(!ref.empty());
  for (int threads = 2; threads <= 4; ++threads) {
    CAPTURE(threads);
    set_num_threads(threads);
    const std::vector<Tensor<T>> got = run();
    REQUIRE(got.size() == ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      CAPTURE(i);
      CHECK(test::identical(got[i], ref[i]));
    }
  }
}

template <class T>
std::vector<Tensor<T>> values_of(const std::vector<Parameter<T>>& ps) {
  std::vector<Tensor<T>> out;
  for (const auto& p : ps) out.push_back(p.value().clone());
  return out;
}

std::vector<int> labels(index_t n, int classes, Rng& rng) {
  std::vector<int> y(static_cast<std::size_t>(n));
  for (auto& v : y) v = int(rng.below(std::uint64_t(classes)));
  return y;
}

/// One Adam step of `model` on cross_entropy(model(x), y): the loss and every parameter after it.
template <class T, class Model>
std::vector<Tensor<T>> adam_step(Model& model, const std::vector<Parameter<T>>& params, const Tensor<T>& x,
                                 const std::vector<int>& y) {
  nn::AdamOptions ao;
  ao.lr = 1e-2;
  nn::Adam<T> opt(params, ao);
  Tape<T> tape;
  Var<T> loss = cross_entropy(model(tape.constant(x)), y);
  tape.backward(loss);
  std::vector<Tensor<T>> out = {loss.value().clone()};
  for (const auto& p : params) out.push_back(p.grad().clone());
  opt.step();
  for (auto& t : values_of(params)) out.push_back(t);
  return out;
}

struct Dims {
  index_t m, n, k;
};

// 128 x 256 x 128 has exactly gemm_parallel_work multiply-adds and more columns than rows: the
// old gemm split C into one column block per thread (2 threads: 2 blocks of 128), and Eigen
// computed ~5% of the elements differently with AVX2/FMA (this test failed there, as did the
// training steps below). The shape-only layout splits 16 x 2048 x 256 into 8 column blocks of
// 256 and 64 x 768 x 768 into 3; 300 x 77 x 513 (tall, ragged; the old code split its rows),
// 7 x 4096 x 33 and 40 x 40 x 40 are one Eigen call at any thread count.
const Dims gemm_shapes[] = {{128, 256, 128}, {300, 77, 513}, {16, 2048, 256},
                            {64, 768, 768},  {7, 4096, 33},  {40, 40, 40}};

template <class T>
void check_gemm_variants() {
  static_assert(128.0 * 256 * 128 >= ops::gemm_parallel_work, "the first shape must be a parallel product");
  for (const Dims d : gemm_shapes)
    for (int v = 0; v < 4; ++v) {
      const bool ta = v & 1, tb = v & 2;
      CAPTURE(d.m);
      CAPTURE(d.n);
      CAPTURE(d.k);
      CAPTURE(v);
      Rng rng(7);
      const Tensor<T> A = test::randn<T>(Shape{d.m * d.k}, rng), B = test::randn<T>(Shape{d.k * d.n}, rng);
      const Tensor<T> C0 = test::randn<T>(Shape{d.m * d.n}, rng);
      check_thread_independent<T>([&] {
        Tensor<T> C = C0.clone(), Cacc = C0.clone();
        ops::gemm(ta, tb, A.data(), B.data(), C.data(), d.m, d.n, d.k, false);
        ops::gemm(ta, tb, A.data(), B.data(), Cacc.data(), d.m, d.n, d.k, true);
        return std::vector<Tensor<T>>{C, Cacc};
      });
    }
}

}  // namespace

TEST_CASE_TEMPLATE("core/determinism: gemm gives the same bits with 1-4 threads, every transposition", T, float,
                   double) {
  check_gemm_variants<T>();
}

TEST_CASE_TEMPLATE("core/determinism: one MLP training step is thread-count independent", T, float, double) {
  check_thread_independent<T>([] {
    Rng rng(11);
    nn::MLP<T> model({256, 256, 128, 10}, rng);  // 128 x 256 x 256 products: split over columns
    const Tensor<T> x = test::randn<T>(Shape{128, 256}, rng);
    const std::vector<int> y = labels(128, 10, rng);
    return adam_step<T>(model, model.parameters(), x, y);
  });
}

TEST_CASE("core/determinism: one tiny ViT training step is thread-count independent") {
  check_thread_independent<float>([] {
    Rng rng(12);
    nn::ViTConfig c;
    c.image_size = 16;  // 64 patches + the class token: 8 x 65 = 520 token rows of width 128
    c.patch = 2;
    c.dim = 128;
    c.depth = 1;
    c.heads = 4;
    nn::TinyViT<float> vit(c, rng);
    const Tensor<float> x = test::randn<float>(Shape{8, 256}, rng);
    const std::vector<int> y = labels(8, 10, rng);
    return adam_step<float>(vit, vit.parameters(), x, y);
  });
}

TEST_CASE("core/determinism: D-Pruner's dual importance pass is thread-count independent") {
  check_thread_independent<float>([] {
    Rng rng(13);
    nn::MLP<float> model({256, 256, 10}, rng);
    const Tensor<float> x = test::randn<float>(Shape{256, 256}, rng);
    const std::vector<int> y = labels(256, 10, rng);
    const std::vector<Parameter<float>> weights = {model.layers[0].weight, model.layers[1].weight};
    const std::vector<Tensor<float>> general = {test::rand_uniform<float>(Shape{256, 256}, rng, 0, 1),
                                                test::rand_uniform<float>(Shape{10, 256}, rng, 0, 1)};
    std::vector<int> lab;
    auto loss = [&](Tape<float>& tape, const std::vector<index_t>& rows) {
      return cross_entropy(model(nn::batch_rows(tape, x, rows)), nn::batch_labels(y, rows, lab));
    };
    prune::DomainPassOptions o;
    o.batch_size = 128;
    o.epochs = 1;
    return prune::dual_importance_pass(model, weights, general, 256, loss, o);
  });
}

TEST_CASE("core/determinism: a LoRA + BoneShared step is thread-count independent") {
  check_thread_independent<float>([] {
    Rng rng(14);
    nn::MLP<float> model({256, 256, 256}, rng);
    peft::LoraOptions lo;
    lo.r = 8;
    peft::BoneOptions bo;
    bo.r = 64;
    const peft::Attachment<float> lora = peft::attach_lora(model, lo, rng);
    const peft::Attachment<float> bone = peft::attach_bone_shared(model, bo, rng);
    peft::freeze_base(model);
    std::vector<Parameter<float>> params = lora.parameters();
    for (const auto& p : bone.parameters()) params.push_back(p);
    for (auto& p : params) p.value().copy_from(test::randn<float>(p.shape(), rng, 0, 0.05));  // not a no-op
    const Tensor<float> x = test::randn<float>(Shape{128, 256}, rng);
    const std::vector<int> y = labels(128, 256, rng);
    return adam_step<float>(model, params, x, y);
  });
}

TEST_CASE("core/determinism: a PHM layer step is thread-count independent (full and low-rank B)") {
  for (const bool low_rank : {false, true}) {
    CAPTURE(low_rank);
    check_thread_independent<float>([low_rank] {
      Rng rng(15);
      phm::PhmOptions o;
      o.n = 4;
      o.shared_rule = false;
      o.low_rank = low_rank;
      o.rank = 8;  // n r = 32 > 16: the low-rank products are GEMMs, not thin products
      o.path = phm::Path::factored;
      phm::PhmLinear<float> layer(768, 768, rng, o);  // 64 rows: (256 x 192) (192 x 192) per term
      const Tensor<float> x = test::randn<float>(Shape{64, 768}, rng);
      const std::vector<int> y = labels(64, 768, rng);
      return adam_step<float>(layer, layer.parameters(), x, y);
    });
  }
}

TEST_CASE("core/determinism: an EP training step is thread-count independent") {
  check_thread_independent<double>([] {
    Rng rng(16);
    ep::NetOptions no;
    no.num_classes = 10;
    ep::DenseNet<double> net = ep::make_dense_net<double>({256, 256, 256, 10}, rng, no);
    const Tensor<double> x = test::randn<double>(Shape{64, 256}, rng);  // 64 x 256 x 256 products
    const std::vector<int> y = labels(64, 10, rng);
    ep::TrainOptions o;
    o.free_phase.gamma = 0.5;
    o.free_phase.max_iters = 20;
    o.hep.N = 2;
    o.hep.relax.gamma = 0.5;
    o.hep.relax.max_iters = 10;
    o.homeo_lambda = 0.5;
    o.homeo_draws = 2;
    nn::SGD<double> opt(net.parameters());
    Rng draws(17);
    const ep::StepStats st = ep::train_step(net, opt, x, y, o, draws);
    std::vector<Tensor<double>> out = values_of(net.parameters());
    Tensor<double> stats(Shape{3});
    stats.flat(0) = st.loss;
    stats.flat(1) = st.accuracy;
    stats.flat(2) = st.homeo_loss;
    out.push_back(stats);
    return out;
  });
}

}  // namespace weft_unit_core_determinism_test
