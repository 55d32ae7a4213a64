// weft/nn/text_data.hpp - character-level text data for language models: a vocabulary, a
// fixed split by position, random training windows and evaluation windows.
//
//   CharVocab vocab({general_text, legal_text});      // sorted distinct bytes of the texts
//   std::vector<index_t> ids = vocab.encode(general_text);
//   TextSplit s = split_by_position(ids, 0.9);        // first 90 % train, the rest validation
//   TextBatcher batches(s.train, {.batch = 16, .context = 128, .seed = 1});
//   TokenBatch b = batches.next();                     // b.inputs (16 * 128), b.targets
//   for (TokenBatch w : eval_windows(s.val, 128, 16)) ...
//
// A window starting at position p has inputs ids[p .. p + T) and targets ids[p + 1 .. p + T]
// (the next character of each input). TextBatcher draws starts uniformly from [0, n - T - 1]
// with its own seeded Rng, so a seed fixes the sequence of batches. eval_windows tiles the
// split with non-overlapping windows (a shorter last one is dropped), in order.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "weft/core/error.hpp"
#include "weft/core/rng.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN
namespace nn {

/// A byte-level vocabulary: the distinct bytes of the given texts, in ascending order.
class CharVocab {
 public:
  CharVocab() = default;
  explicit CharVocab(const std::vector<std::string>& texts) {
    std::array<bool, 256> seen{};
    for (const std::string& s : texts)
      for (char c : s) seen[std::size_t(static_cast<unsigned char>(c))] = true;
    id_.fill(-1);
    for (int b = 0; b < 256; ++b)
      if (seen[std::size_t(b)]) {
        id_[std::size_t(b)] = index_t(chars_.size());
        chars_.push_back(char(b));
      }
    WEFT_CHECK(!chars_.empty(), value, "nn::CharVocab", "expected at least one non-empty text, got none");
  }
  explicit CharVocab(const std::string& text) : CharVocab(std::vector<std::string>{text}) {}

  index_t size() const noexcept { return index_t(chars_.size()); }
  bool contains(char c) const noexcept { return id_[std::size_t(static_cast<unsigned char>(c))] >= 0; }
  index_t id(char c) const {
    const index_t i = id_[std::size_t(static_cast<unsigned char>(c))];
    WEFT_CHECK(i >= 0, value, "nn::CharVocab::id", "expected a character of the vocabulary, got byte ",
               int(static_cast<unsigned char>(c)));
    return i;
  }
  char character(index_t i) const {
    WEFT_CHECK(i >= 0 && i < size(), value, "nn::CharVocab::character", "expected an id in [0, ", size(), "), got ",
               i);
    return chars_[std::size_t(i)];
  }
  /// The ids of the characters of text; every character must be in the vocabulary.
  std::vector<index_t> encode(const std::string& text) const {
    std::vector<index_t> out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      const index_t c = id_[std::size_t(static_cast<unsigned char>(text[i]))];
      WEFT_CHECK(c >= 0, value, "nn::CharVocab::encode", "expected characters of the vocabulary, got byte ",
                 int(static_cast<unsigned char>(text[i])), " at position ", i);
      out.push_back(c);
    }
    return out;
  }
  std::string decode(const std::vector<index_t>& ids) const {
    std::string s;
    s.reserve(ids.size());
    for (index_t i : ids) s.push_back(character(i));
    return s;
  }

 private:
  std::vector<char> chars_;
  std::array<index_t, 256> id_{};
};

/// A fixed split by position: the first part trains, the rest validates.
struct TextSplit {
  std::vector<index_t> train, val;
};

/// ids[0, floor(f n)) for training and ids[floor(f n), n) for validation, f in (0, 1).
inline TextSplit split_by_position(const std::vector<index_t>& ids, double train_fraction) {
  WEFT_CHECK(train_fraction > 0 && train_fraction < 1, value, "nn::split_by_position",
             "expected a train fraction in (0, 1), got ", train_fraction);
  const std::size_t cut = std::size_t(train_fraction * double(ids.size()));
  WEFT_CHECK(cut >= 2 && ids.size() - cut >= 2, value, "nn::split_by_position",
             "expected at least 2 tokens on each side of the split, got ", cut, " and ", ids.size() - cut);
  return TextSplit{std::vector<index_t>(ids.begin(), ids.begin() + std::ptrdiff_t(cut)),
                   std::vector<index_t>(ids.begin() + std::ptrdiff_t(cut), ids.end())};
}

/// `batch` windows of `len` tokens: inputs and next-token targets, row-major (batch * len each).
struct TokenBatch {
  index_t batch = 0, len = 0;
  std::vector<index_t> inputs;
  std::vector<int> targets;
};

namespace detail {
inline void push_window(TokenBatch& b, const std::vector<index_t>& ids, std::size_t start, index_t len) {
  for (index_t j = 0; j < len; ++j) {
    b.inputs.push_back(ids[start + std::size_t(j)]);
    b.targets.push_back(int(ids[start + std::size_t(j) + 1]));
  }
}
}  // namespace detail

struct TextBatcherOptions {
  index_t batch = 16;
  index_t context = 128;
  std::uint64_t seed = 0;
};

/// Random contiguous windows of one token stream, drawn with a seeded Rng.
class TextBatcher {
 public:
  TextBatcher(std::vector<index_t> ids, const TextBatcherOptions& o) : ids_(std::move(ids)), o_(o), rng_(o.seed) {
    WEFT_CHECK(o.batch > 0 && o.context > 0, value, "nn::TextBatcher", "expected batch > 0 and context > 0, got ",
               o.batch, " and ", o.context);
    WEFT_CHECK(index_t(ids_.size()) > o.context, shape, "nn::TextBatcher", "expected more than context = ", o.context,
               " tokens, got ", ids_.size());
  }
  TokenBatch next() {
    TokenBatch b;
    b.batch = o_.batch;
    b.len = o_.context;
    b.inputs.reserve(std::size_t(o_.batch * o_.context));
    b.targets.reserve(std::size_t(o_.batch * o_.context));
    const std::uint64_t starts = std::uint64_t(ids_.size()) - std::uint64_t(o_.context);  // [0, n - T - 1]
    for (index_t i = 0; i < o_.batch; ++i) detail::push_window(b, ids_, std::size_t(rng_.below(starts)), o_.context);
    return b;
  }
  const TextBatcherOptions& options() const noexcept { return o_; }
  index_t tokens() const noexcept { return index_t(ids_.size()); }

 private:
  std::vector<index_t> ids_;
  TextBatcherOptions o_;
  Rng rng_;
};

/// The split tiled by non-overlapping windows of `len` tokens (plus one target each), grouped
/// into batches of at most `batch` windows, in order. Every token but the first of each window
/// is predicted once.
inline std::vector<TokenBatch> eval_windows(const std::vector<index_t>& ids, index_t len, index_t batch) {
  WEFT_CHECK(len > 0 && batch > 0, value, "nn::eval_windows", "expected len > 0 and batch > 0, got ", len, " and ",
             batch);
  WEFT_CHECK(index_t(ids.size()) > len, shape, "nn::eval_windows", "expected more than len = ", len, " tokens, got ",
             ids.size());
  std::vector<TokenBatch> out;
  const std::size_t windows = (ids.size() - 1) / std::size_t(len);
  for (std::size_t w = 0; w < windows; ++w) {
    if (out.empty() || out.back().batch == batch) {
      out.emplace_back();
      out.back().len = len;
    }
    detail::push_window(out.back(), ids, w * std::size_t(len), len);
    ++out.back().batch;
  }
  return out;
}

}  // namespace nn
WEFT_NAMESPACE_END
