// Tests of weft/incremental/learner.hpp on small Gaussian blobs: a task sequence with memory
// quotas, aligning and clipping diagnostics and the summary metrics; arbitrary class ids; the
// baselines' switches; determinism; and every bad-input path (reused class ids, an empty task,
// a class without rows, a budget below the number of classes), each leaving the learner as it was.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_util.hpp"
#include "weft/incremental/learner.hpp"
#include "weft/incremental/model.hpp"

namespace weft_unit_incremental_learner_test {

using namespace weft;

#define WEFT_INC_FAILS(expr, type, func) CHECK_THROWS_WITH_AS(expr, doctest::Contains("weft::" func ": "), type)

namespace {

/// `per_class` rows of each label in `labels`: a fixed random centre (spread 3) plus N(0, 1) noise.
Dataset<double> blobs(const std::vector<int>& labels, index_t per_class, std::uint64_t seed, index_t dim = 6) {
  Rng centres(42), noise(seed);
  Dataset<double> d;
  d.x = Tensor<double>(Shape{index_t(labels.size()) * per_class, dim});
  index_t row = 0;
  for (int c : labels) {
    Rng cr = centres.stream(std::uint64_t(c + 1000));
    std::vector<double> mu;
    for (index_t j = 0; j < dim; ++j) mu.push_back(cr.normal(0.0, 3.0));
    for (index_t i = 0; i < per_class; ++i, ++row) {
      for (index_t j = 0; j < dim; ++j) d.x(row, j) = mu[std::size_t(j)] + noise.normal();
      d.y.push_back(c);
    }
  }
  return d;
}

incremental::IncrementalOptions small_options() {
  incremental::IncrementalOptions o;
  o.epochs = 6;
  o.batch_size = 16;
  o.memory.budget = 12;
  return o;
}

auto make_net() {
  return [](Rng& rng) { return incremental::make_relu_net<double>({6, 16}, rng); };
}

const std::vector<std::vector<int>> kTasks = {{0, 1}, {2, 3}, {4, 5}};

}  // namespace

TEST_CASE("incremental/learner: a task sequence with memory quotas, aligning, clipping and the summary") {
  const Dataset<double> train = blobs({0, 1, 2, 3, 4, 5}, 30, 1), test = blobs({0, 1, 2, 3, 4, 5}, 10, 2);
  auto learner = incremental::make_learner<double>(make_net(), small_options());
  const incremental::IncrementalResult r = learner.run(train, test, kTasks);
  REQUIRE(r.tasks.size() == 3);
  const index_t quota[] = {6, 3, 2};
  for (std::size_t t = 0; t < 3; ++t) {
    const auto& k = r.tasks[t];
    CHECK(k.task == index_t(t));
    CHECK(k.classes == 2 * index_t(t + 1));
    CHECK(k.old_classes == 2 * index_t(t));
    CHECK(k.per_class == quota[t]);
    CHECK(k.memory_size == quota[t] * k.classes);
    CHECK(k.train_rows == 60 + (t == 0 ? 0 : quota[t - 1] * k.old_classes));
    CHECK(k.min_head_weight >= 0);
    CHECK(k.accuracy >= 0.5);  // well separated blobs
    CHECK(k.accuracy <= 1.0);
    if (t == 0) {
      CHECK(std::isnan(k.rho_before));
      CHECK(std::isnan(k.accuracy_old));
    } else {
      CHECK(std::abs(k.rho_after - 1) <= 1e-9);
      CHECK(k.gamma == doctest::Approx(1 / k.rho_before));
      CHECK((k.accuracy_old >= 0 && k.accuracy_new >= 0));
    }
  }
  CHECK(r.average_incremental_accuracy ==
        doctest::Approx((r.tasks[0].accuracy + r.tasks[1].accuracy + r.tasks[2].accuracy) / 3));
  CHECK(r.aia_without_first == doctest::Approx((r.tasks[1].accuracy + r.tasks[2].accuracy) / 2));
  CHECK(r.final_accuracy == r.tasks[2].accuracy);
  CHECK(learner.model().head().classes() == 6);
  CHECK(learner.seen_classes() == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK(learner.tasks_learned() == 3);
  // exemplars are rows of the training set of their class
  for (int c : learner.memory().labels()) {
    const Tensor<double>& e = learner.memory().exemplars(c);
    for (index_t i = 0; i < e.dim(0); ++i) {
      bool found = false;
      for (index_t k = 0; k < train.size() && !found; ++k)
        found = train.y[std::size_t(k)] == c && test::identical(train.x.rows(k, k + 1), e.rows(i, i + 1));
      CHECK(found);
    }
  }
}

TEST_CASE("incremental/learner: arbitrary class ids, predictions, determinism") {
  const std::vector<int> ids = {7, 3, 10, 2};
  const Dataset<double> train = blobs(ids, 20, 3), test = blobs(ids, 8, 4);
  auto a = incremental::make_learner<double>(make_net(), small_options());
  auto b = incremental::make_learner<double>(make_net(), small_options());
  const auto ra = a.run(train, test, {{7, 3}, {10, 2}});
  const auto rb = b.run(train, test, {{7, 3}, {10, 2}});
  CHECK(ra.final_accuracy == rb.final_accuracy);
  CHECK(test::identical(a.model().head().weight.value(), b.model().head().weight.value()));
  CHECK(a.seen_classes() == std::vector<int>{7, 3, 10, 2});
  const std::vector<int> pred = a.predict(test.x);
  index_t ok = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    CHECK((pred[i] == 7 || pred[i] == 3 || pred[i] == 10 || pred[i] == 2));
    ok += pred[i] == test.y[i];
  }
  CHECK(double(ok) / double(pred.size()) == doctest::Approx(ra.final_accuracy));
  incremental::IncrementalOptions o = small_options();
  o.seed = 1;
  auto c = incremental::make_learner<double>(make_net(), o);
  c.run(train, test, {{7, 3}, {10, 2}});
  CHECK_FALSE(test::identical(a.model().head().weight.value(), c.model().head().weight.value()));
}

TEST_CASE("incremental/learner: baseline switches (no memory, no clipping, no aligning, random replay)") {
  const Dataset<double> train = blobs({0, 1, 2, 3, 4, 5}, 20, 5), test = blobs({0, 1, 2, 3, 4, 5}, 6, 6);
  incremental::IncrementalOptions o = small_options();
  o.memory.enabled = false;
  o.distill = false;
  o.clip = false;
  o.align = false;
  auto ft = incremental::make_learner<double>(make_net(), o);
  const auto r = ft.run(train, test, kTasks);
  for (auto& k : r.tasks) {
    CHECK(k.memory_size == 0);
    CHECK(k.train_rows == 40);
    if (k.task > 0) CHECK(k.rho_after == k.rho_before);
    CHECK(std::isnan(k.gamma));
  }
  CHECK(r.tasks[0].min_head_weight < 0);  // unclipped heads keep negative weights

  incremental::IncrementalOptions rr = small_options();
  rr.memory.random_replay = true;
  rr.align_options.norm_p = 1;
  rr.align_options.clamp_gamma_le_1 = true;
  auto learner = incremental::make_learner<double>(
      [](Rng& rng) {
        incremental::HeadOptions h;
        h.reinit_head = true;
        h.bias = true;
        return incremental::make_relu_net<double>({6, 16}, rng, h);
      },
      rr);
  const auto r2 = learner.run(train, test, kTasks);
  for (auto& k : r2.tasks)
    if (k.task > 0) CHECK(k.gamma <= 1);
  CHECK(learner.memory().size() == 12);
}

TEST_CASE("incremental/learner: bad input raises before anything changes") {
  const Dataset<double> train = blobs({0, 1, 2, 3, 4, 5}, 10, 7), test = blobs({0, 1, 2, 3, 4, 5}, 4, 8);
  auto learner = incremental::make_learner<double>(make_net(), small_options());
  auto untouched = [&]() {
    CHECK(learner.tasks_learned() == 0);
    CHECK(learner.seen_classes().empty());
    CHECK(learner.model().head().classes() == 0);
    CHECK(learner.memory().size() == 0);
  };
  // a task reusing seen class ids (in an earlier task, or twice in one task)
  CHECK_THROWS_WITH_AS(learner.run(train, test, {{0, 1}, {1, 2}}),
                       doctest::Contains("got class 1 which was already seen in task 1"), ValueError);
  WEFT_INC_FAILS(learner.run(train, test, {{0, 0}}), ValueError, "incremental::ClassIncrementalLearner::run");
  // empty tasks, an empty task list, a class with no training rows
  CHECK_THROWS_WITH_AS(learner.run(train, test, {{0, 1}, {}}), doctest::Contains("empty task (task 2)"), ValueError);
  WEFT_INC_FAILS(learner.run(train, test, {}), ValueError, "incremental::ClassIncrementalLearner::run");
  CHECK_THROWS_WITH_AS(learner.run(train, test, {{0, 9}}), doctest::Contains("training rows of class 9"), ValueError);
  // test rows of none of the seen classes
  const Dataset<double> other = blobs({8}, 4, 9);
  WEFT_INC_FAILS(learner.run(train, other, {{0, 1}}), ValueError, "incremental::ClassIncrementalLearner::run");
  untouched();
  // a memory budget smaller than the number of classes
  incremental::IncrementalOptions tight = small_options();
  tight.memory.budget = 5;
  auto small = incremental::make_learner<double>(make_net(), tight);
  CHECK_THROWS_WITH_AS(small.run(train, test, kTasks),
                       doctest::Contains("memory budget >= the number of classes seen after task 3 (6), got 5"),
                       ValueError);
  CHECK(small.tasks_learned() == 0);

  // after a task: a failing learn_task leaves the model, memory and class map unchanged
  learner.learn_task(train, test, {0, 1});
  test::Snapshot<double> snap({learner.model().head().weight.value(), learner.model().backbone.layers[0].weight.value()});
  const index_t mem = learner.memory().size();
  WEFT_INC_FAILS(learner.learn_task(train, test, {2, 0}), ValueError, "incremental::ClassIncrementalLearner::learn_task");
  WEFT_INC_FAILS(learner.learn_task(train, test, {}), ValueError, "incremental::ClassIncrementalLearner::learn_task");
  CHECK(snap.unchanged());
  CHECK(learner.model().head().classes() == 2);
  CHECK(learner.memory().size() == mem);
  CHECK(learner.seen_classes() == std::vector<int>{0, 1});
  learner.learn_task(train, test, {2, 3});  // still usable
  CHECK(learner.tasks_learned() == 2);

  // options and factory
  incremental::IncrementalOptions bad = small_options();
  bad.epochs = 0;
  WEFT_INC_FAILS(incremental::make_learner<double>(make_net(), bad), ValueError, "incremental::ClassIncrementalLearner");
  bad = small_options();
  bad.align_options.norm_p = 3;
  WEFT_INC_FAILS(incremental::make_learner<double>(make_net(), bad), ConfigError, "incremental::ClassIncrementalLearner");
  bad = small_options();
  bad.memory.budget = 0;
  WEFT_INC_FAILS(incremental::make_learner<double>(make_net(), bad), ValueError, "incremental::ClassIncrementalLearner");
  bad = small_options();
  bad.sgd.momentum = 1.5;
  WEFT_INC_FAILS(incremental::make_learner<double>(make_net(), bad), ValueError, "nn::SGD");
  auto grown = [](Rng& rng) {
    auto n = incremental::make_relu_net<double>({6, 16}, rng);
    n.head().expand(2, rng);
    return n;
  };
  WEFT_INC_FAILS(incremental::make_learner<double>(grown, small_options()), ConfigError, "incremental::ClassIncrementalLearner");
  auto fresh = incremental::make_learner<double>(make_net(), small_options());
  WEFT_INC_FAILS(fresh.predict(test.x), ConfigError, "incremental::ClassIncrementalLearner::predict");
}

TEST_CASE("incremental/learner: a task failing part-way (non-finite loss) changes nothing; run() is all or nothing") {
  // found by the property suite (tests/property/incremental_test.cpp): the head used to stay
  // expanded and the classes registered after the trainer stopped on a NaN loss
  const Dataset<double> train = blobs({0, 1, 2, 3}, 10, 1), test = blobs({0, 1, 2, 3}, 4, 2);
  Dataset<double> poisoned = train;
  poisoned.x = train.x.clone();
  for (index_t i = 0; i < poisoned.size(); ++i)
    if (poisoned.y[std::size_t(i)] == 2) poisoned.x(i, 0) = std::numeric_limits<double>::quiet_NaN();
  auto learner = incremental::make_learner<double>(make_net(), small_options());
  learner.learn_task(train, test, {0, 1});
  std::vector<Tensor<double>> before;
  for (auto& p : learner.model().parameters()) before.push_back(p.value().clone());
  const index_t mem = learner.memory().size();
  CHECK_THROWS_AS(learner.learn_task(poisoned, test, {2, 3}), ValueError);
  CHECK(learner.tasks_learned() == 1);
  CHECK(learner.seen_classes() == std::vector<int>{0, 1});
  CHECK(learner.model().head().classes() == 2);
  CHECK(learner.memory().size() == mem);
  auto after = learner.model().parameters();
  REQUIRE(after.size() == before.size());
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(weft::test::identical(after[i].value(), before[i]));
  const auto r = learner.learn_task(train, test, {2, 3});  // still usable, same as a learner that never failed
  auto clean = incremental::make_learner<double>(make_net(), small_options());
  clean.learn_task(train, test, {0, 1});
  CHECK(clean.learn_task(train, test, {2, 3}).accuracy == r.accuracy);

  auto whole = incremental::make_learner<double>(make_net(), small_options());
  CHECK_THROWS_AS(whole.run(poisoned, test, {{0, 1}, {2, 3}}), ValueError);
  CHECK(whole.tasks_learned() == 0);
  CHECK(whole.seen_classes().empty());
  CHECK(whole.model().head().classes() == 0);
  CHECK(whole.memory().size() == 0);
  CHECK(whole.run(train, test, {{0, 1}, {2, 3}}).final_accuracy == r.accuracy);
}

}  // namespace weft_unit_incremental_learner_test
