// weft/core/autograd/tape.hpp - reverse-mode autograd: Tape<T>, Var<T>, no_grad.
//
// The idea is micrograd's: every op stores its output value and a local backward closure,
// gradients accumulate with +=, and backward() visits the recorded ops in reverse order. Here
// nodes are whole tensors, and the tape is a flat vector of nodes in creation order (which is a
// topological order), so backward() is a plain reverse loop: no recursion, no hash maps, no
// shared_ptr graph. Values, gradients and closures live in an arena that reset() rewinds, so
// a training loop that resets its tape every step stops allocating after the first step.
//
//   Tape<double> tape;
//   Var<double> x = tape.variable(Tensor<double>::vector_of({1, 2, 3}));
//   Var<double> y = sum(x * x);
//   tape.backward(y);            // x.grad() == 2 x
//   tape.reset();                // before the next step; x and y are invalid afterwards
//
// Lifetime: a Var is an index into its tape. The references its value() and grad() return stay
// valid until the tape's reset() (or destruction), however many ops are recorded meanwhile:
// nodes live in fixed chunks that never move, so `const Tensor<T>& v = x.value();` may be held
// across further ops. Keep a result beyond reset() with value().clone() (the values of ops
// live in the tape's arena, which reset() rewinds). Parameters (Tape::param) live outside the
// tape: their gradients accumulate into Parameter::grad() and survive reset().
//
// Custom ops: Tape::record(value, {inputs...}, backward) where backward is any callable
// `void(Tape<T>&, const Tensor<T>& grad_out)` that adds into `tape.grad_sink(input)` for
// each input that needs a gradient (grad_sink returns nullptr for those that do not).
// Straight-through estimators, frozen masks and Kronecker tricks are written this way.
//
// Complex T: the gradient convention is the holomorphic derivative (no conjugation): for
// y = f(x), grad_x += grad_y * f'(x). It is the one the complex-step checks and the
// holomorphic equilibrium-propagation estimators need.
//
// Threads: a tape belongs to one thread. Ops may use parallel_for internally.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/core/autograd/arena.hpp"
#include "weft/core/autograd/parameter.hpp"
#include "weft/core/tensor.hpp"

WEFT_NAMESPACE_BEGIN

template <class T>
class Tape;

