// weft/incremental/learner.hpp - ClassIncrementalLearner: runs a sequence of class-incremental
// tasks with the Weight Aligning recipe (Zhao et al., CVPR 2020) and reports accuracy per task,
// average incremental accuracy and final accuracy.
//
// Per task t with C_old classes seen before and C_new new ones (C_tot = C_old + C_new):
//   1. the head grows by C_new rows (ExpandableHead::expand);
//   2. training set = the task's rows of `train` plus the exemplar memory; a fresh SGD (momentum,
//      weight decay on weight matrices only unless decay_biases) for `epochs` epochs of shuffled
//      mini-batches; loss = CE, or (1 - lambda) CE + lambda KD against the frozen previous model
//      (distill.hpp) once there is one; weight clipping W <- max(W, 0) after every step (clip);
//   3. t >= 2: rho_before = mean new-row norm / mean old-row norm, then Weight Aligning (align)
//      and rho_after;
//   4. top-1 accuracy on the test rows of every class seen so far (the FC head);
//   5. memory: old classes cut to m = floor(M / C_tot) in priority order, m new exemplars per new
//      class by herding on the current (aligned) model's features;
//   6. a frozen copy of the model becomes the teacher of the next task.
// Turning distill/clip/align/memory off gives the baselines (fine-tuning, FT + KD, ...).
//
// Class ids are arbitrary ints; head row k is the k-th class seen (class order = task order).
// Every argument is checked before anything changes: an empty task, a class id seen before (or
// twice in a task), a class without training rows, or a memory budget below the number of
// classes raises ValueError and leaves the learner as it was.
//
//   auto learner = incremental::make_learner<float>(
//       [](Rng& rng) { return incremental::make_relu_net<float>({64, 64}, rng); }, options);
//   incremental::IncrementalResult r = learner.run(train, test, {{0, 1}, {2, 3}, {4, 5}});
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/autograd/functions/nn.hpp"
#include "weft/core/checked.hpp"
#include "weft/core/data.hpp"
#include "weft/incremental/align.hpp"
#include "weft/incremental/distill.hpp"
#include "weft/incremental/head.hpp"
#include "weft/incremental/memory.hpp"
#include "weft/nn/module.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/trainer.hpp"

namespace weft::incremental {

/// The spec's small-scale protocol: lr 0.05, momentum 0.9, weight decay 5e-4.
inline nn::SGDOptions default_sgd() {
  nn::SGDOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.weight_decay = 5e-4;
  return o;
}

struct IncrementalOptions {
  bool distill = true;             ///< add the KD term from the second task on
  DistillOptions distill_options;  ///< T = 2, lambda = C_old / C_tot
  bool clip = true;                ///< W <- max(W, 0) on the head weight after every step
  bool align = true;               ///< Weight Aligning after every task t >= 2
  AlignOptions align_options;      ///< p = 2, no clamp (p is also used for the reported rho)
  MemoryOptions memory;            ///< budget 2000, herding (argmin)
  int epochs = 30;
  index_t batch_size = 32;
  nn::SGDOptions sgd = default_sgd();
  bool decay_biases = false;       ///< weight decay on rank-1 parameters (biases) too
  std::uint64_t seed = 0;          ///< model initialisation, new head rows, shuffling, random replay
  bool progress = false;           ///< one line per task on stderr
};

struct TaskResult {
  index_t task = 0;                ///< 0-based
  index_t old_classes = 0, classes = 0;  ///< C_old and C_tot
  index_t train_rows = 0;          ///< new-class rows + exemplars trained on
  double accuracy = 0;             ///< top-1 on test rows of every seen class (after aligning)
  double accuracy_old = std::numeric_limits<double>::quiet_NaN();  ///< on old classes' test rows
  double accuracy_new = std::numeric_limits<double>::quiet_NaN();  ///< on this task's classes' test rows
  double rho_before = std::numeric_limits<double>::quiet_NaN();    ///< tasks t >= 2
  double rho_after = std::numeric_limits<double>::quiet_NaN();     ///< = rho_before without aligning
  double gamma = std::numeric_limits<double>::quiet_NaN();         ///< when aligned
  double min_head_weight = std::numeric_limits<double>::infinity(); ///< min of W after any step
  index_t per_class = 0, memory_size = 0;  ///< exemplars per class and in total after the task
  double final_loss = 0, seconds = 0;
};

struct IncrementalResult {
  std::vector<TaskResult> tasks;
  double average_incremental_accuracy = 0;  ///< mean accuracy over all tasks (task 1 included)
  double aia_without_first = std::numeric_limits<double>::quiet_NaN();  ///< mean over tasks 2..
  double final_accuracy = 0;
};

/// AIA (with and without the first task) and final accuracy of a sequence of task results.
inline IncrementalResult summarize(std::vector<TaskResult> tasks) {
  WEFT_CHECK(!tasks.empty(), value, "incremental::summarize", "expected at least one task result, got none");
  IncrementalResult r;
  double s = 0;
  for (auto& t : tasks) s += t.accuracy;
  r.average_incremental_accuracy = s / double(tasks.size());
  if (tasks.size() > 1) r.aia_without_first = (s - tasks[0].accuracy) / double(tasks.size() - 1);
  r.final_accuracy = tasks.back().accuracy;
  r.tasks = std::move(tasks);
  return r;
}

template <class T, class Model>
class ClassIncrementalLearner {
  static_assert(std::is_base_of_v<nn::Module<T>, Model>,
                "incremental::ClassIncrementalLearner needs a Model derived from nn::Module<T> with features(), "
                "forward() and head() (see incremental/model.hpp)");

