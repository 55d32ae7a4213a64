// examples/pipeline_charlm.cpp - weft's flagship pipeline (issue 20) on a character-level
// TinyGPT: pretrain -> 2-bit QAT -> adapt -> prune -> deploy. Stage 1 only so far; stages 2-5
// are NOT BUILT yet and the program says so (docs/pipeline.md).
//
// Data (data/README.md): general = the first 100 000 bytes of tiny Shakespeare, split by
// position 90 / 10 (train / validation); legal = four licence texts, split 80 / 20 (the first
// part is kept for the adaptation stage). Raw bytes, no preprocessing; the vocabulary is the
// distinct bytes of both texts (85), so one model reads both domains.
// Model (nn::CausalLM): D 128, 4 layers, 4 heads, context 128, MLP ratio 4, untied head (about
// 0.83 M parameters).
// Stage 1, pretraining in float on the general training split: AdamW (lr 3e-3, betas 0.9 /
// 0.99, weight decay 0.01), batch 16 random windows of 128, global-norm clip 1.0, cosine
// schedule with 5 % warm-up. Full: 600 steps per seed, 3 seeds. --quick: 1 seed, 240 steps.
// --smoke (the ctest smoke run): D 32, 1 layer, context 32, 120 steps, 1 seed.
//
// Asserted (every seed): validation bits per character on the general text below the unigram
// baseline (the byte entropy of the validation split under the training split's byte
// frequencies, add-one smoothed). Reported: general and legal validation bpc (means over seeds),
// the legal unigram baseline, training tokens/s, parameters, and (stderr) a 200-character greedy
// sample of seed 0. Writes figure-data/pipeline_charlm_stage1.csv (validation bpc against step)
// and the pretrained weights of each seed to pipeline_charlm_weights/stage1_seed<k>.safetensors (with
// the model configuration and vocabulary in the metadata) for the later stages.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "common/report.hpp"
#include "weft/core/data.hpp"
#include "weft/nn/causal_lm.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/schedule.hpp"
#include "weft/nn/state_dict.hpp"

using namespace weft;
using namespace weft_examples;

