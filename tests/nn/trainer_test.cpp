// Tests of weft/nn/trainer.hpp: the training loop (fitting, determinism, callbacks, stopping,
// batching options, clipping, schedules, arena reuse) and the batching/evaluation helpers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/data.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/linear.hpp"
#include "weft/nn/trainer.hpp"

namespace weft_unit_nn_trainer_test {

using namespace weft;

namespace {

/// n points in 2-d, class 1 when x0 + 2 x1 > 0, pushed at least `margin` away from the boundary.
template <class T>
Dataset<T> separable(index_t n, std::uint64_t seed, double margin = 0.2) {
  Rng rng(seed);
  Dataset<T> d;
  d.x = Tensor<T>(Shape{n, 2});
  d.y.resize(std::size_t(n));
  for (index_t i = 0; i < n; ++i) {
    double a = rng.uniform(-1, 1), b = rng.uniform(-1, 1);
    const int cls = int(i % 2);
    const double s = a + 2 * b, want = cls ? margin : -margin;
    if ((cls && s < want) || (!cls && s > want)) b += (want - s) / 2;  // move onto the right side
    d.x(i, index_t(0)) = T(a);
    d.x(i, index_t(1)) = T(b);
    d.y[std::size_t(i)] = cls;
  }
  return d;
}

struct Problem {
  Dataset<double> data = separable<double>(64, 3);
  Rng rng{42};
  nn::Linear<double> model{2, 2, rng};
  std::vector<int> labels;
  auto loss_fn() {
    return [this](Tape<double>& tape, const std::vector<index_t>& rows) {
      return cross_entropy(model(nn::batch_rows(tape, data.x, rows)), nn::batch_labels(data.y, rows, labels));
    };
  }
};

/// A one-parameter model whose loss is linear in w: the gradient is `slope` whatever w is.
struct LinearLoss {
  Parameter<double> w{Tensor<double>::vector_of({0.0, 0.0})};
  double slope = 1.0;
  auto loss_fn() {
    return [this](Tape<double>& tape, const std::vector<index_t>&) { return sum(tape.param(w)) * slope; };
  }
};

}  // namespace

TEST_CASE("nn/trainer: fits a linearly separable problem") {
  Problem pb;
  nn::AdamOptions ao;
  ao.lr = 0.1;
  nn::Adam<double> opt(pb.model.parameters(), ao);
  nn::TrainerOptions o;
  o.epochs = 40;
  o.batch_size = 16;
  o.seed = 1;
  nn::Trainer<double> trainer(opt, o);
  std::vector<double> epoch_loss;
  trainer.on_epoch([&](nn::EpochInfo& e) { epoch_loss.push_back(e.mean_loss); });
  auto forward = [&](Tape<double>&, const Var<double>& x) { return pb.model(x); };
  nn::TrainSummary s = trainer.fit(pb.data.size(), pb.loss_fn());
  CHECK(s.epochs == 40);
  CHECK(s.steps == 40 * 4);
  REQUIRE(epoch_loss.size() == 40);
  CHECK(s.last_epoch_loss == epoch_loss.back());
  CHECK(epoch_loss.back() < 0.5 * epoch_loss.front());
  CHECK(epoch_loss.back() < 0.2);
  CHECK(s.seconds >= 0);
  CHECK(nn::accuracy<double>(forward, pb.data.x, pb.data.y) == 1.0);
  CHECK(nn::accuracy<double>(forward, pb.data.x, pb.data.y, 5) == 1.0);  // batched evaluation agrees
}

TEST_CASE("nn/trainer: deterministic given the seed") {
  auto run = [](std::uint64_t seed) {
    Problem pb;
    nn::AdamOptions ao;
    ao.lr = 0.05;
    nn::Adam<double> opt(pb.model.parameters(), ao);
    nn::TrainerOptions o;
    o.epochs = 5;
    o.batch_size = 10;
    o.seed = seed;
    nn::Trainer<double> trainer(opt, o);
    trainer.fit(pb.data.size(), pb.loss_fn());
    return std::vector<Tensor<double>>{pb.model.weight.value().clone(), pb.model.bias.value().clone()};
  };
  auto a = run(7), b = run(7), c = run(8);
  CHECK(test::identical(a[0], b[0]));
  CHECK(test::identical(a[1], b[1]));
  CHECK_FALSE(test::identical(a[0], c[0]));  // another shuffling order, other batches
}

TEST_CASE("nn/trainer: callbacks see every step and epoch with the right indices") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  nn::TrainerOptions o;
  o.epochs = 3;
  o.batch_size = 4;
  nn::Trainer<double> trainer(opt, o);
  std::vector<nn::StepInfo> steps;
  std::vector<int> epochs;
  std::vector<double> means;
  std::vector<std::size_t> batch_sizes;
  trainer.on_step([&](const nn::StepInfo& si) { steps.push_back(si); });
  trainer.on_epoch([&](nn::EpochInfo& e) {
    epochs.push_back(e.epoch);
    means.push_back(e.mean_loss);
    CHECK(e.seconds >= 0);
    CHECK_FALSE(e.stop);
  });
  int second_cb = 0;
  trainer.on_step([&](const nn::StepInfo&) { ++second_cb; });
  auto inner = ll.loss_fn();
  nn::TrainSummary s = trainer.fit(10, [&](Tape<double>& t, const std::vector<index_t>& rows) {
    batch_sizes.push_back(rows.size());
    return inner(t, rows);
  });
  // 10 samples in batches of 4: 4, 4, 2 -> 3 steps per epoch
  REQUIRE(steps.size() == 9);
  CHECK(second_cb == 9);
  for (std::size_t i = 0; i < 9; ++i) {
    CAPTURE(i);
    CHECK(steps[i].step == std::int64_t(i));
    CHECK(steps[i].epoch == int(i / 3));
    CHECK(steps[i].lr_factor == 1.0);
  }
  CHECK(batch_sizes == std::vector<std::size_t>{4, 4, 2, 4, 4, 2, 4, 4, 2});
  CHECK(epochs == std::vector<int>{0, 1, 2});
  for (int e = 0; e < 3; ++e) {
    const double m = (steps[3 * e].loss + steps[3 * e + 1].loss + steps[3 * e + 2].loss) / 3;
    CHECK(means[std::size_t(e)] == doctest::Approx(m).epsilon(1e-14));
  }
  // the loss is the value before the step: sum(w) falls by lr * 2 each step (SGD, lr 0.01)
  CHECK(steps[0].loss == 0.0);
  CHECK(steps[1].loss == doctest::Approx(-0.02));
  CHECK(s.epochs == 3);
  CHECK(s.steps == 9);
  CHECK(s.last_epoch_loss == means.back());
  CHECK(opt.steps() == 9);
}

