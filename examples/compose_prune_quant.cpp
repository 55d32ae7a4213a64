// examples/compose_prune_quant.cpp - weight transforms composed on one nn::Linear (issue 16):
// D-Pruner masks with 2-bit quantisation-aware training, and the weight compander under StatsQ.
//
// Part 1, pruning + quantisation (compose/prune_quant): the character LM and data of
// examples/prune_dpruner_text.cpp (embedding 50 x 10, context 6 -> 64 -> 64 -> 50, pretrained
// 4 epochs on tiny Shakespeare + the legal texts). D-Pruner's dual importance (isotropic, c = 10,
// general importance ObsDiag from the general calibration split, domain pass on the legal one)
// gives 50 % masks per matrix (exact count: 1920 / 2048 / 1600 zeros), applied to the pretrained
// weights. Then, from the same pretrained model, five arms train one epoch over both training
// splits (Adam 1e-3, batch 256, the same shuffling): masks only (float fine-tuning), StatsQ
// only, LSQ only (2 bits per row), masks + StatsQ, masks + LSQ; every Linear quantised. The
// masks are attached first and the quantisers second (the canonical order makes the weight
// Q(W) * M either way); prune::enforce_masks keeps the stored weights pruned.
// Asserted: in every masked arm, after attaching the quantiser and after every optimiser step,
// each matrix's effective weight (Linear::folded_weight) is exactly zero at every pruned entry,
// the mask holding exactly the target count; with StatsQ (no zero level) nothing else is zero,
// so the zero count equals the target exactly. LSQ has a zero level: kept weights may round to
// 0 as well; those extra zeros are reported. Reported: test losses (general and legal, nats per
// symbol, mean over seeds) of the dense model, the pruned model before training, and each arm.
//
// Part 2, compander + StatsQ (compose/compander_statsq): model A of examples/quant_ofq_digits.cpp
// (MLP 64-128-128-10 on digits, 20 float epochs with Adam 1e-3), then 40 epochs of QAT with
// StatsQ 2 bits per row on W1 and W2 (head in float) from the same float model in two arms:
// StatsQ alone (Adam 1e-3), and the weight compander (fixed a = b = 0.5, v = inverse(w)) under
// StatsQ, trained with reparam::compander_adam (lr 1e-3), so the chain is v -> Psi(v) -> Q(Psi(v)).
// Reported only: test accuracies (mean over seeds), the difference and the seeds won.
// Seeds: 3 (part 1) and 5 (part 2); --quick: 1 and 3.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "common/digits.hpp"
#include "common/prune_charlm.hpp"
#include "common/report.hpp"
#include "weft/nn/layers.hpp"
#include "weft/prune.hpp"
#include "weft/quant.hpp"
#include "weft/reparam.hpp"

using namespace weft;
using namespace weft_examples;
namespace cl = weft_examples::charlm;

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// ---------------------------------------------------------------------------------------------
// part 1: D-Pruner masks + 2-bit QAT on the character LM

enum PArm { dense, pruned_only_noretrain, masks_ft, statsq_only, lsq_only, masks_statsq, masks_lsq, n_parms };
const char* const kPArmName[n_parms] = {"dense (pretrained)",        "D-Pruner 50% masks, no training",
                                        "masks only, 1 epoch float", "2-bit StatsQ QAT only",
                                        "2-bit LSQ QAT only",        "masks + 2-bit StatsQ QAT",
                                        "masks + 2-bit LSQ QAT"};
constexpr int kQatEpochs = 1;
constexpr index_t kQatBatch = 256;

struct PruneSeed {
  std::array<double, n_parms> general{}, legal{};
  index_t checks = 0;            ///< (matrix, step) pairs checked
  index_t violations = 0;        ///< pruned entries not exactly 0, or a wrong count
  index_t lsq_extra_zeros = 0;   ///< kept weights rounded to 0 by LSQ, at the last step, summed over matrices
  index_t lsq_kept = 0;          ///< kept weights of the LSQ arm's matrices
};