namespace {

std::string read_text(const std::string& file) {
  std::ifstream f(data_path(file), std::ios::binary);
  WEFT_CHECK(f.good(), io, "examples::pipeline_charlm", "expected a readable file, got ", file);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// Cross entropy in bits of `val` under the add-one smoothed byte frequencies of `train`.
double unigram_bits(const std::vector<index_t>& train, const std::vector<index_t>& val, index_t vocab) {
  std::vector<double> count(std::size_t(vocab), 1.0);
  for (index_t t : train) count[std::size_t(t)] += 1;
  const double total = double(train.size() + std::size_t(vocab));
  double bits = 0;
  for (index_t t : val) bits -= std::log2(count[std::size_t(t)] / total);
  return bits / double(val.size());
}

struct Domain {
  std::string name;
  nn::TextSplit split;
  double unigram = 0;
};

struct Stage1Config {
  nn::CausalLMConfig model;
  index_t batch = 16;
  int steps = 600;
  int eval_every = 100;
  double lr = 3e-3;
};

struct Stage1Result {
  double general_bpc = 0, legal_bpc = 0, tokens_per_s = 0;
  index_t parameters = 0;
  std::string sample;
};

Stage1Result pretrain(const Stage1Config& c, const nn::CharVocab& vocab, const Domain& general, const Domain& legal,
                      int seed, std::ofstream& series, const std::string& save_path) {
  Rng rng(std::uint64_t(1000 + seed));
  nn::CausalLM<float> model(c.model, rng);
  nn::TextBatcher batches(general.split.train, {c.batch, c.model.context, std::uint64_t(seed)});
  nn::AdamOptions ao;
  ao.lr = c.lr;
  ao.beta2 = 0.99;
  ao.weight_decay = 0.01;
  nn::AdamW<float> opt(model.parameters(), ao);
  const nn::Schedule sched = nn::cosine_schedule(c.steps, std::max(1, c.steps / 20));
  const auto params = model.parameters();
  auto eval = [&](int step) {
    const double g = nn::evaluate_bits_per_token(model, general.split.val, c.model.context);
    const double l = nn::evaluate_bits_per_token(model, legal.split.val, c.model.context);
    series << seed << ",1," << step << ',' << g << ',' << l << '\n';
    std::fprintf(stderr, "  seed %d step %5d  val bpc general %.3f legal %.3f\n", seed, step, g, l);
    return std::make_pair(g, l);
  };
  eval(0);
  Tape<float> tape;
  double train_seconds = 0;
  for (int step = 0; step < c.steps; ++step) {
    Stopwatch sw;
    const nn::TokenBatch b = batches.next();
    model.zero_grad();
    Var<float> loss = model.loss(tape, b);
    tape.backward(loss);
    nn::clip_grad_norm(params, 1.0);
    opt.set_lr_factor(sched(step));
    opt.step();
    tape.reset();
    train_seconds += sw.seconds();
    if ((step + 1) % c.eval_every == 0 && step + 1 < c.steps) eval(step + 1);
  }
  Stage1Result r;
  std::tie(r.general_bpc, r.legal_bpc) = eval(c.steps);
  r.tokens_per_s = double(c.steps) * double(c.batch * c.model.context) / train_seconds;
  r.parameters = model.num_parameters();
  const std::string prompt = "ROMEO:\n";
  r.sample = prompt + vocab.decode(nn::generate(model, vocab.encode(prompt), 200));

  nn::SaveStateDictOptions so;
  std::string chars;
  for (index_t i = 0; i < vocab.size(); ++i) chars.push_back(vocab.character(i));
  so.metadata = {{"stage", "1 (float pretraining)"},
                 {"dim", std::to_string(c.model.dim)},
                 {"layers", std::to_string(c.model.layers)},
                 {"heads", std::to_string(c.model.heads)},
                 {"context", std::to_string(c.model.context)},
                 {"mlp_ratio", std::to_string(c.model.mlp_ratio)},
                 {"tied_head", c.model.tied_head ? "1" : "0"},
                 {"vocab_bytes", [&] {
                    std::string s;
                    for (char ch : chars) s += std::to_string(int(static_cast<unsigned char>(ch))) + " ";
                    return s;
                  }()}};
  nn::save_state_dict(model, save_path, so);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  Args args("weft flagship pipeline on a character TinyGPT (stage 1: float pretraining)", {3, 1});
  args.flag("--smoke", smoke, "a tiny model for a few seconds (the ctest smoke run)");
  args.parse(argc, argv);
  if (smoke) args.seeds = 1;

  const std::string general_text = read_text("tinyshakespeare_100k.txt");
  const std::string legal_text = read_text("legal_licenses.txt");
  const nn::CharVocab vocab(std::vector<std::string>{general_text, legal_text});
  Domain general{"general", nn::split_by_position(vocab.encode(general_text), 0.9), 0};
  Domain legal{"legal", nn::split_by_position(vocab.encode(legal_text), 0.8), 0};
  general.unigram = unigram_bits(general.split.train, general.split.val, vocab.size());
  legal.unigram = unigram_bits(legal.split.train, legal.split.val, vocab.size());

  Stage1Config c;
  c.model.vocab = vocab.size();
  if (args.quick) c.steps = 240, c.eval_every = 60;
  if (smoke) {
    c.model.dim = 32, c.model.layers = 1, c.model.heads = 2, c.model.context = 32;
    c.steps = 120, c.eval_every = 40;
  }
  const std::string tag = smoke ? " (smoke)" : args.quick ? " (quick)" : "";
  std::fprintf(stderr, "pipeline_charlm%s: vocab %lld, general %zu / %zu, legal %zu / %zu tokens (train / val)\n",
               tag.c_str(), (long long)vocab.size(), general.split.train.size(), general.split.val.size(),
               legal.split.train.size(), legal.split.val.size());

  std::filesystem::create_directories("pipeline_charlm_weights");
  std::ofstream series = series_file("pipeline_charlm_stage1.csv", "seed,stage,step,val_bpc_general,val_bpc_legal");
  std::vector<double> gen, leg, tps;
  bool below = true;
  Stopwatch total;
  Stage1Result first;
  for (int s = 0; s < args.seeds; ++s) {
    Stage1Result r = pretrain(c, vocab, general, legal, s, series,
                              "pipeline_charlm_weights/stage1_seed" + std::to_string(s) + ".safetensors");
    if (s == 0) first = r;
    gen.push_back(r.general_bpc);
    leg.push_back(r.legal_bpc);
    tps.push_back(r.tokens_per_s);
    below = below && r.general_bpc < general.unigram;
  }
  const double secs = total.seconds();
  std::fprintf(stderr, "greedy sample (seed 0, 200 characters after the prompt):\n%s\n---\n", first.sample.c_str());

  const std::string ex = "pipeline/charlm stage 1" + tag;
  bool ok = true;
  char bound[64];
  std::snprintf(bound, sizeof bound, "< %.3f (unigram)", general.unigram);
  ok &= emit(make_row(ex, "pretrained TinyGPT beats the unigram baseline on held-out general text",
                      "val bpc general (max over seeds)", max_of(gen), bound, true, below, args.seeds, secs));
  emit(make_row(ex, "general-domain validation bits per character", "val bpc general (mean)", mean(gen), "", false,
                true, args.seeds, secs));
  emit(make_row(ex, "legal-domain validation bpc before adaptation (model saw no legal text)", "val bpc legal (mean)",
                mean(leg), "", false, true, args.seeds, secs));
  emit(make_row(ex, "unigram baseline on legal validation text (train-split byte frequencies)",
                "bpc legal unigram", legal.unigram, "", false, true, args.seeds, secs));
  emit(make_row(ex, "training throughput (float, batch 16 x context)", "tokens/s (median over seeds)", median(tps),
                "", false, true, args.seeds, secs));
  emit(make_row(ex, "model size", "parameters", double(first.parameters), "", false, true, args.seeds, secs));
  std::fprintf(stderr,
               "stages 2-5 (2-bit OFQ QAT, legal adaptation, D-Pruner, packed deploy): NOT BUILT yet (issue 20)\n");
  return ok ? 0 : 1;
}
