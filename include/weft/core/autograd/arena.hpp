// weft/core/autograd/arena.hpp - the bump allocator behind an autograd tape.
//
// Values, gradients and backward closures of one step are carved out of large blocks. reset()
// rewinds the arena; if a step needed more than one block, reset() replaces them by a single
// block of their total size, so from the second step on a training loop does not allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "weft/config.hpp"
#include "weft/core/error.hpp"

WEFT_NAMESPACE_BEGIN
namespace detail {

class Arena {
 public:
  explicit Arena(std::size_t first_block_bytes = WEFT_ARENA_BLOCK_BYTES)
      : first_block_(first_block_bytes < 4096 ? 4096 : first_block_bytes) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (auto& b : blocks_) free_block(b.data);
  }

  /// `bytes` bytes aligned to `align` (a power of two <= WEFT_ALIGNMENT); valid until reset().
  void* allocate(std::size_t bytes, std::size_t align = WEFT_ALIGNMENT) {
    if (bytes == 0) bytes = 1;
    if (!blocks_.empty()) {
      Block& b = blocks_[current_];
      std::size_t at = (b.used + align - 1) & ~(align - 1);
      if (at + bytes <= b.size) {
        b.used = at + bytes;
        return b.data + at;
      }
      // try the next (already allocated) block before asking the system for memory
      while (current_ + 1 < blocks_.size()) {
        Block& n = blocks_[++current_];
        if (bytes <= n.size) {
          n.used = bytes;
          return n.data;
        }
      }
    }
    std::size_t size = blocks_.empty() ? first_block_ : blocks_.back().size * 2;
    if (size < bytes) size = bytes;
    blocks_.push_back(Block{alloc_block(size), size, bytes});
    current_ = blocks_.size() - 1;
    return blocks_.back().data;
  }

  /// Forgets every allocation. Coalesces several blocks into one of their total size.
  void reset() {
    if (blocks_.size() > 1) {
      std::size_t total = 0;
      for (auto& b : blocks_) {
        total += b.size;
        free_block(b.data);
      }
      blocks_.clear();
      blocks_.push_back(Block{alloc_block(total), total, 0});
    }
    for (auto& b : blocks_) b.used = 0;
    current_ = 0;
  }

  /// Bytes reserved from the system.
  std::size_t capacity() const noexcept {
    std::size_t c = 0;
    for (auto& b : blocks_) c += b.size;
    return c;
  }
  /// Bytes handed out since the last reset (including alignment padding).
  std::size_t used() const noexcept {
    std::size_t u = 0;
    for (std::size_t i = 0; i <= current_ && i < blocks_.size(); ++i) u += blocks_[i].used;
    return u;
  }
  std::size_t blocks() const noexcept { return blocks_.size(); }

 private:
  struct Block {
    unsigned char* data;
    std::size_t size, used;
  };
  static unsigned char* alloc_block(std::size_t n) {
    return static_cast<unsigned char*>(::operator new(n, std::align_val_t(WEFT_ALIGNMENT)));
  }
  static void free_block(unsigned char* p) {
    ::operator delete(static_cast<void*>(p), std::align_val_t(WEFT_ALIGNMENT));
  }
  std::vector<Block> blocks_;
  std::size_t current_ = 0;
  std::size_t first_block_;
};

}  // namespace detail
WEFT_NAMESPACE_END