 public:
  using Factory = std::function<Model(Rng&)>;

  /// make_model(rng) builds the architecture with a head of no classes; it is called once for the
  /// student (with a stream of options.seed) and once per teacher (whose values are then copied).
  explicit ClassIncrementalLearner(Factory make_model, const IncrementalOptions& o = {})
      : make_(std::move(make_model)), o_(o), rng_(o.seed) {
    const char* f = "incremental::ClassIncrementalLearner";
    WEFT_CHECK(make_ != nullptr, config, f, "expected a model factory, got an empty function");
    WEFT_CHECK(o.epochs > 0 && o.batch_size > 0, value, f, "expected epochs > 0 and batch_size > 0, got ", o.epochs,
               " and ", o.batch_size);
    WEFT_CHECK(positive_in<T>(o.distill_options.temperature), value, f,
               "expected a finite temperature > 0 whose reciprocal is finite in the model's type, got ",
               o.distill_options.temperature);
    WEFT_CHECK(o.align_options.norm_p == 1 || o.align_options.norm_p == 2, config, f,
               "expected align_options.norm_p = 1 or 2, got ", o.align_options.norm_p);
    WEFT_CHECK(!o.memory.enabled || o.memory.budget > 0, value, f, "expected a memory budget > 0, got ",
               o.memory.budget);
    nn::SGD<T> probe(std::vector<Parameter<T>>{Parameter<T>(Tensor<T>(Shape{1}))}, o.sgd);  // checks o.sgd now
    Rng init = rng_.stream(0);
    model_ = std::make_unique<Model>(make_(init));
    WEFT_CHECK(model_->head().classes() == 0, config, f,
               "expected the factory to return a model whose head has no classes yet, got ",
               model_->head().classes());
    if (o.memory.enabled) memory_ = ExemplarMemory<T>(o.memory.budget);
  }

  Model& model() noexcept { return *model_; }
  const ExemplarMemory<T>& memory() const noexcept { return memory_; }
  /// Class ids in head-row order.
  const std::vector<int>& seen_classes() const noexcept { return order_; }
  index_t tasks_learned() const noexcept { return tasks_; }

  /// Learns one task (the rows of `train` whose label is in `classes`) and evaluates on the
  /// test rows of every class seen so far.
  /// A task that fails part-way (a non-finite loss on NaN/Inf or overflowing features, features
  /// too large to herd) changes nothing: the model, memory and classes are as before the call.
  TaskResult learn_task(const Dataset<T>& train, const Dataset<T>& test, const std::vector<int>& classes) {
    std::map<int, index_t> seen = task_of_;
    check_task("incremental::ClassIncrementalLearner::learn_task", train, test, classes, tasks_, seen);
    return all_or_nothing([&] { return learn_checked(train, test, classes); });
  }

