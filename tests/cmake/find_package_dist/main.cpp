// An installed weft with WEFT_WITH_MPI: weft::dist links MPI; a one-rank sum runs without mpirun.
#include <weft/dist.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  weft::dist::Communicator comm(argc, argv);
  double x = comm.rank() + 1.0;
  comm.allreduce_sum(&x, 1);
  if (comm.is_root()) std::printf("consumer dist ok: %d rank(s), sum %g\n", comm.size(), x);
  return 0;
}
