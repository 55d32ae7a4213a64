// examples/peft_bone_finetune.cpp - the fine-tuning experiment of the PEFT spec (section 10.2):
// LoRA, LoRA+, PiSSA, OLoRA, BoneShared (PEFT Bone / MiSS) and BoneAffine (Bat, the paper's
// block-affine Bone) against full fine-tuning and the frozen model, on a shifted teacher.
//
// Protocol (double precision, per seed s):
//   teacher T1: MLP 32-64-64-16, tanh hidden, no biases, W ~ N(0, 1/in). Shifted teacher T2: per
//   layer W += 0.5 (|W|_F / |D|_F) D with D = U V, U (out, 8), V (8, in) standard normal.
//   Inputs x ~ N(0, I_32); loss = mean over the batch of |y_hat - y|^2.
//   Pretrain a student of the same shape on T1: Adam lr 1e-3, 3000 steps, batch 64.
//   Fine-tune on T2: 300 steps, Adam lr 3e-3, batch 64 (the same batches for every arm), adapters
//   on all three layers, base frozen: LoRA r 4 alpha 4; LoRA+ (ratio 16, same lr); PiSSA and
//   OLoRA r 4 alpha 4; BoneShared r 8; BoneAffine r 8; plus full fine-tuning and frozen.
//   Budgets: LoRA family 1216, Bone 1152. Test MSE on 2048 fixed inputs at steps 0, 10, 25, 50,
//   100 and 300.
// Asserted (the spec's margins): step 0 adapters == frozen (1e-9 relative); step 300 full FT
// <= 0.2 frozen, LoRA / LoRA+ / PiSSA / OLoRA / BoneAffine <= 0.4 frozen, BoneShared <= 0.6
// frozen (worst seed); full FT best in >= 80% of seeds; at step 10 PiSSA, OLoRA, LoRA+,
// BoneShared and BoneAffine <= 0.95 x LoRA in >= 80% of seeds; BoneAffine < BoneShared at step
// 300 in >= 80% of seeds. Reported only: the mean step-300 MSE / frozen of every method and
// the ranking with BoneAffine's place among the six adapters. At this scale it does NOT follow
// the LLM-scale paper (Bone best): the shift is a random low-rank D, whose row space is not the
// fixed tiling pattern BoneShared can reach, so BoneShared ends last; this is expected and the
// protocol is not tuned to make Bone win.
// Writes figure-data/peft_bone_finetune.csv (mean training loss per step and method) and
// figure-data/peft_bone_finetune_test.csv (test MSE / frozen at the checkpoints, per seed).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/report.hpp"
#include "common/teacher.hpp"
#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/nn.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/peft.hpp"

using namespace weft;
using weft_examples::Row;

