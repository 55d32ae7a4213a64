// weft/nn/hooks.hpp - hooks with owners: HookList<Fn> (a list of callbacks owned by an
// optimiser or a layer) and HookHandle (what add_*_hook returns).
//
// A handle removes its hook when it is destroyed or when remove() is called, so a controller
// that installs hooks (CGA, the oscillation tracker, D-Pruner's dual importance, ...) owns its
// handles and can be destroyed before the optimiser it hooked. The list keeps its hooks in a
// shared control block and the handle holds a weak_ptr to it: a handle that outlives its list
// (the optimiser was destroyed first) does nothing, and a list that is moved (an optimiser
// returned by value) keeps its handles valid. release() leaves a hook installed for the
// list's lifetime (for hooks that capture only values, e.g. copies of parameter handles).
//
//   nn::HookHandle h = opt.add_post_step_hook([](nn::Optimizer<float>&) { ... });
//   h.remove();                // or let h go out of scope
//
// Copying a list (copying a Linear) gives the copy its own control block with the same
// callbacks; the original's handles do not reach the copy. Not thread-safe: add, remove and
// run hooks from one thread (as the optimiser and the layer that own them are used).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace weft::nn {

namespace detail {
/// The part of a hook list a handle can reach: removal by id.
class HookRegistry {
 public:
  virtual ~HookRegistry() = default;
  virtual void remove_hook(std::size_t id) noexcept = 0;
  virtual bool has_hook(std::size_t id) const noexcept = 0;
};
}  // namespace detail

/// Owns one installed hook; removes it when destroyed (move-only).
class [[nodiscard]] HookHandle {
 public:
  HookHandle() = default;
  HookHandle(std::weak_ptr<detail::HookRegistry> reg, std::size_t id) noexcept : reg_(std::move(reg)), id_(id) {}
  HookHandle(const HookHandle&) = delete;
  HookHandle& operator=(const HookHandle&) = delete;
  HookHandle(HookHandle&& o) noexcept : reg_(std::move(o.reg_)), id_(o.id_) { o.id_ = 0; }
  HookHandle& operator=(HookHandle&& o) noexcept {
    if (this != &o) {
      remove();
      reg_ = std::move(o.reg_);
      id_ = o.id_;
      o.id_ = 0;
    }
    return *this;
  }
  ~HookHandle() { remove(); }

  /// Removes the hook; does nothing when it is already gone or its owner was destroyed.
  void remove() noexcept {
    if (id_ != 0)
      if (auto r = reg_.lock()) r->remove_hook(id_);
    reg_.reset();
    id_ = 0;
  }
  /// Gives up ownership: the hook stays installed for as long as its owner lives.
  void release() noexcept {
    reg_.reset();
    id_ = 0;
  }
  /// True while the hook is installed and this handle owns it.
  bool active() const noexcept {
    if (id_ == 0) return false;
    auto r = reg_.lock();
    return r && r->has_hook(id_);
  }
  explicit operator bool() const noexcept { return active(); }

 private:
  std::weak_ptr<detail::HookRegistry> reg_;
  std::size_t id_ = 0;
};

/// Several handles owned together (what a function installing more than one hook returns).
class [[nodiscard]] HookGroup {
 public:
  HookGroup() = default;
  HookGroup(HookGroup&&) noexcept = default;
  HookGroup& operator=(HookGroup&& o) noexcept {
    if (this != &o) {
      remove();
      handles_ = std::move(o.handles_);
    }
    return *this;
  }
  HookGroup(const HookGroup&) = delete;
  HookGroup& operator=(const HookGroup&) = delete;
  ~HookGroup() { remove(); }

  void add(HookHandle h) { handles_.push_back(std::move(h)); }
  /// Removes every hook of the group (idempotent).
  void remove() noexcept {
    for (auto& h : handles_) h.remove();
    handles_.clear();
  }
  /// Leaves every hook installed for its owner's lifetime.
  void release() noexcept {
    for (auto& h : handles_) h.release();
    handles_.clear();
  }
  std::size_t size() const noexcept { return handles_.size(); }
  /// Number of hooks still installed and owned.
  std::size_t active() const noexcept {
    std::size_t n = 0;
    for (auto& h : handles_) n += h.active();
    return n;
  }

 private:
  std::vector<HookHandle> handles_;
};

/// An ordered list of callbacks of type Fn (a std::function), run in the order they were added.
template <class Fn>
class HookList {
 public:
  HookList() = default;
  HookList(const HookList& o) : reg_(o.reg_ ? std::make_shared<Registry>(*o.reg_) : nullptr) {}
  HookList& operator=(const HookList& o) {
    if (this != &o) reg_ = o.reg_ ? std::make_shared<Registry>(*o.reg_) : nullptr;
    return *this;
  }
  HookList(HookList&&) noexcept = default;
  HookList& operator=(HookList&&) noexcept = default;

  /// Appends f; the handle removes it.
  HookHandle add(Fn f) {
    if (!reg_) reg_ = std::make_shared<Registry>();
    const std::size_t id = ++reg_->next;
    reg_->hooks.emplace_back(id, std::move(f));
    return HookHandle(std::weak_ptr<detail::HookRegistry>(reg_), id);
  }
  /// Inserts f before every hook already installed (a hook that must see the step first, such
  /// as dist::DataParallel's gradient all-reduce); the handle removes it.
  HookHandle add_front(Fn f) {
    if (!reg_) reg_ = std::make_shared<Registry>();
    const std::size_t id = ++reg_->next;
    reg_->hooks.emplace(reg_->hooks.begin(), id, std::move(f));
    return HookHandle(std::weak_ptr<detail::HookRegistry>(reg_), id);
  }
  /// Removes the hook with this id (ids of handles); returns whether it was installed.
  bool remove(std::size_t id) noexcept {
    if (!reg_ || !reg_->has_hook(id)) return false;
    reg_->remove_hook(id);
    return true;
  }
  /// Calls every hook with args. A hook may remove itself or others while running: each call
  /// works on a copy of the callback, and removed hooks are skipped.
  template <class... Args>
  void run(Args&&... args) {
    if (!reg_) return;
    std::shared_ptr<Registry> keep = reg_;  // alive even if a hook drops the list's owner state
    for (std::size_t i = 0; i < keep->hooks.size(); ++i) {
      const std::size_t id = keep->hooks[i].first;
      Fn f = keep->hooks[i].second;
      f(args...);
      if (i < keep->hooks.size() && keep->hooks[i].first != id) --i;  // hook i removed itself
    }
  }
  std::size_t size() const noexcept { return reg_ ? reg_->hooks.size() : 0; }
  bool empty() const noexcept { return size() == 0; }

 private:
  struct Registry : detail::HookRegistry {
    std::vector<std::pair<std::size_t, Fn>> hooks;
    std::size_t next = 0;
    void remove_hook(std::size_t id) noexcept override {
      for (std::size_t i = 0; i < hooks.size(); ++i)
        if (hooks[i].first == id) {
          hooks.erase(hooks.begin() + std::ptrdiff_t(i));
          return;
        }
    }
    bool has_hook(std::size_t id) const noexcept override {
      for (auto& h : hooks)
        if (h.first == id) return true;
      return false;
    }
  };
  std::shared_ptr<Registry> reg_;
};

}  // namespace weft::nn
