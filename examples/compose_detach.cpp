// examples/compose_detach.cpp - issue 16's "detach round trip" (compose/detach_round_trip): every
// family attached to one model, detached in reverse order, and the model is the untouched one.
//
// On an MLP 16-16-16-8 (float and double, one model per seed), examples/common/roundtrip.hpp
// attaches nine records: LoRA, PiSSA (rewrites W), BoneShared, BoneAffine, a Compacter (PHM)
// adapter, 2-bit StatsQ weight quantisers with 4-bit activation quantisers, the compander
// (rewrites W_res), 3-bit LSQ and a 50 % pruning mask (rewrites W), with random adapter
// parameters; every transform stage meets another on one layer. Then each record's detach(), last
// attached first. Asserted, per seed and type: the attached model's output differs from the
// untouched one (the attachments act), no object is left on any layer, and every stored weight and
// bias and the forward output on a fixed (5, 16) input are bit-identical to the untouched model.
// The row's value is the number of (seed, type) runs that held, bound: all of them.
// Seeds: 3 (--quick: 3 as well; a run takes milliseconds).
#include <cstdio>
#include <string>

#include "common/report.hpp"
#include "common/roundtrip.hpp"

using namespace weft;
using namespace weft_examples;

namespace {

template <class T>
bool one(int seed, const char* type) {
  const roundtrip::Result r = roundtrip::run<T>(std::uint64_t(1700 + seed));
  const bool ok = r.records == 9 && r.output_changed && r.left == 0 && r.weights_identical && r.output_identical;
  std::fprintf(stderr,
               "compose/detach_round_trip seed %d %s: %zu records, %zu objects attached, output changed %d; after "
               "detach: %zu left, weights identical %d, output identical %d\n",
               seed, type, r.records, r.objects, int(r.output_changed), r.left, int(r.weights_identical),
               int(r.output_identical));
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args(argc, argv, {3, 3}, "every family attached to one model, detached in reverse order: bit-identical");
  const int S = args.seeds;
  Stopwatch clock;
  int held = 0;
  for (int s = 0; s < S; ++s) {
    held += one<float>(s, "float") ? 1 : 0;
    held += one<double>(s, "double") ? 1 : 0;
  }
  const Row row = make_row("compose/detach_round_trip",
                           "9 records of every family (LoRA, PiSSA, BoneShared, BoneAffine, PHM adapter, StatsQ + "
                           "activation quantiser, compander, LSQ, mask) detached in reverse order restore the model "
                           "bit for bit",
                           "runs (seed x float/double) with weights and output bit-identical", double(held),
                           "== " + std::to_string(2 * S), true, held == 2 * S, S, clock.seconds());
  emit(row);
  return row.holds ? 0 : 1;
}
