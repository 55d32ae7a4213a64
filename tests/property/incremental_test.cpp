// Property tests of weft/incremental: the expandable head, Weight Aligning, the distillation
// losses, herding / exemplar selection and memory, and the ClassIncrementalLearner (options,
// learn_task, and what a failed task leaves behind), on random, mismatched, empty and extreme
// input. See tests/property/property.hpp for the property and how to rerun a failing case.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "property/property.hpp"
#include "support/test_util.hpp"
#include "weft/core/autograd.hpp"
#include "weft/incremental.hpp"

namespace weft_unit_property_incremental_test {

using namespace weft;
namespace prop = weft::test::prop;

namespace {

template <class T>
void head_and_align(std::uint64_t seed) {
  prop::run("incremental/ExpandableHead, weight_align, norm_ratio", seed, 300, [](prop::Gen& g) {
    incremental::HeadOptions ho;
    ho.bias = g.chance(0.3);
    ho.reinit_head = g.chance(0.3);
    ho.init_bound = g.chance(0.7) ? 0.0 : g.real("init_bound", 0, 1, 0.2, [](double b) { return b >= 0 && std::isfinite(b); });
    const index_t in = index_t(g.integer("in_features", 1, 5, 0.06, {0, -1}, [](long long v) { return v > 0; }));
    std::unique_ptr<incremental::ExpandableHead<T>> head;
    if (!prop::construct(g, [&] { head = std::make_unique<incremental::ExpandableHead<T>>(in, ho); })) return;
    const int op = g.pick(3);
    g.note("op (expand+forward, weight_align on a tensor, weight_align on the head)", op);
    if (op == 0) {
      const index_t c1 = index_t(g.integer("new classes", 1, 4, 0.08, {0, -2}, [](long long v) { return v > 0; }));
      prop::Watch w;
      w.add(*head);
      if (prop::check(g, w, [&] { head->expand(c1, g.rng); }) != prop::Outcome::returned) return;
      Tensor<T> h = g.tensor<T>(Shape{g.extent(4), g.near(in, "feature width")}, "h");
      prop::Watch w2;
      w2.add(h, "h").add(*head);
      prop::check(g, w2, [&] {
        Tape<T> tape;
        prop::expect_result(g, (*head)(tape.constant(h)).value(), Shape{h.dim(0), c1});
      });
    } else {
      const index_t classes = 1 + g.pick(5);
      Tensor<T> wt = g.tensor<T>(Shape{classes, in}, "W");
      if (g.chance(0.1)) {  // a zero row block: no mean norm to divide by
        wt.set_zero();
        g.set_must_fail("all-zero weight");
      }
      incremental::AlignOptions ao;
      ao.norm_p = int(g.integer("norm_p", 1, 2, 0.1, {0, 3, -1}, [](long long p) { return p == 1 || p == 2; }));
      ao.clamp_gamma_le_1 = g.chance(0.3);
      const index_t old = index_t(g.integer("old classes", 1, std::max<index_t>(1, classes - 1), 0.1,
                                            {0, -1, classes, classes + 1}, [&](long long o) { return o >= 1 && o < classes; }));
      if (classes < 2 && !g.must_fail()) g.set_must_fail("no new class");
      prop::Watch w;
      w.add(wt, "W");
      if (op == 1) {
        prop::check(g, w, [&] {
          const auto r = incremental::weight_align(wt, old, ao);
          prop::expect_finite(g, r.gamma, "gamma");
          prop::expect_result(g, wt, Shape{classes, in});
          prop::expect_finite(g, incremental::norm_ratio(wt, old, ao.norm_p), "norm ratio");
        });
      } else {
        head->expand(classes, g.rng);
        head->weight.value().copy_from(wt);
        prop::Watch wh;
        wh.add(*head);
        prop::check(g, wh, [&] {
          const auto r = incremental::weight_align(*head, old, ao);
          prop::expect_finite(g, r.gamma, "gamma");
          prop::expect_result(g, head->weight.value(), Shape{classes, in});
        });
      }
    }
  });
}

template <class T>
void distill(std::uint64_t seed) {
  prop::run("incremental/distillation_loss, wa_loss, soft_targets", seed, 300, [](prop::Gen& g) {
    const int op = g.pick(3);
    g.note("op (distillation_loss wa_loss soft_targets)", op);
    const index_t n = g.extent(5), c = 1 + g.pick(5);
    const index_t old = g.chance(0.9) ? 1 + g.pick(int(c)) : c + 1;
    if (old > c && op != 2) g.set_must_fail("more teacher classes than logits");
    Tensor<T> logits = g.tensor<T>(Shape{n, c}, "logits");
    Tensor<T> teacher = g.tensor<T>(Shape{op == 2 ? n : g.near(n, "teacher rows"), old}, "teacher");
    incremental::DistillOptions o;
    o.temperature = g.real("temperature", 0.5, 4, 0.1, [](double t) { return positive_in<T>(t); });
    if (op == 1 && g.chance(0.3)) o.lambda = g.real("lambda", 0, 1, 0.2, [](double l) { return l >= 0 && l <= 1; });
    std::vector<int> labels(static_cast<std::size_t>(n));
    for (auto& l : labels) l = g.pick(int(c));
    if (n == 0 && op != 2) g.set_must_fail("no rows");
    prop::Watch w;
    w.add(logits, "logits").add(teacher, "teacher");
    prop::check(g, w, [&] {
      if (op == 2) {
        prop::expect_result(g, incremental::soft_targets(teacher, o.temperature), teacher.shape());
        return;
      }
      Tape<T> tape;
      Var<T> z = tape.variable(logits), t = tape.constant(teacher);
      Var<T> l = op == 0 ? incremental::distillation_loss(z, t, o.temperature) : incremental::wa_loss(z, labels, t, o);
      prop::expect_result(g, l.value(), Shape{});
      tape.backward(l);
      prop::expect_result(g, z.grad(), logits.shape());
    });
  });
}

template <class T>
void memory(std::uint64_t seed) {
  prop::run("incremental/herding, select_exemplars, ExemplarMemory", seed, 300, [](prop::Gen& g) {
    const index_t n = g.extent(8), d = g.extent(4);
    Tensor<T> h = g.tensor<T>(Shape{n, d}, "h");
    if (g.chance(0.05)) {  // finite but huge features: their squared distances overflow double
      for (auto& x : h) x = T(double(x) * (sizeof(T) == 8 ? 1e200 : 1e30));
      g.note("features scaled by 1e200 (double) / 1e30 (float)");
      g.set_exotic();
    }
    const int op = g.pick(3);
    g.note("op (herding on normalised rows, select_exemplars, memory add/reduce)", op);
    std::unique_ptr<incremental::ExemplarMemory<T>> mem;
    if (op == 2) {
      const index_t budget = index_t(g.integer("budget", 1, 10, 0.1, {0, -1}, [](long long v) { return v > 0; }));
      if (!prop::construct(g, [&] { mem = std::make_unique<incremental::ExemplarMemory<T>>(budget); })) return;
    }
    const index_t m = index_t(g.integer("m", op == 2 ? 0 : 1, 6, 0.08, {-1, 0}, [&](long long v) { return v > 0 || (op == 2 && v == 0); }));
    incremental::MemoryOptions mo;
    mo.herding_variant = g.chance(0.5) ? incremental::HerdingVariant::argmin : incremental::HerdingVariant::argmax;
    mo.random_replay = g.chance(0.2);
    if (n == 0 || (d == 0 && op == 0)) g.set_must_fail("no rows or no features");
    prop::Watch w;
    w.add(h, "h");
    auto check_indices = [&](const std::vector<index_t>& idx) {
      CHECK(idx.size() <= std::size_t(std::min(m, n)));
      std::set<index_t> uniq(idx.begin(), idx.end());
      CHECK(uniq.size() == idx.size());
      for (index_t i : idx) CHECK((i >= 0 && i < n));
    };
    if (op == 0) {
      prop::check(g, w, [&] {
        const auto phi = incremental::normalize_rows(h);
        check_indices(incremental::herding(phi, m, mo.herding_variant).indices);
      });
    } else if (op == 1) {
      if (d == 0 && !mo.random_replay && !g.must_fail()) g.set_must_fail("no features to herd on");
      prop::check(g, w, [&] { check_indices(incremental::select_exemplars(h, m, mo, g.rng)); });
    } else {
      prop::check(g, w, [&] {
        mem->add(0, h);
        mem->reduce(m);
        CHECK(mem->exemplars(0).dim(0) == std::min(n, m));
      });
    }
  });
}

/// Two Gaussian blobs per class in `dim` features.
template <class T>
Dataset<T> blobs(prop::Gen& g, const std::vector<int>& labels, index_t per_class, index_t dim) {
  Dataset<T> d;
  d.x = Tensor<T>(Shape{index_t(labels.size()) * per_class, dim});
  index_t row = 0;
  for (int c : labels)
    for (index_t i = 0; i < per_class; ++i, ++row) {
      for (index_t j = 0; j < dim; ++j) d.x(row, j) = T(3.0 * double(c == int(j % 3)) + g.rng.normal());
      d.y.push_back(c);
    }
  return d;
}

template <class T>
void learner(std::uint64_t seed) {
  prop::run("incremental/ClassIncrementalLearner: options, learn_task", seed, 60, [](prop::Gen& g) {
    incremental::IncrementalOptions o;
    o.epochs = int(g.integer("epochs", 1, 2, 0.08, {0, -1}, [](long long v) { return v > 0; }));
    o.batch_size = index_t(g.integer("batch_size", 2, 8, 0.08, {0, -1}, [](long long v) { return v > 0; }));
    o.distill = g.chance(0.8);
    o.distill_options.temperature = g.real("temperature", 1, 3, 0.1, [](double t) { return positive_in<T>(t); });
    o.clip = g.chance(0.7);
    o.align = g.chance(0.7);
    o.align_options.norm_p = int(g.integer("norm_p", 1, 2, 0.08, {0, 3}, [](long long p) { return p == 1 || p == 2; }));
    o.memory.enabled = g.chance(0.8);
    o.memory.budget = index_t(g.integer("budget", 4, 12, 0.08, {0, -1}, [&](long long v) { return v > 0 || !o.memory.enabled; }));
    o.sgd.lr = g.real("sgd lr", 0.01, 0.1, 0.08, [](double l) { return l >= 0 && std::isfinite(l); });
    o.seed = g.rng.next_u64();
    const index_t dim = 2 + g.pick(3);
    auto make = [dim](Rng& rng) { return incremental::make_relu_net<T>({dim, 4}, rng); };
    using L = decltype(incremental::make_learner<T>(make, o));
    std::unique_ptr<L> lr;
    if (!prop::construct(g, [&] { lr = std::make_unique<L>(incremental::make_learner<T>(make, o)); })) return;
    Dataset<T> train = blobs<T>(g, {0, 1, 2, 3}, 4, dim), test = blobs<T>(g, {0, 1, 2, 3}, 2, dim);
    // a first task on clean data
    prop::Watch none;
    if (prop::check(g, none, [&] { lr->learn_task(train, test, {0, 1}); }) != prop::Outcome::returned) return;
    // a second task on drawn data: NaN/Inf/extreme rows, a class without rows, a repeated class
    Dataset<T> train2 = train;
    train2.x = g.tensor<T>(train.x.shape(), "second task x");
    std::vector<int> classes{2, 3};
    const int bad = g.pick(8);
    if (bad == 0) classes = {1, 2}, g.set_must_fail("class seen before");
    if (bad == 1) classes = {2, 7}, g.set_must_fail("class without training rows");
    if (bad == 2) classes = {}, g.set_must_fail("empty task");
    const auto before_classes = lr->seen_classes();
    const index_t before_tasks = lr->tasks_learned();
    prop::Watch w;
    w.add(train2.x, "train x").add(lr->model());
    const auto out = prop::check(g, w, [&] {
      const auto r = lr->learn_task(train2, test, classes);
      CHECK(r.classes == 4);
      prop::expect_finite(g, r.final_loss, "final loss");
      CHECK(r.accuracy >= 0);
      CHECK(r.accuracy <= 1);
    });
    if (out == prop::Outcome::weft_error) {
      CHECK_MESSAGE(lr->seen_classes() == before_classes, "a failed task changed the learner's classes");
      CHECK_MESSAGE(lr->tasks_learned() == before_tasks, "a failed task counted as learned");
    }
  });
}

}  // namespace

TEST_CASE("property/incremental: ExpandableHead, weight_align, norm_ratio") {
  head_and_align<double>(401);
  head_and_align<float>(402);
}

TEST_CASE("property/incremental: distillation losses and soft targets") {
  distill<double>(411);
  distill<float>(412);
}

TEST_CASE("property/incremental: herding, exemplar selection and memory") {
  memory<double>(421);
  memory<float>(422);
}

TEST_CASE("property/incremental: ClassIncrementalLearner options and a failed task") {
  learner<double>(431);
  learner<float>(432);
}

}  // namespace weft_unit_property_incremental_test