namespace detail {
inline bool& grad_mode() noexcept {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

/// True unless a no_grad scope is active on this thread.
inline bool is_grad_enabled() noexcept { return detail::grad_mode(); }

/// RAII scope: ops recorded inside store no backward closure (inference, target networks,
/// optimiser-side updates). Nests; restores the previous mode on exit.
class no_grad {
 public:
  no_grad() noexcept : prev_(detail::grad_mode()) { detail::grad_mode() = false; }
  ~no_grad() { detail::grad_mode() = prev_; }
  no_grad(const no_grad&) = delete;
  no_grad& operator=(const no_grad&) = delete;

 private:
  bool prev_;
};

/// RAII scope that re-enables gradient recording inside a no_grad scope.
class enable_grad {
 public:
  enable_grad() noexcept : prev_(detail::grad_mode()) { detail::grad_mode() = true; }
  ~enable_grad() { detail::grad_mode() = prev_; }
  enable_grad(const enable_grad&) = delete;
  enable_grad& operator=(const enable_grad&) = delete;

 private:
  bool prev_;
};

/// A handle to one node of a Tape: its value, and after backward() its gradient.
template <class T>
class Var {
 public:
  Var() = default;
  explicit Var(Tape<T>* tape, std::int32_t id, std::uint32_t generation) noexcept
      : tape_(tape), id_(id), gen_(generation) {}

  bool defined() const noexcept { return tape_ != nullptr; }
  Tape<T>& tape() const {
    WEFT_CHECK(tape_ != nullptr, config, "Var::tape", "expected a Var recorded on a tape, got an empty Var");
    return *tape_;
  }
  std::int32_t id() const noexcept { return id_; }
  /// Which reset() cycle of its tape the Var belongs to (stale Vars are detected).
  std::uint32_t generation() const noexcept { return gen_; }

  const Tensor<T>& value() const;
  /// Gradient after Tape::backward (undefined tensor if no gradient reached this node).
  const Tensor<T>& grad() const;
  bool requires_grad() const;
  const Shape& shape() const { return value().shape(); }
  int rank() const { return value().rank(); }
  index_t dim(int i) const { return value().dim(i); }
  index_t numel() const { return value().numel(); }
  T item() const { return value().item(); }

 private:
  Tape<T>* tape_ = nullptr;
  std::int32_t id_ = -1;
  std::uint32_t gen_ = 0;
};

template <class T>
class Tape {
 public:
  explicit Tape(std::size_t arena_bytes = WEFT_ARENA_BLOCK_BYTES) : arena_(arena_bytes) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  ~Tape() { clear_nodes(); }

  /// A leaf that never needs a gradient (data, targets, frozen tensors). No copy.
  Var<T> constant(const Tensor<T>& value) { return push(value, false); }
  /// A leaf whose gradient is collected on the tape (read it with Var::grad before reset).
  Var<T> variable(const Tensor<T>& value, bool requires_grad = true) {
    return push(value, requires_grad && is_grad_enabled());
  }
  /// A leaf bound to a parameter: no copy of the value, gradient accumulates into p.grad().
  Var<T> param(const Parameter<T>& p) {
    WEFT_CHECK(p.defined(), config, "Tape::param", "expected a defined parameter, got an undefined one");
    Var<T> v = push(p.value(), p.requires_grad() && is_grad_enabled());
    Node& n = nodes_.back();
    if (n.requires_grad) n.grad = const_cast<Parameter<T>&>(p).grad();
    return v;
  }
  /// A new leaf sharing v's value, cut from the graph (no gradient flows through it).
  Var<T> detach(const Var<T>& v) { return constant(value(v)); }

  /// A zero-filled tensor in the arena, valid until reset().
  Tensor<T> alloc(const Shape& s) {
    Tensor<T> t = alloc_uninit(s);
    if (t.numel()) std::memset(static_cast<void*>(t.data()), 0, sizeof(T) * std::size_t(t.numel()));
    return t;
  }
  /// An uninitialised tensor in the arena (for outputs that are fully overwritten).
  Tensor<T> alloc_uninit(const Shape& s) {
    void* p = arena_.allocate(sizeof(T) * std::size_t(s.numel()), WEFT_ALIGNMENT);
    return Tensor<T>::view(static_cast<T*>(p), s);
  }

  /// `bytes` bytes of raw arena memory aligned to `align` (<= 64), valid until reset(); for
  /// index lists and other non-T data a backward closure needs.
  void* alloc_bytes(std::size_t bytes, std::size_t align = alignof(std::max_align_t)) {
    return arena_.allocate(bytes, align > WEFT_ALIGNMENT ? WEFT_ALIGNMENT : align);
  }

  /// Records an op: its output value and a backward closure
  /// `void(Tape<T>&, const Tensor<T>& grad_out)`. The closure is stored only when gradient
  /// recording is enabled and some input needs a gradient.
  template <class F>
  Var<T> record(const Tensor<T>& value, std::initializer_list<Var<T>> inputs, F&& backward) {
    return record_range(value, inputs.begin(), inputs.end(), std::forward<F>(backward));
  }
  template <class It, class F>
  Var<T> record_range(const Tensor<T>& value, It first, It last, F&& backward) {
    bool needs = false;
    for (It it = first; it != last; ++it) {
      const bool r = node(*it).requires_grad;  // node() checks every input belongs to this tape
      needs = needs || r;
    }
    needs = needs && is_grad_enabled();
    Var<T> out = push(value, needs);
    if (needs) set_backward(nodes_.back(), std::forward<F>(backward));
    return out;
  }

  /// Where the backward closure of an op adds the gradient of input v: nullptr when v needs no
  /// gradient, else a tensor of v's shape (zero on first use).
  Tensor<T>* grad_sink(const Var<T>& v) {
    Node& n = node(v);
    if (!n.requires_grad) return nullptr;
    if (!n.grad.defined()) n.grad = alloc(n.value.shape());
    return &n.grad;
  }

  /// Backpropagates from a one-element root (seed 1).
  void backward(const Var<T>& root) {
    WEFT_CHECK(value(root).numel() == 1, shape, "Tape::backward",
               "expected a one-element root (a loss), got shape ", value(root).shape(),
               "; pass a seed gradient for non-scalar roots");
    Tensor<T> seed = alloc_uninit(value(root).shape());
    seed.fill(T(1));
    backward(root, seed);
  }
  /// Backpropagates from `root` with gradient `seed` (same shape as root).
  void backward(const Var<T>& root, const Tensor<T>& seed) {
    Node& r = node(root);
    WEFT_CHECK(seed.shape() == r.value.shape(), shape, "Tape::backward", "expected a seed of shape ",
               r.value.shape(), ", got ", seed.shape());
    WEFT_CHECK(!backward_done_, config, "Tape::backward",
               "expected one backward pass per recorded graph, got a second one; call reset() "
               "and record again (sum several losses into one root instead)");
    backward_done_ = true;
    if (!r.requires_grad) return;
    Tensor<T>* g = grad_sink(root);
    g->array() += seed.array();
    for (std::int32_t i = root.id(); i >= 0; --i) {
      Node& n = nodes_[std::size_t(i)];
      if (n.run && n.grad.defined()) {
        // a handle copy: grad_out stays the same tensor whatever the closure does to the node
        Tensor<T> go = n.grad;
        n.run(n.closure, *this, go);
      }
    }
  }

  /// Forgets every node and rewinds the arena. Vars of this tape become invalid.
  void reset() {
    clear_nodes();
    arena_.reset();
    backward_done_ = false;
    ++gen_;
  }

  std::size_t size() const noexcept { return nodes_.size(); }
  std::size_t node_capacity() const noexcept { return nodes_.capacity(); }
  std::size_t arena_capacity() const noexcept { return arena_.capacity(); }
  std::size_t arena_used() const noexcept { return arena_.used(); }

  const Tensor<T>& value(const Var<T>& v) const { return node(v).value; }
  const Tensor<T>& grad(const Var<T>& v) const { return node(v).grad; }
  bool requires_grad(const Var<T>& v) const { return node(v).requires_grad; }

 private:
  using RunFn = void (*)(void*, Tape&, const Tensor<T>&);
  using DestroyFn = void (*)(void*);
  struct Node {
    Tensor<T> value, grad;
    void* closure = nullptr;
    RunFn run = nullptr;
    DestroyFn destroy = nullptr;
    bool requires_grad = false;
  };

  Var<T> push(const Tensor<T>& value, bool requires_grad) {
    WEFT_CHECK(value.defined(), shape, "Tape::record", "expected a defined value tensor, got an undefined one");
    WEFT_CHECK(nodes_.size() < std::size_t(INT32_MAX), config, "Tape::record",
               "expected fewer than 2^31 nodes on one tape, got more; reset the tape between steps");
    Node& n = nodes_.emplace_back();
    n.value = value;
    n.requires_grad = requires_grad;
    return Var<T>(this, std::int32_t(nodes_.size() - 1), gen_);
  }

  template <class F>
  void set_backward(Node& n, F&& f) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn&, Tape&, const Tensor<T>&>,
                  "a backward closure must be callable as f(Tape<T>&, const Tensor<T>& grad_out)");
    void* mem = arena_.allocate(sizeof(Fn), alignof(Fn) > WEFT_ALIGNMENT ? WEFT_ALIGNMENT : alignof(Fn));
    n.closure = new (mem) Fn(std::forward<F>(f));
    n.run = [](void* c, Tape& t, const Tensor<T>& g) { (*static_cast<Fn*>(c))(t, g); };
    if constexpr (!std::is_trivially_destructible_v<Fn>)
      n.destroy = [](void* c) { static_cast<Fn*>(c)->~Fn(); };
  }