/// The dual importance (isotropic, c = 10) of every Linear, as in examples/prune_dpruner_text.cpp.
std::vector<Tensor<float>> dual_importance(cl::CharLM& model, const std::vector<prune::NamedLinear<float>>& layers,
                                           cl::Domain& gen, cl::Domain& leg, std::uint64_t seed) {
  std::vector<Tensor<float>> g_imp;
  {
    prune::Calibration<float> cal(layers);
    cl::evaluate(model, gen.calib);
    for (std::size_t l = 0; l < layers.size(); ++l)
      g_imp.push_back(prune::obs_diag_importance(layers[l].second->weight.value(), cal.stats(l)));
  }
  std::vector<Parameter<float>> weights;
  for (auto& l : layers) weights.push_back(l.second->weight);
  prune::DomainPassOptions o;
  o.lr = 0.03;
  o.epochs = 1;
  o.batch_size = 64;
  o.seed = seed;
  const std::vector<const cl::Split*> parts = {&leg.calib};
  std::vector<index_t> idx;
  std::vector<int> lab;
  return prune::dual_importance_pass(model, weights, g_imp, leg.calib.size(),
                                     [&](Tape<float>& tape, const std::vector<index_t>& rows) {
                                       cl::batch_of(parts, rows, idx, lab);
                                       return cross_entropy(model.forward(tape, idx), lab);
                                     },
                                     o);
}

/// Checks every masked matrix of `m`: zero at every pruned entry, the mask's count the target,
/// and (StatsQ or no quantiser) no other zero. Returns the zeros outside the mask (LSQ).
index_t check_zeros(cl::CharLM& m, const std::vector<prune::Mask>& masks, bool exact_total, PruneSeed& r) {
  nn::Linear<float>* ls[3] = {&m.fc1, &m.fc2, &m.fc3};
  index_t extra = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const Tensor<float> w = ls[i]->folded_weight();
    const index_t target = prune::prune_count(0.5, w.numel());
    index_t at_pruned = 0, total = 0;
    for (index_t j = 0; j < w.numel(); ++j) {
      const bool zero = w.flat(j) == 0.0f;
      total += zero;
      at_pruned += zero && masks[i].keep[std::size_t(j)] == 0;
    }
    ++r.checks;
    r.violations += masks[i].zeros() != target || at_pruned != target || (exact_total && total != target);
    extra += total - at_pruned;
  }
  return extra;
}

PruneSeed run_prune_seed(cl::Domain& gen, cl::Domain& leg, int seed) {
  PruneSeed r;
  const cl::ModelConfig cfg;
  Rng rng(1000 + std::uint64_t(seed));
  cl::CharLM model(cfg, rng);
  cl::pretrain(model, {&gen.train, &leg.train}, 4, 256, 3e-3, 2000 + std::uint64_t(seed));
  r.general[dense] = cl::evaluate(model, gen.test);
  r.legal[dense] = cl::evaluate(model, leg.test);
  const auto layers = prune::linear_layers(model);
  const std::vector<Tensor<float>> imp = dual_importance(model, layers, gen, leg, 3000 + std::uint64_t(seed));
  prune::MaskOptions mo;
  mo.sparsity = 0.5;
  std::vector<prune::Mask> masks;
  for (auto& s : imp) masks.push_back(prune::select_mask(s, mo));

  const std::vector<const cl::Split*> train = {&gen.train, &leg.train};
  for (int a = pruned_only_noretrain; a < n_parms; ++a) {
    Rng r2(1000 + std::uint64_t(seed));
    cl::CharLM m(cfg, r2);
    nn::copy_parameters(model, m);
    const bool masked = a == pruned_only_noretrain || a == masks_ft || a == masks_statsq || a == masks_lsq;
    const bool statsq = a == statsq_only || a == masks_statsq, lsq = a == lsq_only || a == masks_lsq;
    std::optional<decltype(prune::apply_masks(m, {}, masks))> pruned;  // whatever record apply_masks returns
    if (masked) pruned.emplace(prune::apply_masks(m, {}, masks));
    if (statsq) (void)quant::quantize_linears(m, quant::statsq_factory<float>());  // 2 bits per row
    if (lsq) (void)quant::quantize_linears(m, quant::lsq_factory<float>());
    if (masked) check_zeros(m, masks, !lsq, r);  // after quantisation, before any step
    if (a != pruned_only_noretrain) {
      nn::AdamOptions ao;
      ao.lr = 1e-3;
      nn::Adam<float> opt(m.parameters(), ao);
      nn::HookHandle keep;
      if (masked) keep = prune::enforce_masks(opt, *pruned);
      nn::TrainerOptions to;
      to.epochs = kQatEpochs;
      to.batch_size = kQatBatch;
      to.seed = 4000 + std::uint64_t(seed);
      nn::Trainer<float> trainer(opt, to);
      index_t extra = 0;
      if (masked) trainer.on_step([&](const nn::StepInfo&) { extra = check_zeros(m, masks, !lsq, r); });
      std::vector<index_t> idx;
      std::vector<int> lab;
      trainer.fit(cl::total_size(train), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
        cl::batch_of(train, rows, idx, lab);
        return cross_entropy(m.forward(tape, idx), lab);
      });
      if (a == masks_lsq) {
        r.lsq_extra_zeros += extra;
        for (auto& k : masks) r.lsq_kept += k.numel() - k.zeros();
      }
    }
    r.general[std::size_t(a)] = cl::evaluate(m, gen.test);
    r.legal[std::size_t(a)] = cl::evaluate(m, leg.test);
  }
  return r;
}

