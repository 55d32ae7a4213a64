// Every family's inference path compiles with -fno-exceptions (issue 18): this translation unit
// includes every family header and explicitly instantiates the families' layer, quantiser,
// adapter and model templates (every member function, so a try/catch or throw anywhere in them
// fails the build), plus the ordinal and incremental entry points that guard work with
// try/catch under exceptions (ordinal::presto's folds, the learner's all-or-nothing steps).
// Compiled only (tests/CMakeLists.txt: the object library weft_no_exceptions_families), with
// -fno-exceptions, so WEFT_NO_EXCEPTIONS is defined by weft/config.hpp.
#include "weft/config.hpp"

#ifndef WEFT_NO_EXCEPTIONS
#error "compile this file with -fno-exceptions"
#endif

#include "weft/deploy.hpp"
#include "weft/ep.hpp"
#include "weft/incremental.hpp"
#include "weft/nn.hpp"
#include "weft/ordinal.hpp"
#include "weft/peft.hpp"
#include "weft/phm.hpp"
#include "weft/prune.hpp"
#include "weft/quant.hpp"
#include "weft/quantile.hpp"
#include "weft/reparam.hpp"

namespace weft {
// nn
template class nn::Linear<float>;
template class nn::MLP<float>;
template class nn::LayerNorm<float>;
template class nn::TransformerBlock<float>;
template class nn::Selector<float>;
// quant
template class quant::StatsQuantizer<2, float>;
template class quant::LsqQuantizer<2, float>;
template class quant::QkrTransformerBlock<float>;
// peft, phm
template class peft::Lora<float>;
template class phm::PhmLinear<float>;
// prune, reparam
template class prune::MaskTransform<float>;
template class reparam::CompandedLayer<float>;
// quantile
template class quantile::LinearQuantileRegression<float>;
// ep
template class ep::DenseNet<double>;
// incremental
template class incremental::ReluFeatures<float>;
template class incremental::ClassIncrementalLearner<float, incremental::IncrementalNet<float, incremental::ReluFeatures<float>>>;
// ordinal (double: the solvers' scalar)
template ordinal::PrestoCv<double> ordinal::presto<double>(const Tensor<double>&, const std::vector<int>&,
                                                           const ordinal::PrestoOptions&, const std::vector<double>&);
template ordinal::Probabilities<double> ordinal::predict_proba<double>(const ordinal::CumulativeLogit<double>&,
                                                                       const Tensor<double>&);
template ordinal::BaselineFit<double> ordinal::fit_proportional_odds<double>(const Tensor<double>&, const std::vector<int>&,
                                                                             const ordinal::BaselineOptions&,
                                                                             const std::vector<double>&);
// deploy
template class deploy::Model<2, 0>;
template class deploy::Model<2, 0, 32>;
template struct deploy::PackedQkrViT<2, 0>;
template deploy::Model<2, 0, 27> deploy::PackedQkrViT<2, 0>::model<27>() const;
template deploy::PackedQkrAttention<2, 0> deploy::pack<2, 0>(quant::QkrAttention<float>&,
                                                             const quant::QuantAttachment<float>&);
template deploy::PackedQkrViT<2, 0> deploy::pack<2, 0>(nn::TinyViT<float>&,
                                                       const std::vector<quant::QkrTransformerBlock<float>*>&,
                                                       const quant::QuantAttachment<float>&);
}  // namespace weft