  const Node& node(const Var<T>& v) const {
    WEFT_CHECK(v.defined() && &v.tape() == this && v.generation() == gen_ && v.id() >= 0 &&
                   std::size_t(v.id()) < nodes_.size(),
               config, "Tape", "expected a Var of this tape recorded since the last reset(), got ",
               v.defined() ? (&v.tape() == this ? "a stale Var (the tape was reset)" : "a Var of another tape")
                           : "an empty Var");
    return nodes_[std::size_t(v.id())];
  }
  Node& node(const Var<T>& v) { return const_cast<Node&>(static_cast<const Tape&>(*this).node(v)); }

  void clear_nodes() {
    nodes_.for_each([](Node& n) {
      if (n.destroy) n.destroy(n.closure);
    });
    nodes_.clear();
  }

  // The nodes, in chunks of kChunk that are allocated once and never move: a reference to a
  // node (Var::value(), grad_sink) stays valid while more ops are recorded, and after the first
  // steps of a training loop recording allocates nothing. clear() releases the nodes' tensor
  // handles and keeps the chunks.
  class NodeStore {
   public:
    static constexpr std::size_t kChunk = 256;
    Node& operator[](std::size_t i) noexcept { return chunks_[i / kChunk][i % kChunk]; }
    const Node& operator[](std::size_t i) const noexcept { return chunks_[i / kChunk][i % kChunk]; }
    Node& back() noexcept { return (*this)[n_ - 1]; }
    std::size_t size() const noexcept { return n_; }
    std::size_t capacity() const noexcept { return chunks_.size() * kChunk; }
    Node& emplace_back() {
      if (n_ == capacity()) chunks_.push_back(std::unique_ptr<Node[]>(new Node[kChunk]));
      return (*this)[n_++];
    }
    template <class F>
    void for_each(F&& f) {
      for (std::size_t i = 0; i < n_; ++i) f((*this)[i]);
    }
    void clear() noexcept {
      for (std::size_t i = 0; i < n_; ++i) (*this)[i] = Node{};
      n_ = 0;
    }

   private:
    std::vector<std::unique_ptr<Node[]>> chunks_;
    std::size_t n_ = 0;
  };

  detail::Arena arena_;
  NodeStore nodes_;
  bool backward_done_ = false;
  std::uint32_t gen_ = 0;
};

template <class T>
const Tensor<T>& Var<T>::value() const { return tape().value(*this); }
template <class T>
const Tensor<T>& Var<T>::grad() const { return tape().grad(*this); }
template <class T>
bool Var<T>::requires_grad() const { return tape().requires_grad(*this); }

WEFT_NAMESPACE_END