bool prune_quant_rows(const std::vector<PruneSeed>& runs, double secs) {
  const int n = int(runs.size());
  const std::string id = "compose/prune_quant";
  bool ok = true;
  auto row = [&](const std::string& claim, const std::string& metric, double value, const std::string& bound,
                 bool asserted, bool holds) { ok = emit(make_row(id, claim, metric, value, bound, asserted, holds, n, secs)) && ok; };
  index_t checks = 0, violations = 0, extra = 0, kept = 0;
  std::array<double, n_parms> g{}, l{};
  for (auto& r : runs) {
    checks += r.checks;
    violations += r.violations;
    extra += r.lsq_extra_zeros;
    kept += r.lsq_kept;
    for (int a = 0; a < n_parms; ++a) {
      g[std::size_t(a)] += r.general[std::size_t(a)] / n;
      l[std::size_t(a)] += r.legal[std::size_t(a)] / n;
    }
  }
  row("D-Pruner 50% masks keep exactly their zeros through 2-bit StatsQ / LSQ QAT (Q(W) * M; 1920/2048/1600 per matrix)",
      "violations over " + std::to_string(checks) + " (matrix, step) checks after quantisation and every QAT step",
      double(violations), "== 0", true, violations == 0);
  row("LSQ has a zero level: kept weights that round to 0 as well (masks + LSQ, after QAT)",
      "extra zeros / kept weights, over matrices and seeds", kept ? double(extra) / double(kept) : 0.0, "", false, true);
  for (int a = 0; a < n_parms; ++a) {
    row(std::string(kPArmName[a]) + " (char LM K6 E10 H64)", "legal test loss (nats/symbol), mean", l[std::size_t(a)], "",
        false, true);
    row(std::string(kPArmName[a]) + " (char LM K6 E10 H64)", "general test loss (nats/symbol), mean", g[std::size_t(a)],
        "", false, true);
  }
  return ok;
}

// ---------------------------------------------------------------------------------------------
// part 2: the compander under StatsQ on digits

constexpr int kFloatEpochs = 20, kQatEpochsDigits = 40;

nn::MLP<float> make_mlp(std::uint64_t seed) {
  Rng rng(seed);
  nn::MLP<float> m({64, 128, 128, 10}, rng);
  for (auto& l : m.layers) l.bias.value().set_zero();
  return m;
}

void train_digits(nn::MLP<float>& m, nn::Optimizer<float>& opt, const DigitsSplit& d, int epochs, std::uint64_t seed) {
  nn::TrainerOptions to;
  to.epochs = epochs;
  to.batch_size = 64;
  to.seed = seed;
  nn::Trainer<float> tr(opt, to);
  std::vector<int> labels;
  tr.fit(d.train.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    return cross_entropy(m(nn::batch_rows(tape, d.train.x, rows)), nn::batch_labels(d.train.y, rows, labels));
  });
}
double accuracy(nn::MLP<float>& m, const DigitsSplit& d) {
  auto f = [&](Tape<float>&, const Var<float>& x) { return m(x); };
  return nn::accuracy<float>(f, d.test.x, d.test.y);
}

struct CompanderSeed {
  double fp = 0, statsq = 0, compander_statsq = 0;
};