TEST_CASE("nn/trainer: EpochInfo::stop ends training after that epoch") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  nn::TrainerOptions o;
  o.epochs = 10;
  o.batch_size = 4;
  nn::Trainer<double> trainer(opt, o);
  int calls = 0;
  trainer.on_epoch([&](nn::EpochInfo& e) {
    ++calls;
    e.extra = "note";
    if (e.epoch == 1) e.stop = true;
  });
  nn::TrainSummary s = trainer.fit(10, ll.loss_fn());
  CHECK(calls == 2);
  CHECK(s.epochs == 2);
  CHECK(s.steps == 6);
}

namespace {
std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string out;
  for (int c; (c = std::fgetc(f)) != EOF;) out += char(c);
  return out;
}
}  // namespace

TEST_CASE("nn/trainer: progress prints one plain line per epoch when the stream is not a terminal") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  nn::TrainerOptions o;
  o.epochs = 3;
  o.batch_size = 4;
  o.progress = true;
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  o.progress_stream = f;
  nn::Trainer<double> trainer(opt, o);
  trainer.on_epoch([](nn::EpochInfo& e) { e.extra = "note " + std::to_string(e.epoch); });
  trainer.fit(10, ll.loss_fn());
  const std::string out = read_all(f);
  std::fclose(f);
  INFO(out);
  CHECK(std::count(out.begin(), out.end(), '\n') == 3);
  CHECK(out.find('\r') == std::string::npos);
  for (const char* want : {"epoch 1/3  loss ", "epoch 3/3  loss ", "samples/s  note 2  "})
    CHECK(out.find(want) != std::string::npos);
  o.progress = false;  // off (the default): nothing
  std::FILE* g = std::tmpfile();
  o.progress_stream = g;
  nn::Trainer<double> quiet(opt, o);
  quiet.fit(10, ll.loss_fn());
  CHECK(read_all(g).empty());
  std::fclose(g);
  o.progress = true;
  o.progress_interval = -1;
  CHECK_THROWS_AS(nn::Trainer<double>(opt, o), ValueError);
}

