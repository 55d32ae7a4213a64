// tests/nn/torch_crosscheck.cpp - the weft half of the PyTorch cross-check; the ctest
// nn_torch_crosscheck runs tests/python/torch_state_dict.py, which writes the inputs, runs this
// program and then checks the files it writes.
//
// Usage: torch_crosscheck DIR. DIR holds what the script wrote with json + struct + numpy:
//   torch_mlp.safetensors      state_dict of torch.nn.Sequential(Linear(8, 32), ReLU(),
//                              Linear(32, 16), ReLU(), Linear(16, 4)) as F32 (keys 0.weight ... 4.bias)
//   torch_mlp_f16/bf16.safetensors   the same weights as torch's .half() / .bfloat16()
//   expect_f16/bf16.safetensors      those rounded weights widened back to F32 by torch
//   x.npy (float32, (10, 8)), y32.npy (torch's float32 output), y64.npy (the float64 output of
//   the same weights)
// It loads the state dict into weft's nn::MLP<float> and nn::MLP<double> {8, 32, 16, 4} through
// the name mapping "k.*" -> "layers.(k/2).*" (no transposition: both store Linear weights as
// (out, in)), reproduces torch's outputs to 1e-6 relative (max |weft - torch| / max |torch|),
// checks that the F16/BF16 files decode to torch's widened values exactly, and writes
// weft_f32/f16/bf16.safetensors from the float model under the torch names for the script to
// compare with torch's own rounding. Then (PEFT adapters, weft/peft/save.hpp) it attaches LoRA
// (r 4, alpha 8), rsLoRA (r 4, alpha 8) and MiSS / BoneShared (r 8) adapters to every layer of
// the loaded float model, trains each for 20 Adam steps on a random regression target, saves them
// PEFT-style under torch's module paths (adapter_lora/, adapter_rslora/, adapter_miss/) and writes
// the adapted outputs on x (y_lora.npy, y_rslora.npy, y_miss.npy) for the script to rebuild from
// the files alone. Exit 0 when every check holds.
#include <cmath>
#include <cstdio>
#include <string>

#include "weft/core/autograd/functions/arith.hpp"
#include "weft/core/autograd/functions/reduce.hpp"
#include "weft/core/autograd/tape.hpp"
#include "weft/core/io/npy.hpp"
#include "weft/core/rng.hpp"
#include "weft/nn/layers.hpp"
#include "weft/nn/optim.hpp"
#include "weft/nn/state_dict.hpp"
#include "weft/peft/model.hpp"
#include "weft/peft/save.hpp"

namespace {

using namespace weft;

std::string torch_to_weft(const std::string& n) {  // "2.weight" -> "layers.1.weight"
  const std::size_t dot = n.find('.');
  if (dot == std::string::npos || dot == 0) return n;  // not a layer key: reported as unexpected
  return "layers." + std::to_string(std::stoi(n.substr(0, dot)) / 2) + n.substr(dot);
}
std::string weft_to_torch(const std::string& n) {  // "layers.1.weight" -> "2.weight"
  const std::size_t dot = n.find('.', 7);
  return std::to_string(2 * std::stoi(n.substr(7, dot - 7))) + n.substr(dot);
}

template <class T>
double rel_error(const Tensor<T>& got, const Tensor<T>& want) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < want.numel(); ++i) {
    diff = std::fmax(diff, std::fabs(double(got.flat(i)) - double(want.flat(i))));
    scale = std::fmax(scale, std::fabs(double(want.flat(i))));
  }
  return diff / scale;
}

bool report(const char* what, bool ok, const std::string& detail) {
  std::printf("%-58s %s  %s\n", what, ok ? "ok  " : "FAIL", detail.c_str());
  return ok;
}

template <class T>
bool check_output(const std::string& dir, const char* what, const char* y_file) {
  Rng rng(0);
  nn::MLP<T> model({8, 32, 16, 4}, rng);
  nn::LoadStateDictOptions lo;
  lo.map_name = torch_to_weft;
  const nn::StateDictReport r = nn::load_state_dict(model, dir + "/torch_mlp.safetensors", lo);
  NpyLoadOptions convert;
  convert.convert = true;
  const Tensor<T> x = load_npy<T>(dir + "/x.npy", convert);
  const Tensor<T> y = load_npy<T>(dir + "/" + y_file, convert);
  Tape<T> tape;
  const Tensor<T> out = model(tape.constant(x)).value();
  const bool same_shape = out.shape() == y.shape();
  const double err = same_shape ? rel_error(out, y) : INFINITY;
  char buf[160];
  std::snprintf(buf, sizeof buf, "loaded %zu tensors, max|weft - torch| / max|torch| = %.3g (bound 1e-6)",
                r.loaded.size(), err);
  return report(what, same_shape && r.loaded.size() == 6 && err <= 1e-6, buf);
}