  /// Checks every task first, then learns them in order.
  IncrementalResult run(const Dataset<T>& train, const Dataset<T>& test, const std::vector<std::vector<int>>& tasks) {
    const char* f = "incremental::ClassIncrementalLearner::run";
    WEFT_CHECK(!tasks.empty(), value, f, "expected at least one task, got none");
    std::map<int, index_t> seen = task_of_;
    for (std::size_t t = 0; t < tasks.size(); ++t) check_task(f, train, test, tasks[t], tasks_ + index_t(t), seen);
    return all_or_nothing([&] {  // a task failing part-way undoes the tasks before it too
      std::vector<TaskResult> out;
      for (auto& c : tasks) out.push_back(learn_checked(train, test, c));
      return summarize(std::move(out));
    });
  }

  /// Predicted class ids for the rows of x.
  std::vector<int> predict(const Tensor<T>& x) {
    WEFT_CHECK(!order_.empty(), config, "incremental::ClassIncrementalLearner::predict",
               "expected a learner that has learned a task, got none");
    std::vector<int> rows = predict_rows(x), out;
    for (int r : rows) out.push_back(order_[std::size_t(r)]);
    return out;
  }

 private:
  /// Runs f; if it throws, the parameters (values and shapes: the head grows), the memory, the
  /// teacher and the class bookkeeping are put back as they were, then the error propagates.
  /// Without exceptions (WEFT_NO_EXCEPTIONS) a failed check ends in the error handler, which
  /// does not return: f runs as is.
  template <class F>
  auto all_or_nothing(F&& f) {
#ifdef WEFT_NO_EXCEPTIONS
    return f();
#else
    std::vector<Parameter<T>> params = model_->parameters();
    std::vector<Tensor<T>> values;
    for (auto& p : params) values.push_back(p.value().clone());
    const ExemplarMemory<T> memory = memory_;
    const std::shared_ptr<Model> teacher = teacher_;
    const std::vector<int> order = order_;
    const std::map<int, int> row_of = row_of_;
    const std::map<int, index_t> task_of = task_of_;
    const index_t tasks = tasks_;
    try {
      return f();
    } catch (...) {
      for (std::size_t i = 0; i < params.size(); ++i) params[i].set_value(values[i]);
      memory_ = memory;
      teacher_ = teacher;
      order_ = order;
      row_of_ = row_of;
      task_of_ = task_of;
      tasks_ = tasks;
      model_->train();
      throw;
    }
#endif
  }

  void check_task(const char* f, const Dataset<T>& train, const Dataset<T>& test, const std::vector<int>& classes,
                  index_t t, std::map<int, index_t>& seen) const {
    weft::detail::check_dataset(train, f);
    weft::detail::check_dataset(test, f);
    WEFT_CHECK(!classes.empty(), value, f, "expected a task with at least one class, got an empty task (task ", t + 1,
               ")");
    for (int c : classes) {
      auto it = seen.find(c);
      WEFT_CHECK(it == seen.end(), value, f, "expected new class ids in task ", t + 1, ", got class ", c,
                 " which was already seen in task ", it == seen.end() ? 0 : it->second + 1);
      seen[c] = t;
      index_t n = 0;
      for (int y : train.y) n += y == c;
      WEFT_CHECK(n > 0, value, f, "expected training rows of class ", c, " (task ", t + 1, "), got none");
    }
    WEFT_CHECK(!o_.memory.enabled || o_.memory.budget >= index_t(seen.size()), value, f,
               "expected a memory budget >= the number of classes seen after task ", t + 1, " (", seen.size(),
               "), got ", o_.memory.budget);
    index_t n_test = 0;
    for (int y : test.y) n_test += seen.count(y) != 0;
    WEFT_CHECK(n_test > 0, value, f, "expected test rows of the classes seen after task ", t + 1, ", got none");
  }

  std::vector<index_t> rows_of(const Dataset<T>& d, int c) const {
    std::vector<index_t> r;
    for (index_t i = 0; i < d.size(); ++i)
      if (d.y[std::size_t(i)] == c) r.push_back(i);
    return r;
  }