TEST_CASE("nn/trainer: the live progress line rewrites itself with carriage returns, throttled") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f);
  nn::detail::ProgressLine line(f, 0.25, true);
  line.step(0, 2, 10, 100, 0.5, 1000, 0.0);   // printed
  line.step(0, 2, 20, 100, 0.4, 1000, 0.1);   // throttled: 0.1 s after the last
  line.step(0, 2, 30, 100, 0.3, 1000, 0.3);   // printed
  line.step(0, 2, 100, 100, 0.2, 1000, 0.31); // the epoch's last step: always printed
  line.epoch(0, 2, 0.2, 1000, "", 0.4);
  const std::string out = read_all(f);
  std::fclose(f);
  INFO(out);
  CHECK(std::count(out.begin(), out.end(), '\r') == 4);  // three updates and the final line
  CHECK(out.find(" 20%") == std::string::npos);
  CHECK(out.find(" 30%  loss 0.3000") != std::string::npos);
  CHECK(out.find("100%") != std::string::npos);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);
}

TEST_CASE("nn/trainer: shuffling visits every row once per epoch; shuffle = false keeps the order") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  for (bool shuffle : {true, false}) {
    CAPTURE(shuffle);
    nn::TrainerOptions o;
    o.epochs = 2;
    o.batch_size = 3;
    o.shuffle = shuffle;
    nn::Trainer<double> trainer(opt, o);
    std::vector<index_t> seen;
    auto inner = ll.loss_fn();
    trainer.fit(7, [&](Tape<double>& t, const std::vector<index_t>& rows) {
      seen.insert(seen.end(), rows.begin(), rows.end());
      return inner(t, rows);
    });
    REQUIRE(seen.size() == 14);
    for (int e = 0; e < 2; ++e) {
      std::vector<index_t> ep(seen.begin() + 7 * e, seen.begin() + 7 * (e + 1));
      if (!shuffle) CHECK(ep == std::vector<index_t>{0, 1, 2, 3, 4, 5, 6});
      std::sort(ep.begin(), ep.end());
      CHECK(ep == std::vector<index_t>{0, 1, 2, 3, 4, 5, 6});
    }
    if (shuffle) CHECK_FALSE(std::equal(seen.begin(), seen.begin() + 7, seen.begin() + 7));
  }
}

TEST_CASE("nn/trainer: drop_last skips the final partial batch") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  nn::TrainerOptions o;
  o.epochs = 2;
  o.batch_size = 4;
  o.drop_last = true;
  nn::Trainer<double> trainer(opt, o);
  std::vector<std::size_t> sizes;
  auto inner = ll.loss_fn();
  nn::TrainSummary s = trainer.fit(10, [&](Tape<double>& t, const std::vector<index_t>& rows) {
    sizes.push_back(rows.size());
    return inner(t, rows);
  });
  CHECK(sizes == std::vector<std::size_t>{4, 4, 4, 4});
  CHECK(s.steps == 4);
  // an exact multiple loses nothing
  sizes.clear();
  nn::Trainer<double> t2(opt, o);
  t2.fit(8, [&](Tape<double>& t, const std::vector<index_t>& rows) {
    sizes.push_back(rows.size());
    return inner(t, rows);
  });
  CHECK(sizes == std::vector<std::size_t>{4, 4, 4, 4});
}

