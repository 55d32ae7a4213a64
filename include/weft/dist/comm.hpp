// weft/dist/comm.hpp - a thin MPI communicator for data parallelism: initialisation, the three
// collectives DataParallel needs (broadcast, all-reduce, all-gather of a few integers), and a
// job-wide abort that names the failing rank.
//
// Optional: only this folder includes <mpi.h>. Use it through the CMake target weft::dist
// (links MPI::MPI_CXX; configure weft with -DWEFT_WITH_MPI=ON or find_package(weft COMPONENTS
// dist)). Nothing outside weft/dist includes these headers.
//
//   int main(int argc, char** argv) {
//     weft::dist::Communicator comm(argc, argv);   // MPI_Init unless already initialised
//     return weft::dist::run(comm, [&] { ... train ...; return 0; });  // a throw aborts all ranks
//   }
//
// Every call checks MPI's return code (the communicator is switched to MPI_ERRORS_RETURN) and
// raises weft::Error naming the MPI function. A collective must be called by every rank in the
// same order; a rank that throws while the others wait in a collective would hang the job, so
// run() (or abort()) turns an exception on any rank into MPI_Abort with the rank and message.
#pragma once

// weft uses MPI's C API only: skip the deprecated C++ bindings (Open MPI's mpicxx.h does not
// compile warning-free with -Wextra -Werror)
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "weft/core/error.hpp"

namespace weft::dist {

/// The MPI datatype of T (float, double, std::int64_t, std::uint64_t, int, char).
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, int>) return MPI_INT;
  else if constexpr (std::is_same_v<T, char>) return MPI_CHAR;
  else static_assert(sizeof(T) == 0, "weft::dist::mpi_type: T must be float, double, int, char, int64_t or uint64_t");
}

namespace detail {
inline void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  WEFT_CHECK(false, generic, what, "expected MPI_SUCCESS, got error ", rc, " (", std::string(msg, std::size_t(len)), ")");
}
/// MPI counts are int: splits a call over n elements into chunks of at most INT_MAX.
template <class F>
void chunked(std::size_t n, F f) {
  const std::size_t max = std::size_t(std::numeric_limits<int>::max());
  for (std::size_t off = 0; off < n; off += max) f(off, int(n - off < max ? n - off : max));
}
}  // namespace detail

class Communicator {
 public:
  /// The world communicator; initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls
  /// MPI, OpenMP threads inside kernels are fine) unless it already is, and finalises it in the
  /// destructor when this object initialised it.
  Communicator() : Communicator(nullptr, nullptr) {}
  Communicator(int& argc, char**& argv) : Communicator(&argc, &argv) {}
  /// Wraps an existing communicator (not freed, MPI not finalised by this object).
  explicit Communicator(MPI_Comm comm) : comm_(comm) { setup(); }

  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  bool is_root() const noexcept { return rank_ == 0; }
  MPI_Comm handle() const noexcept { return comm_; }

  /// data[0..n) <- data of rank `root`, on every rank.
  template <class T>
  void broadcast(T* data, std::size_t n, int root = 0) const {
    detail::chunked(n, [&](std::size_t off, int c) {
      detail::check_mpi(MPI_Bcast(data + off, c, mpi_type<T>(), root, comm_), "dist::Communicator::broadcast");
    });
  }
  /// data[0..n) <- elementwise sum over ranks, on every rank (in place).
  template <class T>
  void allreduce_sum(T* data, std::size_t n) const {
    reduce_in_place(data, n, MPI_SUM, "dist::Communicator::allreduce_sum");
  }
  template <class T>
  void allreduce_min(T* data, std::size_t n) const {
    reduce_in_place(data, n, MPI_MIN, "dist::Communicator::allreduce_min");
  }
  template <class T>
  void allreduce_max(T* data, std::size_t n) const {
    reduce_in_place(data, n, MPI_MAX, "dist::Communicator::allreduce_max");
  }
  /// Starts a non-blocking in-place sum of data[0..n) (n <= INT_MAX); wait() on the request.
  template <class T>
  MPI_Request iallreduce_sum(T* data, std::size_t n) const {
    WEFT_CHECK(n <= std::size_t(std::numeric_limits<int>::max()), value, "dist::Communicator::iallreduce_sum",
               "expected at most INT_MAX elements per request, got ", n);
    MPI_Request r = MPI_REQUEST_NULL;
    detail::check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, int(n), mpi_type<T>(), MPI_SUM, comm_, &r),
                      "dist::Communicator::iallreduce_sum");
    return r;
  }
  static void wait(MPI_Request& r) { detail::check_mpi(MPI_Wait(&r, MPI_STATUS_IGNORE), "dist::Communicator::wait"); }
  /// One value per rank, gathered on every rank (index = rank).
  template <class T>
  std::vector<T> allgather(T value) const {
    std::vector<T> out(static_cast<std::size_t>(size_));
    detail::check_mpi(MPI_Allgather(&value, 1, mpi_type<T>(), out.data(), 1, mpi_type<T>(), comm_),
                      "dist::Communicator::allgather");
    return out;
  }
  void barrier() const { detail::check_mpi(MPI_Barrier(comm_), "dist::Communicator::barrier"); }

  /// Prints "weft::dist: rank R of N: message" to stderr and aborts every rank of the job.
  [[noreturn]] void abort(const std::string& message, int code = 1) const noexcept {
    std::fprintf(stderr, "weft::dist: rank %d of %d: %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_, code);
    std::abort();  // MPI_Abort does not return; keep [[noreturn]] honest
  }

 private:
  Communicator(int* argc, char*** argv) : comm_(MPI_COMM_WORLD) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      detail::check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "dist::Communicator");
      owns_ = true;
    }
    setup();
  }
  void setup() {
    detail::check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "dist::Communicator");
    detail::check_mpi(MPI_Comm_rank(comm_, &rank_), "dist::Communicator");
    detail::check_mpi(MPI_Comm_size(comm_, &size_), "dist::Communicator");
  }
  template <class T>
  void reduce_in_place(T* data, std::size_t n, MPI_Op op, const char* what) const {
    detail::chunked(n, [&](std::size_t off, int c) {
      detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + off, c, mpi_type<T>(), op, comm_), what);
    });
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  bool owns_ = false;
};

/// Runs f() and returns its result; an exception on this rank aborts the whole job with the
/// rank and the message (the other ranks may be waiting in a collective and would hang).
template <class F>
int run(const Communicator& comm, F&& f) noexcept {
  try {
    return f();
  } catch (const std::exception& e) {
    comm.abort(e.what());
  } catch (...) {
    comm.abort("unknown exception");
  }
}

}  // namespace weft::dist
