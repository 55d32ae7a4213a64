// examples/quickstart.cpp - the README's example: an MLP on the digits with the Trainer. It takes
// no options; the first lines of main only answer --help and refuse anything else, as every
// example does (the other examples parse their flags with CLI11; this one stays free of it, so
// it builds exactly as a newcomer's own program against an installed weft: tests/cmake/readme).
#include <cstdio>
#include <cstring>

#include <weft/core.hpp>
#include <weft/nn.hpp>

int main(int argc, char** argv) {
  if (argc > 1) {
    const bool help = !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h");
    std::fprintf(help ? stdout : stderr, "%s%s\nUsage: %s  (trains an MLP on the digits; no options)\n",
                 help ? "" : "unknown argument: ", help ? "" : argv[1], argv[0]);
    return help ? 0 : 2;
  }
  using namespace weft;
  auto [train, test] = split_mod(load_digits<float>(), 5, 0);  // test iff row % 5 == 0
  train.x.array() /= 16.0f;
  test.x.array() /= 16.0f;

  Rng rng(0);
  nn::MLP<float> model({64, 128, 10}, rng);                    // Linear-ReLU-Linear
  nn::AdamW<float> opt(model.parameters());
  nn::TrainerOptions options;
  options.epochs = 30;
  nn::Trainer<float> trainer(opt, options);

  std::vector<int> labels;
  trainer.fit(train.size(), [&](Tape<float>& tape, const std::vector<index_t>& rows) {
    Var<float> logits = model(nn::batch_rows(tape, train.x, rows));
    return cross_entropy(logits, nn::batch_labels(train.y, rows, labels));
  });
  auto forward = [&](Tape<float>&, const Var<float>& x) { return model(x); };
  std::printf("test accuracy %.3f\n", nn::accuracy<float>(forward, test.x, test.y));
}