CompanderSeed run_compander_seed(const DigitsSplit& d, int seed) {
  CompanderSeed r;
  nn::MLP<float> fp = make_mlp(std::uint64_t(seed));
  {
    nn::Adam<float> opt(fp.parameters());
    train_digits(fp, opt, d, kFloatEpochs, std::uint64_t(seed) * 1000 + 1);
  }
  r.fp = accuracy(fp, d);
  const nn::Selector<float> hidden({"layers.0", "layers.1"});  // W1, W2; the head stays in float
  nn::AdamOptions ao;
  ao.lr = 1e-3;
  for (int arm = 0; arm < 2; ++arm) {
    nn::MLP<float> m = make_mlp(std::uint64_t(seed));
    nn::copy_parameters(fp, m);
    (void)quant::quantize_linears(m, quant::statsq_factory<float>(), hidden);
    const std::uint64_t order = std::uint64_t(seed) * 1000 + 2;  // the same batches in both arms
    if (arm == 0) {
      nn::Adam<float> opt(m.parameters(), ao);
      train_digits(m, opt, d, kQatEpochsDigits, order);
      r.statsq = accuracy(m, d);
    } else {
      reparam::CompanderOptions co;
      co.a = 0.5;
      co.b = 0.5;
      auto att = reparam::attach_compander(m, co, hidden);  // goes before StatsQ in each chain
      auto opt = reparam::compander_adam(m, att, ao);
      train_digits(m, opt, d, kQatEpochsDigits, order);
      r.compander_statsq = accuracy(m, d);
    }
  }
  return r;
}

bool compander_rows(const std::vector<CompanderSeed>& runs, double secs) {
  const int n = int(runs.size());
  const std::string id = "compose/compander_statsq";
  bool ok = true;
  auto row = [&](const std::string& claim, const std::string& metric, double value) {
    ok = emit(make_row(id, claim, metric, value, "", false, true, n, secs)) && ok;
  };
  std::vector<double> fp, sq, cs, diff;
  int wins = 0;
  for (auto& r : runs) {
    fp.push_back(r.fp);
    sq.push_back(r.statsq);
    cs.push_back(r.compander_statsq);
    diff.push_back(r.compander_statsq - r.statsq);
    wins += r.compander_statsq > r.statsq;
  }
  row("MLP 64-128-128-10 after 20 float epochs", "test accuracy, float, mean over seeds", mean(fp));
  row("2-bit StatsQ QAT of W1, W2, 40 epochs (Adam)",
      "test accuracy, mean over seeds (min " + fmt("%.4f", min_of(sq)) + ")", mean(sq));
  row("compander a=b=0.5 under 2-bit StatsQ (v -> Psi(v) -> Q), 40 epochs (compander_adam)",
      "test accuracy, mean over seeds (min " + fmt("%.4f", min_of(cs)) + ")",
      mean(cs));
  row("compander + StatsQ against StatsQ alone (no claim at this scale)",
      "accuracy difference, mean over seeds (seeds won " + std::to_string(wins) + " of " + std::to_string(n) + ")",
      mean(diff));
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args(argc, argv, {3, 1}, "D-Pruner masks with 2-bit QAT; the compander under StatsQ");
  Stopwatch clock;
  cl::Domain gen(cl::load_symbols("tinyshakespeare_100k.txt"), 6);
  cl::Domain leg(cl::load_symbols("legal_licenses.txt"), 6);
  std::vector<PruneSeed> pr;
  for (int s = 0; s < args.seeds; ++s) {
    pr.push_back(run_prune_seed(gen, leg, s));
    std::fprintf(stderr, "compose/prune_quant seed %d (%zu checks, %zu violations), legal / general test loss:\n", s,
                 std::size_t(pr.back().checks), std::size_t(pr.back().violations));
    for (int a = 0; a < n_parms; ++a)
      std::fprintf(stderr, "  %-34s %.4f / %.4f\n", kPArmName[a], pr.back().legal[std::size_t(a)],
                   pr.back().general[std::size_t(a)]);
  }
  const double t_prune = clock.seconds();
  const DigitsSplit data = load_digits_split();
  std::vector<CompanderSeed> cr;
  const int cseeds = args.quick ? 3 : 5;
  for (int s = 0; s < cseeds; ++s) {
    cr.push_back(run_compander_seed(data, s));
    std::fprintf(stderr, "compose/compander_statsq seed %d: float %.4f, StatsQ %.4f, compander + StatsQ %.4f\n", s,
                 cr.back().fp, cr.back().statsq, cr.back().compander_statsq);
  }
  const double t_comp = clock.seconds() - t_prune;
  bool ok = prune_quant_rows(pr, t_prune);
  ok = compander_rows(cr, t_comp) && ok;
  return ok ? 0 : 1;
}