TEST_CASE("nn/trainer: clip_norm clips the gradient before the step") {
  LinearLoss ll;
  ll.slope = 100.0;  // gradient (100, 100), norm 141.4
  nn::SGDOptions so;
  so.lr = 1.0;
  nn::SGD<double> opt({ll.w}, so);
  nn::TrainerOptions o;
  o.epochs = 1;
  o.batch_size = 4;
  o.clip_norm = 1.0;
  nn::Trainer<double> trainer(opt, o);
  trainer.fit(4, ll.loss_fn());  // one step
  const double moved = std::hypot(ll.w.value()(0), ll.w.value()(1));
  CHECK(moved == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(ll.w.value()(0) < 0);
  // without clipping the step is the full gradient
  LinearLoss free;
  free.slope = 100.0;
  nn::SGD<double> opt2({free.w}, so);
  o.clip_norm = 0.0;
  nn::Trainer<double> t2(opt2, o);
  t2.fit(4, free.loss_fn());
  CHECK(free.w.value()(0) == doctest::Approx(-100.0));
}

TEST_CASE("nn/trainer: the schedule sets the optimiser's lr_factor before each step") {
  LinearLoss ll;
  nn::SGDOptions so;
  so.lr = 0.1;
  nn::SGD<double> opt({ll.w}, so);
  nn::TrainerOptions o;
  o.epochs = 1;
  o.batch_size = 1;
  nn::Trainer<double> trainer(opt, o);
  trainer.set_schedule(nn::step_schedule(2, 0.5));
  std::vector<double> factors;
  std::vector<double> w_after;
  trainer.on_step([&](const nn::StepInfo& si) {
    factors.push_back(si.lr_factor);
    w_after.push_back(ll.w.value()(0));
  });
  trainer.fit(5, ll.loss_fn());
  CHECK(factors == std::vector<double>{1, 1, 0.5, 0.5, 0.25});
  // gradient 1: each step moves w by lr * factor
  double w = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    w -= 0.1 * factors[i];
    CHECK(w_after[i] == doctest::Approx(w).epsilon(1e-14));
  }
  CHECK(opt.lr_factor() == 0.25);
}

TEST_CASE("nn/trainer: the tape's arena does not grow after the first epoch") {
  Rng rng(5);
  Dataset<float> data = separable<float>(64, 9);
  // wide enough that the first step needs more than one arena block
  nn::MLP<float> model({2, 2048, 2}, rng, nn::Activation::tanh);
  nn::Adam<float> opt(model.parameters());
  nn::TrainerOptions o;
  o.epochs = 4;
  o.batch_size = 40;  // a full batch and a partial one
  nn::Trainer<float> trainer(opt, o);
  std::vector<std::size_t> arena, nodes;
  trainer.on_epoch([&](nn::EpochInfo&) {
    arena.push_back(trainer.tape().arena_capacity());
    nodes.push_back(trainer.tape().node_capacity());
    CHECK(trainer.tape().size() == 0);  // reset after every step
  });
  std::vector<int> labels;
  trainer.fit(data.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    return cross_entropy(model(nn::batch_rows(tape, data.x, rows)), nn::batch_labels(data.y, rows, labels));
  });
  REQUIRE(arena.size() == 4);
  CHECK(arena[0] > WEFT_ARENA_BLOCK_BYTES);
  for (std::size_t e = 1; e < arena.size(); ++e) {
    CHECK(arena[e] == arena[0]);
    CHECK(nodes[e] == nodes[0]);
  }
}

TEST_CASE("nn/trainer: batch_rows and batch_labels") {
  Tensor<double> x(Shape{4, 3});
  for (index_t i = 0; i < 12; ++i) x.flat(i) = double(i);
  Tape<double> tape;
  Var<double> b = nn::batch_rows(tape, x, {2, 0, 2});
  CHECK(b.shape() == Shape{3, 3});
  CHECK_FALSE(b.requires_grad());
  const double expected[] = {6, 7, 8, 0, 1, 2, 6, 7, 8};
  for (index_t i = 0; i < 9; ++i) CHECK(b.value().flat(i) == expected[i]);
  // rank 3: whole (3, 2) blocks per row
  Tensor<float> x3(Shape{3, 2, 2});
  for (index_t i = 0; i < 12; ++i) x3.flat(i) = float(i);
  Tape<float> tf;
  Var<float> b3 = nn::batch_rows(tf, x3, {1});
  CHECK(b3.shape() == Shape{1, 2, 2});
  CHECK(b3.value().flat(0) == 4.0f);
  CHECK(b3.value().flat(3) == 7.0f);
  CHECK(nn::batch_rows(tape, x, {}).shape() == Shape{0, 3});

  std::vector<int> labels = {5, 6, 7, 8}, out = {1, 1, 1, 1, 1};
  const std::vector<int>& r = nn::batch_labels(labels, {3, 1}, out);
  CHECK(&r == &out);
  CHECK(out == std::vector<int>{8, 6});

  WEFT_NN_CHECK_FAILS(nn::batch_rows(tape, x, {0, 4}), ShapeError, "nn::batch_rows");
  WEFT_NN_CHECK_FAILS(nn::batch_rows(tape, x, {-1}), ShapeError, "nn::batch_rows");
  WEFT_NN_CHECK_FAILS(nn::batch_rows(tape, Tensor<double>::scalar(1.0), {0}), ShapeError, "nn::batch_rows");
  WEFT_NN_CHECK_FAILS(nn::batch_labels(labels, {4}, out), ShapeError, "nn::batch_labels");
  WEFT_NN_CHECK_FAILS(nn::batch_labels(labels, {-1}, out), ShapeError, "nn::batch_labels");
}