  /// Runs `fn(tape, x_batch)` over x in batches without gradients, model in eval mode.
  template <class Fn>
  void batched(const Tensor<T>& x, Fn&& fn) {
    model_->eval();
    Tape<T> tape;
    no_grad ng;
    std::vector<index_t> rows;
    for (index_t s = 0; s < x.dim(0); s += 256) {
      rows.clear();
      for (index_t i = s; i < std::min(x.dim(0), s + 256); ++i) rows.push_back(i);
      fn(rows, nn::batch_rows(tape, x, rows));
      tape.reset();
    }
    model_->train();
  }
  std::vector<int> predict_rows(const Tensor<T>& x) {
    std::vector<int> out;
    batched(x, [&](const std::vector<index_t>&, const Var<T>& xb) {
      for (int p : nn::argmax_rows(model_->forward(xb).value())) out.push_back(p);
    });
    return out;
  }
  Tensor<T> features(const Tensor<T>& x) {
    Tensor<T> h;
    batched(x, [&](const std::vector<index_t>& rows, const Var<T>& xb) {
      const Tensor<T> hb = model_->features(xb).value();
      if (!h.defined()) h = Tensor<T>(hb.shape().with(0, x.dim(0)));
      h.rows(rows.front(), rows.back() + 1).copy_from(hb);
    });
    return h;
  }

  void evaluate(const Dataset<T>& test, TaskResult& r) {
    std::vector<index_t> keep;
    for (index_t i = 0; i < test.size(); ++i)
      if (row_of_.count(test.y[std::size_t(i)])) keep.push_back(i);
    const Dataset<T> d = subset(test, keep);
    const std::vector<int> pred = predict_rows(d.x);
    index_t ok = 0, n_old = 0, ok_old = 0;
    for (std::size_t i = 0; i < pred.size(); ++i) {
      const int row = row_of_.at(d.y[i]);
      const bool hit = pred[i] == row;
      ok += hit;
      if (row < r.old_classes) n_old += 1, ok_old += hit;
    }
    const index_t n = index_t(pred.size()), n_new = n - n_old;
    r.accuracy = double(ok) / double(n);
    if (n_old) r.accuracy_old = double(ok_old) / double(n_old);
    if (n_new) r.accuracy_new = double(ok - ok_old) / double(n_new);
  }