bool check_half(const std::string& dir, const char* kind) {
  const SafetensorsFile half = load_safetensors(dir + "/torch_mlp_" + kind + ".safetensors");
  const SafetensorsFile wide = load_safetensors(dir + "/expect_" + kind + ".safetensors");
  index_t n = 0, bad = 0;
  for (const SafetensorsInfo& in : half.tensors()) {
    const Tensor<float> a = half.tensor<float>(in.name), b = wide.tensor<float>(in.name);
    for (index_t i = 0; i < a.numel(); ++i, ++n) bad += a.flat(i) != b.flat(i);
  }
  return report((std::string(kind) + " file decodes to torch's widened values").c_str(), n > 0 && bad == 0,
                std::to_string(n) + " values, " + std::to_string(bad) + " differ");
}

/// Attaches an adapter (kind "lora", "rslora" or "miss") to a copy of the torch model, trains it
/// for 20 Adam steps, saves it PEFT-style under torch's names in DIR/adapter_<kind> and writes the
/// adapted output on x to DIR/y_<kind>.npy.
bool adapter_case(const std::string& dir, const std::string& kind) {
  Rng rng(0);
  nn::MLP<float> model({8, 32, 16, 4}, rng);
  nn::LoadStateDictOptions lo;
  lo.map_name = torch_to_weft;
  nn::load_state_dict(model, dir + "/torch_mlp.safetensors", lo);
  Rng arng(5);
  peft::Attachment<float> rec;
  if (kind == "miss") {
    peft::BoneOptions bo;
    bo.r = 8;
    rec = peft::attach_bone_shared(model, bo, arng);
  } else {
    peft::LoraOptions o;
    o.r = 4;
    o.alpha = 8;
    o.rslora = kind == "rslora";
    rec = peft::attach_lora(model, o, arng);
  }
  peft::freeze_base(model);
  NpyLoadOptions convert;
  convert.convert = true;
  const Tensor<float> x = load_npy<float>(dir + "/x.npy", convert);
  Tensor<float> target(Shape{x.dim(0), 4});
  init::uniform(target, -1.0, 1.0, arng);
  nn::AdamOptions ao;
  ao.lr = 2e-2;
  nn::Adam<float> opt(rec.parameters(), ao);
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    Tape<float> t;
    Var<float> d = model(t.constant(x)) - t.constant(target);
    t.backward(sum(d * d));
    opt.step();
  }
  double moved = 0;  // the adapter must have left its initialisation (LoRA B and MiSS M start at 0)
  for (auto& p : rec.parameters())
    if (p.name() == "B" || p.name() == "M") moved = std::fmax(moved, double(p.value().array().abs().maxCoeff()));
  peft::AdapterSaveOptions so;
  so.map_name = weft_to_torch;
  peft::save_adapter(model, rec, dir + "/adapter_" + kind, so);
  Tape<float> t;
  no_grad ng;
  save_npy(dir + "/y_" + kind + ".npy", model(t.constant(x)).value());
  char buf[120];
  std::snprintf(buf, sizeof buf, "trained 20 steps, max |%s| = %.3g", kind == "miss" ? "M" : "B", moved);
  return report(("saved a trained " + kind + " adapter as adapter_" + kind + "/").c_str(), moved > 1e-3, buf);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: torch_crosscheck DIR (run by tests/python/torch_state_dict.py)\n");
    return 2;
  }
  const std::string dir = argv[1];
  try {
    bool ok = check_output<float>(dir, "F32 torch state dict -> weft MLP<float> vs torch float32", "y32.npy");
    ok &= check_output<double>(dir, "F32 torch state dict -> weft MLP<double> vs torch float64", "y64.npy");
    ok &= check_half(dir, "f16");
    ok &= check_half(dir, "bf16");
    // weft's files for the script: the float model under torch's names, as F32, F16 and BF16
    Rng rng(0);
    nn::MLP<float> model({8, 32, 16, 4}, rng);
    nn::LoadStateDictOptions lo;
    lo.map_name = torch_to_weft;
    nn::load_state_dict(model, dir + "/torch_mlp.safetensors", lo);
    using D = nn::SaveStateDictOptions::Dtype;
    const std::pair<const char*, D> kinds[] = {{"f32", D::native}, {"f16", D::f16}, {"bf16", D::bf16}};
    for (const auto& k : kinds) {
      nn::SaveStateDictOptions so;
      so.map_name = weft_to_torch;
      so.dtype = k.second;
      so.metadata = {{"format", "pt"}, {"writer", "weft"}};
      nn::save_state_dict(model, dir + "/weft_" + k.first + ".safetensors", so);
    }
    std::printf("wrote weft_f32/f16/bf16.safetensors\n");
    for (const char* kind : {"lora", "rslora", "miss"}) ok &= adapter_case(dir, kind);
    return ok ? 0 : 1;
  } catch (const weft::Error& e) {
    std::fprintf(stderr, "torch_crosscheck: %s\n", e.what());
    return 1;
  }
}