TEST_CASE("nn/trainer: argmax_rows and accuracy") {
  Tensor<double> logits = Tensor<double>::from_values({0.1, 0.7, 0.2, 3.0, 3.0, -1.0, -2.0, -3.0, -1.5}, Shape{3, 3});
  CHECK(nn::argmax_rows(logits) == std::vector<int>{1, 0, 2});  // ties: the first
  CHECK(nn::argmax_rows(Tensor<float>(Shape{2, 1})) == std::vector<int>{0, 0});
  WEFT_NN_CHECK_FAILS(nn::argmax_rows(Tensor<double>(Shape{3})), ShapeError, "nn::argmax_rows");
  WEFT_NN_CHECK_FAILS(nn::argmax_rows(Tensor<double>(Shape{3, 0})), ShapeError, "nn::argmax_rows");

  // a "model" that returns its input: the prediction is the argmax of each row of x
  auto ident = [](Tape<double>&, const Var<double>& v) { return v; };
  CHECK(nn::accuracy<double>(ident, logits, {1, 0, 2}) == 1.0);
  CHECK(nn::accuracy<double>(ident, logits, {1, 1, 1}) == doctest::Approx(1.0 / 3));
  CHECK(nn::accuracy<double>(ident, logits, {1, 1, 2}, 2) == doctest::Approx(2.0 / 3));
  // no gradients are recorded during evaluation
  auto check_no_grad = [](Tape<double>&, const Var<double>& v) {
    CHECK_FALSE(is_grad_enabled());
    return v;
  };
  nn::accuracy<double>(check_no_grad, logits, {1, 0, 2});
  CHECK(is_grad_enabled());

  WEFT_NN_CHECK_FAILS(nn::accuracy<double>(ident, logits, {1, 0}), ShapeError, "nn::accuracy");
  WEFT_NN_CHECK_FAILS(nn::accuracy<double>(ident, Tensor<double>(Shape{0, 3}), {}), ShapeError, "nn::accuracy");
  WEFT_NN_CHECK_FAILS(nn::accuracy<double>(ident, logits, {1, 0, 2}, 0), ValueError, "nn::accuracy");
}

TEST_CASE("nn/trainer: invalid options and inputs are errors naming the function") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  nn::TrainerOptions o;
  o.batch_size = 0;
  WEFT_NN_CHECK_FAILS(nn::Trainer<double>(opt, o), ValueError, "nn::Trainer");
  o.batch_size = 4;
  o.epochs = -1;
  WEFT_NN_CHECK_FAILS(nn::Trainer<double>(opt, o), ValueError, "nn::Trainer");
  o.epochs = 1;
  o.clip_norm = -1;
  WEFT_NN_CHECK_FAILS(nn::Trainer<double>(opt, o), ValueError, "nn::Trainer");
  o.clip_norm = 0;
  nn::Trainer<double> trainer(opt, o);
  WEFT_NN_CHECK_FAILS(trainer.fit(0, ll.loss_fn()), ShapeError, "nn::Trainer::fit");
  WEFT_NN_CHECK_FAILS(trainer.fit(-3, ll.loss_fn()), ShapeError, "nn::Trainer::fit");
  CHECK(opt.steps() == 0);
  // a loss that is not a scalar
  WEFT_NN_CHECK_FAILS(
      trainer.fit(4, [&](Tape<double>& t, const std::vector<index_t>&) { return t.param(ll.w) * 2.0; }), ShapeError,
      "nn::Trainer::fit");
  CHECK(ll.w.value()(0) == 0.0);
  // epochs = 0 trains nothing
  o.epochs = 0;
  nn::Trainer<double> none(opt, o);
  nn::TrainSummary s = none.fit(4, ll.loss_fn());
  CHECK(s.epochs == 0);
  CHECK(s.steps == 0);
}