  TaskResult learn_checked(const Dataset<T>& train, const Dataset<T>& test, const std::vector<int>& classes) {
    const auto t0 = std::chrono::steady_clock::now();
    Model& model = *model_;
    ExpandableHead<T>& head = model.head();
    TaskResult r;
    r.task = tasks_;
    r.old_classes = index_t(order_.size());
    r.classes = r.old_classes + index_t(classes.size());
    Rng head_rng = rng_.stream(1000 + std::uint64_t(tasks_));
    head.expand(index_t(classes.size()), head_rng);
    for (int c : classes) {
      row_of_[c] = int(order_.size());
      task_of_[c] = tasks_;
      order_.push_back(c);
    }

    // training set: the task's rows and the exemplars, labels mapped to head rows
    std::vector<index_t> rows;
    for (index_t i = 0; i < train.size(); ++i)
      for (int c : classes)
        if (train.y[std::size_t(i)] == c) rows.push_back(i);
    Dataset<T> data = subset(train, rows);
    if (memory_.size() > 0) {
      const Dataset<T> ex = memory_.dataset();
      Dataset<T> all;
      all.x = Tensor<T>(data.x.shape().with(0, data.size() + ex.size()));
      all.x.rows(0, data.size()).copy_from(data.x);
      all.x.rows(data.size(), all.size()).copy_from(ex.x);
      all.y = data.y;
      all.y.insert(all.y.end(), ex.y.begin(), ex.y.end());
      data = std::move(all);
    }
    std::vector<int> target;
    for (int y : data.y) target.push_back(row_of_.at(y));
    r.train_rows = data.size();

    // a fresh optimiser: weight decay on weight matrices (and biases if asked)
    std::vector<nn::ParamGroup<T>> groups(2);
    groups[1].weight_decay = 0.0;
    for (auto& p : model.parameters()) groups[p.shape().rank() >= 2 || o_.decay_biases ? 0 : 1].params.push_back(p);
    if (groups[1].params.empty()) groups.pop_back();
    nn::SGD<T> opt(std::move(groups), o_.sgd);
    nn::HookHandle clip;  // the hooks live as long as this task's optimiser (both local)
    if (o_.clip) clip = add_weight_clipping(opt, head);
    double min_w = std::numeric_limits<double>::infinity();
    nn::HookHandle watch = opt.add_post_step_hook([&](nn::Optimizer<T>&) {
      for (const T& v : head.weight.value()) min_w = std::min(min_w, double(v));
    });
    nn::TrainerOptions to;
    to.epochs = o_.epochs;
    to.batch_size = o_.batch_size;
    to.seed = rng_.stream(2000 + std::uint64_t(tasks_)).next_u64();
    nn::Trainer<T> trainer(opt, to);
    const bool kd = o_.distill && teacher_ != nullptr;
    std::vector<int> lab;
    model.train();
    const nn::TrainSummary s = trainer.fit(data.size(), [&](Tape<T>& tape, const std::vector<index_t>& b) {
      Var<T> x = nn::batch_rows(tape, data.x, b);
      const std::vector<int>& y = nn::batch_labels(target, b, lab);
      Var<T> logits = model.forward(x);
      if (!kd) return cross_entropy(logits, y);
      Var<T> old;
      {
        no_grad ng;
        old = teacher_->forward(x);
      }
      return wa_loss(logits, y, old, o_.distill_options);
    });
    r.final_loss = s.last_epoch_loss;
    r.min_head_weight = min_w;

    // norm ratio and Weight Aligning
    if (r.old_classes > 0) {
      double mo, mn;
      detail::mean_norms(row_norms(head.weight.value(), o_.align_options.norm_p), r.old_classes, mo, mn);
      r.rho_before = r.rho_after = mo > 0 ? mn / mo : std::numeric_limits<double>::quiet_NaN();
      if (o_.align) {
        const AlignResult a = weight_align(head, r.old_classes, o_.align_options);
        r.gamma = a.gamma;
        r.rho_after = a.rho_after;
      }
    }
    evaluate(test, r);

    // memory: shrink old classes, herd the new ones on the current model
    if (o_.memory.enabled) {
      r.per_class = exemplars_per_class(o_.memory.budget, r.classes);
      memory_.reduce(r.per_class);
      Rng pick = rng_.stream(3000 + std::uint64_t(tasks_));
      for (int c : classes) {
        const Dataset<T> dc = subset(train, rows_of(train, c));
        const std::vector<index_t> sel = select_exemplars(features(dc.x), r.per_class, o_.memory, pick);
        memory_.add(c, subset(dc, sel).x);
      }
      r.memory_size = memory_.size();
    }

    // the frozen teacher of the next task
    if (o_.distill) {
      Rng scratch(0);
      auto t = std::make_unique<Model>(make_(scratch));
      t->head().resize_like(head);
      nn::copy_parameters(model, *t);
      t->set_requires_grad(false);
      t->eval();
      teacher_ = std::move(t);
    }
    ++tasks_;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o_.progress)
      std::fprintf(stderr, "task %ld: %ld classes, %ld rows, loss %.4f, accuracy %.4f, rho %.3f -> %.3f\n",
                   long(r.task + 1), long(r.classes), long(r.train_rows), r.final_loss, r.accuracy, r.rho_before,
                   r.rho_after);
    return r;
  }

  Factory make_;
  IncrementalOptions o_;
  Rng rng_;
  std::unique_ptr<Model> model_;
  std::shared_ptr<Model> teacher_;    // shared: a failed run() puts the previous one back
  ExemplarMemory<T> memory_;
  std::vector<int> order_;            // class ids by head row
  std::map<int, int> row_of_;         // class id -> head row
  std::map<int, index_t> task_of_;    // class id -> task index
  index_t tasks_ = 0;
};

/// ClassIncrementalLearner<T, Model> with Model deduced from the factory make_model(Rng&).
template <class T, class F>
auto make_learner(F make_model, const IncrementalOptions& o = {}) {
  using Model = std::decay_t<std::invoke_result_t<F&, Rng&>>;
  return ClassIncrementalLearner<T, Model>(std::move(make_model), o);
}

}  // namespace weft::incremental
