// examples/save_load.cpp - save and load (issue 17): train an MLP on the digits, save its state
// dict, fine-tune a LoRA adapter on top, save the adapter PEFT-style (adapter_model.safetensors +
// adapter_config.json), then rebuild everything in a fresh model (load the base, attach + load
// the adapter) and check that its predictions are identical, bit for bit. Not a reproduce row:
// it checks itself and exits non-zero on a mismatch. Options: --dir DIR (where the files go;
// default a fresh directory under the system's temp dir).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <weft/core.hpp>
#include <weft/nn.hpp>
#include <weft/nn/state_dict.hpp>
#include <weft/peft/model.hpp>
#include <weft/peft/save.hpp>

namespace {

using namespace weft;

/// Trains `params` of `model` for `epochs` on the rows of `data` (cross-entropy, AdamW).
void fit(nn::MLP<float>& model, const std::vector<Parameter<float>>& params, const Dataset<float>& data, int epochs) {
  nn::AdamOptions ao;
  ao.lr = 3e-3;
  ao.weight_decay = 0.01;
  nn::AdamW<float> opt(params, ao);
  nn::TrainerOptions options;
  options.epochs = epochs;
  nn::Trainer<float> trainer(opt, options);
  std::vector<int> labels;
  trainer.fit(data.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    return cross_entropy(model(nn::batch_rows(tape, data.x, rows)), nn::batch_labels(data.y, rows, labels));
  });
}

Tensor<float> logits(nn::MLP<float>& model, const Tensor<float>& x) {
  Tape<float> tape;
  no_grad ng;
  return model(tape.constant(x)).value().clone();
}

double accuracy(nn::MLP<float>& model, const Dataset<float>& d) {
  auto f = [&](Tape<float>&, const Var<float>& x) { return model(x); };
  return nn::accuracy<float>(f, d.x, d.y);
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() /
                 ("weft_save_load_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) {
      dir = argv[++i];
    } else {
      const bool help = !std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h");
      std::fprintf(help ? stdout : stderr, "%s%s\nUsage: %s [--dir DIR]  (train, save, reload; checks itself)\n",
                   help ? "" : "unknown argument: ", help ? "" : argv[i], argv[0]);
      return help ? 0 : 2;
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.string().c_str(), ec.message().c_str());
    return 2;
  }
  auto [train, test] = split_mod(load_digits<float>(), 5, 0);
  train.x.array() /= 16.0f;
  test.x.array() /= 16.0f;

  // 1. a base model, trained briefly, saved as a state dict
  Rng rng(0);
  nn::MLP<float> model({64, 32, 10}, rng);
  fit(model, model.parameters(), train, 3);
  const double base_acc = accuracy(model, test);
  nn::save_state_dict(model, (dir / "base.safetensors").string());

  // 2. a LoRA adapter (r 4, alpha 8) on both layers, trained with the base frozen, saved PEFT-style
  peft::LoraOptions lo;
  lo.r = 4;
  lo.alpha = 8;
  auto lora = peft::attach_lora(model, lo, rng);
  peft::freeze_base(model);
  fit(model, lora.parameters(), train, 5);
  const double lora_acc = accuracy(model, test);
  peft::save_adapter(model, lora, (dir / "adapter").string());

  // 3. a fresh model: load the base, then attach and load the adapter
  Rng other(12345);
  nn::MLP<float> fresh({64, 32, 10}, other);
  nn::load_state_dict(fresh, (dir / "base.safetensors").string());
  auto back = peft::load_adapter(fresh, (dir / "adapter").string(), other);

  const Tensor<float> a = logits(model, test.x), b = logits(fresh, test.x);
  const bool same = a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.numel())) == 0;
  std::printf("base test accuracy %.3f, with LoRA %.3f (%lld adapter parameters), reloaded %.3f\n", base_acc, lora_acc,
              static_cast<long long>(back.num_trainable()), accuracy(fresh, test));
  std::printf("files in %s: base.safetensors, adapter/adapter_model.safetensors, adapter/adapter_config.json\n",
              dir.string().c_str());
  std::printf("reloaded logits identical bit for bit: %s\n", same ? "yes" : "NO");
  return same ? 0 : 1;
}