TEST_CASE("nn/trainer: a trainer can fit again after a step threw") {
  LinearLoss ll;
  nn::SGD<double> opt({ll.w});
  bool fail = true;
  nn::HookHandle h = opt.add_pre_step_hook([&](nn::Optimizer<double>&) {
    if (fail) {
      fail = false;
      throw ValueError("hook failed");
    }
  });
  nn::TrainerOptions o;
  o.epochs = 1;
  o.batch_size = 2;
  nn::Trainer<double> trainer(opt, o);
  CHECK_THROWS_AS(trainer.fit(4, ll.loss_fn()), ValueError);  // after backward, before the tape reset
  opt.zero_grad();
  nn::TrainSummary s = trainer.fit(4, ll.loss_fn());
  CHECK(s.steps == 2);
  CHECK(ll.w.value()(0) == doctest::Approx(-0.02));  // two clean steps of lr 0.01, gradient 1
}

}  // namespace weft_unit_nn_trainer_test

namespace weft_unit_nn_trainer_test {

TEST_CASE("nn/trainer: a NaN or Inf loss stops fit with a ValueError naming the step, weights untouched") {
  LinearLoss ll;
  nn::SGDOptions so;
  so.lr = 0.5;
  nn::SGD<double> opt({ll.w}, so);
  nn::TrainerOptions o;
  o.epochs = 1;
  o.batch_size = 1;
  o.shuffle = false;
  nn::Trainer<double> trainer(opt, o);
  // batches 0 and 1 are fine; batch 2 (row 2) has a NaN loss
  auto fn = [&](Tape<double>& tape, const std::vector<index_t>& rows) {
    const double k = rows[0] == 2 ? std::nan("") : 1.0;
    return sum(tape.param(ll.w)) * k;
  };
  std::string msg;
  try {
    trainer.fit(4, fn);
  } catch (const ValueError& e) {
    msg = e.what();
  }
  CHECK(msg.find("nn::Trainer::fit") != std::string::npos);
  CHECK(msg.find("finite loss") != std::string::npos);
  CHECK(msg.find("step 2") != std::string::npos);
  CHECK(msg.find("nan") != std::string::npos);
  CHECK(opt.steps() == 2);
  CHECK(ll.w.value()(0) == -1.0);  // two steps of 0.5, the third never taken
  CHECK(ll.w.grad().all_finite());
  // an Inf gradient with a finite loss: sqrt at 0 has an infinite derivative
  LinearLoss g2;
  nn::SGD<double> opt2({g2.w}, so);
  nn::Trainer<double> t2(opt2, o);
  auto fn2 = [&](Tape<double>& tape, const std::vector<index_t>&) { return sum(sqrt(tape.param(g2.w))); };
  CHECK_THROWS_WITH_AS(t2.fit(2, fn2), doctest::Contains("finite gradients"), ValueError);
  CHECK(g2.w.value()(0) == 0.0);
}

TEST_CASE("nn/trainer: skip_nonfinite skips such batches and counts them") {
  LinearLoss ll;
  nn::SGDOptions so;
  so.lr = 0.5;
  nn::SGD<double> opt({ll.w}, so);
  nn::TrainerOptions o;
  o.epochs = 2;
  o.batch_size = 1;
  o.shuffle = false;
  o.skip_nonfinite = true;
  nn::Trainer<double> trainer(opt, o);
  std::vector<double> losses;
  trainer.on_epoch([&](nn::EpochInfo& e) { losses.push_back(e.mean_loss); });
  auto fn = [&](Tape<double>& tape, const std::vector<index_t>& rows) {
    const double k = rows[0] == 1 ? std::numeric_limits<double>::infinity() : 1.0;
    return sum(tape.param(ll.w)) * k;
  };
  const nn::TrainSummary s = trainer.fit(3, fn);
  CHECK(s.skipped_steps == 2);
  CHECK(s.steps == 4);
  CHECK(ll.w.value().all_finite());
  CHECK(ll.w.value()(0) == -2.0);
  for (double l : losses) CHECK(std::isfinite(l));
}

TEST_CASE("nn/trainer: accuracy rejects labels outside the model's classes") {
  Problem pb;
  auto forward = [&](Tape<double>&, const Var<double>& x) { return pb.model(x); };
  std::vector<int> y = pb.data.y;
  y[5] = 2;  // the model has 2 outputs
  CHECK_THROWS_WITH_AS(nn::accuracy<double>(forward, pb.data.x, y), doctest::Contains("expected labels in [0, 2)"),
                       ValueError);
  y[5] = -1;
  CHECK_THROWS_WITH_AS(nn::accuracy<double>(forward, pb.data.x, y), doctest::Contains("got -1 at row 5"), ValueError);
}

}  // namespace weft_unit_nn_trainer_test