namespace {

constexpr index_t kIn = 32, kHid = 64, kOut = 16, kBatch = 64, kTest = 2048;
constexpr int kPretrain = 3000, kSteps = 300;
const std::vector<int> kCheckpoints = {0, 10, 25, 50, 100, 300};

using weft_examples::teacher::Mat;
using weft_examples::teacher::randn;
using weft_examples::teacher::Teacher;
using weft_examples::teacher::test_mse;
using weft_examples::teacher::train_step;
using weft_examples::teacher::forward;

Teacher make_teacher(Rng& rng) { return weft_examples::teacher::make({kIn, kHid, kHid, kOut}, rng); }

enum Arm { frozen, full_ft, lora, lora_plus, pissa, olora, bone_shared, bone_affine, n_arms };
const char* const kArmName[n_arms] = {"frozen", "full FT", "LoRA", "LoRA+", "PiSSA", "OLoRA", "BoneShared", "BoneAffine"};
const char* const kArmKey[n_arms] = {"frozen", "full_ft", "lora", "lora_plus", "pissa", "olora", "bone_shared", "bone_affine"};

peft::LoraOptions lora_opts(peft::LoraInit init) {
  peft::LoraOptions o;
  o.r = 4;
  o.alpha = 4;
  o.init = init;
  return o;
}
peft::BoneOptions bone_opts() {
  peft::BoneOptions o;
  o.r = 8;
  return o;
}

struct ArmResult {
  std::vector<double> test;   // test MSE at kCheckpoints
  std::vector<double> curve;  // training loss per step 1..kSteps
  index_t trainable = 0;
};

ArmResult run_arm(Arm arm, const nn::MLP<double>& pretrained, const std::vector<Tensor<double>>& bx,
                  const std::vector<Tensor<double>>& by, const Tensor<double>& tx, const Tensor<double>& ty,
                  std::uint64_t seed) {
  Rng rng(seed);
  nn::MLP<double> m({kIn, kHid, kHid, kOut}, rng, nn::Activation::tanh, false);
  nn::copy_parameters(const_cast<nn::MLP<double>&>(pretrained), m);
  nn::AdamOptions ao;
  ao.lr = 3e-3;
  std::unique_ptr<nn::Adam<double>> opt;
  peft::Attachment<double> att;
  switch (arm) {
    case lora: case lora_plus: att = peft::attach_lora(m, lora_opts(peft::LoraInit::kaiming), rng); break;
    case pissa: att = peft::attach_lora(m, lora_opts(peft::LoraInit::pissa), rng); break;
    case olora: att = peft::attach_lora(m, lora_opts(peft::LoraInit::olora), rng); break;
    case bone_shared: att = peft::attach_bone_shared(m, bone_opts(), rng); break;
    case bone_affine: att = peft::attach_bone_affine(m, bone_opts(), rng); break;
    default: break;
  }
  ArmResult r;
  if (arm == full_ft) {
    opt = std::make_unique<nn::Adam<double>>(m.parameters(), ao);
    r.trainable = m.num_parameters(true);
  } else if (arm != frozen) {
    r.trainable = peft::freeze_base(m);
    if (arm == lora_plus) opt = std::make_unique<nn::Adam<double>>(peft::loraplus_param_groups(m, ao.lr, 16.0), ao);
    else opt = std::make_unique<nn::Adam<double>>(att.parameters(), ao);
  }
  Tape<double> tape;
  std::size_t next = 0;
  for (int step = 0; step <= kSteps; ++step) {
    if (next < kCheckpoints.size() && step == kCheckpoints[next]) {
      r.test.push_back(test_mse(m, tx, ty));
      ++next;
    }
    if (step == kSteps) break;
    if (opt) r.curve.push_back(train_step(m, *opt, tape, bx[std::size_t(step)], by[std::size_t(step)]));
    else r.curve.push_back(test_mse(m, bx[std::size_t(step)], by[std::size_t(step)]));
  }
  return r;
}

std::string fmt(double v, const char* f = "%.3g") {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace weft_examples;
  const Args args(argc, argv, {5}, "Bone and the LoRA family fine-tuning a shifted teacher");
  const int S = args.seeds;
  const int need = (4 * S + 4) / 5;  // >= 4 of 5 seeds (1 of 1 with --quick)
  const char* exp_id = "peft/bone_finetune";
  Stopwatch clock;

  // res[seed][arm]
  std::vector<std::vector<ArmResult>> res(static_cast<std::size_t>(S), std::vector<ArmResult>(n_arms));
  for (int s = 0; s < S; ++s) {
    Rng rng(std::uint64_t(1000 + s));
    const Teacher t1 = make_teacher(rng);
    const Teacher t2 = weft_examples::teacher::shift(t1, rng);
    // pretrain the student on T1
    nn::MLP<double> student({kIn, kHid, kHid, kOut}, rng, nn::Activation::tanh, false);
    {
      nn::AdamOptions ao;
      ao.lr = 1e-3;
      nn::Adam<double> opt(student.parameters(), ao);
      Tape<double> tape;
      double last = 0;
      for (int step = 0; step < kPretrain; ++step) {
        const Mat x = randn(kBatch, kIn, rng);
        last = train_step(student, opt, tape, Tensor<double>::from(x), Tensor<double>::from(forward(t1, x)));
      }
      std::fprintf(stderr, "%s seed %d: pretraining loss on T1 after %d steps %.4g\n", exp_id, s, kPretrain, last);
    }
    // fine-tuning data (the same batches for every arm) and the fixed test set, from T2
    std::vector<Tensor<double>> bx, by;
    for (int step = 0; step < kSteps; ++step) {
      const Mat x = randn(kBatch, kIn, rng);
      bx.push_back(Tensor<double>::from(x));
      by.push_back(Tensor<double>::from(forward(t2, x)));
    }
    const Mat xt = randn(kTest, kIn, rng);
    const Tensor<double> tx = Tensor<double>::from(xt), ty = Tensor<double>::from(forward(t2, xt));
    for (int a = 0; a < n_arms; ++a) {
      res[std::size_t(s)][std::size_t(a)] = run_arm(Arm(a), student, bx, by, tx, ty, std::uint64_t(5000 + 100 * s + a));
      const ArmResult& r = res[std::size_t(s)][std::size_t(a)];
      std::fprintf(stderr, "%s seed %d %-10s trainable %5ld  test MSE step 0 %.4g  10 %.4g  300 %.4g\n", exp_id, s,
                   kArmName[a], long(r.trainable), r.test.front(), r.test[1], r.test.back());
    }
  }

  auto at = [&](int s, int a, std::size_t c) { return res[std::size_t(s)][std::size_t(a)].test[c]; };
  const std::size_t c10 = 1, c300 = kCheckpoints.size() - 1;
  const std::vector<Arm> adapters = {lora, lora_plus, pissa, olora, bone_shared, bone_affine};
  bool ok = true;
  const double secs = clock.seconds();
  auto emit_row = [&](const std::string& claim, const std::string& metric, double value, const std::string& bound,
                      bool asserted, bool holds) {
    ok = emit(make_row(exp_id, claim, metric, value, bound, asserted, holds, S, secs)) && ok;
  };

  // step 0: every adapter equals the frozen model
  double d0 = 0;
  for (int s = 0; s < S; ++s)
    for (Arm a : adapters) d0 = std::max(d0, std::abs(at(s, a, 0) - at(s, frozen, 0)) / at(s, frozen, 0));
  emit_row("every adapter is a no-op at step 0 (PiSSA/OLoRA via W_res + sBA = W)",
           "max rel. abs(test MSE - frozen) at step 0", d0, "<= 1e-9", true, d0 <= 1e-9);

  // step 300 margins (worst seed)
  auto worst_ratio = [&](Arm a, std::size_t c) {
    double w = 0;
    for (int s = 0; s < S; ++s) w = std::max(w, at(s, a, c) / at(s, frozen, c));
    return w;
  };
  const struct { Arm arm; double bound; } margins[] = {{full_ft, 0.2}, {lora, 0.4}, {lora_plus, 0.4}, {pissa, 0.4},
                                                       {olora, 0.4}, {bone_affine, 0.4}, {bone_shared, 0.6}};
  for (const auto& m : margins) {
    const double w = worst_ratio(m.arm, c300);
    emit_row(std::string(kArmName[m.arm]) + " adapts to the shifted teacher in 300 steps",
             "test MSE / frozen at step 300 (worst seed)", w, "<= " + fmt(m.bound), true, w <= m.bound);
  }

  // full FT best of all methods
  int ft_best = 0;
  for (int s = 0; s < S; ++s) {
    bool best = true;
    for (Arm a : adapters) best = best && at(s, full_ft, c300) <= at(s, a, c300);
    ft_best += best;
  }
  emit_row("full fine-tuning ends best of all methods", "seeds where full FT has the lowest step-300 MSE", ft_best,
           ">= " + std::to_string(need) + " of " + std::to_string(S), true, ft_best >= need);

  // early convergence vs LoRA at step 10
  for (Arm a : {pissa, olora, lora_plus, bone_shared, bone_affine}) {
    int wins = 0;
    double worst = 0;
    for (int s = 0; s < S; ++s) {
      const double q = at(s, a, c10) / at(s, lora, c10);
      wins += q <= 0.95;
      worst = std::max(worst, q);
    }
    emit_row(std::string(kArmName[a]) + " converges faster than LoRA early (step 10 MSE <= 0.95 x LoRA)",
             "seeds with step-10 MSE <= 0.95 x LoRA (worst ratio " + fmt(worst) + ")", wins,
             ">= " + std::to_string(need) + " of " + std::to_string(S), true, wins >= need);
  }

  // BoneAffine < BoneShared at step 300
  int ab = 0;
  for (int s = 0; s < S; ++s) ab += at(s, bone_affine, c300) < at(s, bone_shared, c300);
  emit_row("BoneAffine (Bat) ends below BoneShared (MiSS) at equal budget",
           "seeds with BoneAffine step-300 MSE < BoneShared", ab, ">= " + std::to_string(need) + " of " + std::to_string(S),
           true, ab >= need);

  // reported only: mean step-300 MSE / frozen and the ranking (paper at LLM scale: Bone < PiSSA < OLoRA < LoRA)
  std::vector<std::pair<double, int>> rank;
  for (int a = full_ft; a < n_arms; ++a) {
    double m = 0;
    for (int s = 0; s < S; ++s) m += at(s, a, c300) / at(s, frozen, c300) / S;
    rank.emplace_back(m, a);
    emit_row(std::string(kArmName[a]) + ": step-300 test MSE relative to frozen (paper: Bone best at LLM scale)",
             "mean test MSE / frozen at step 300 (trainable " + std::to_string(res[0][std::size_t(a)].trainable) + ")",
             m, "", false, true);
  }
  std::sort(rank.begin(), rank.end());
  std::string order;
  for (auto& p : rank) order += (order.empty() ? "" : " < ") + std::string(kArmName[p.second]);
  std::fprintf(stderr, "%s step-300 ranking (mean MSE / frozen, best first): %s\n", exp_id, order.c_str());
  int place = 0;  // BoneAffine's place among the six adapters (1 = best), the paper's headline claim
  for (auto& p : rank)
    if (p.second != full_ft) {
      ++place;
      if (p.second == bone_affine) break;
    }
  emit_row("paper (LLaMA2-7B): Bone (block-affine) best of LoRA/PiSSA/OLoRA; here a random low-rank shift",
           "BoneAffine's place among the 6 adapters at step 300 (ranking: " + order + ")", place, "", false, true);

  // figure series
  {
    auto f = series_file("peft_bone_finetune.csv", "method,step,train_loss_mean");
    for (int a = 0; a < n_arms; ++a)
      for (int step = 0; step < kSteps; ++step) {
        double m = 0;
        for (int s = 0; s < S; ++s) m += res[std::size_t(s)][std::size_t(a)].curve[std::size_t(step)] / S;
        f << kArmKey[a] << ',' << step << ',' << m << '\n';
      }
    auto g = series_file("peft_bone_finetune_test.csv", "method,seed,step,test_mse,ratio_to_frozen");
    for (int a = 0; a < n_arms; ++a)
      for (int s = 0; s < S; ++s)
        for (std::size_t c = 0; c < kCheckpoints.size(); ++c)
          g << kArmKey[a] << ',' << s << ',' << kCheckpoints[c] << ',' << at(s, a, c) << ','
            << at(s, a, c) / at(s, frozen, c) << '\n';
  }
  return ok ? 0 : 1;
}
