// examples/quickstart.cpp - the README's example: an MLP on the digits with the Trainer.
#include <cstdio>

#include <weft/core.hpp>
#include <weft/nn.hpp>

int main() {
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
