// tests/dist/abort_probe.cpp - rank 1 throws inside dist::run while rank 0 waits in a barrier;
// expect_abort.cmake checks that the job ends (no hang) with the rank and the message.
#include <stdexcept>

#include "weft/dist/comm.hpp"

int main(int argc, char** argv) {
  weft::dist::Communicator comm(argc, argv);
  return weft::dist::run(comm, [&] {
    if (comm.rank() == 1) throw std::runtime_error("probe failure on purpose");
    comm.barrier();  // rank 1 never arrives
    return 0;
  });
}
