// Starting and stopping MPI. dsv2 starts MPI only when a launcher started it
// (mpirun sets OMPI_COMM_WORLD_SIZE; PMI/PMIx launchers set PMI_SIZE or
// PMIX_RANK); a plain `dsv2` run never touches MPI and behaves as one rank.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include "dist/communicator.h"

namespace dsv2::dist {

class Runtime {
 public:
  Runtime(int* argc, char*** argv);  // MPI_Init_thread when launched by mpirun
  ~Runtime();                        // MPI_Finalize
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
};

// True when this process runs under an MPI launcher (whether or not MPI has started yet).
bool launched_by_mpi();
// True between MPI_Init and MPI_Finalize.
bool mpi_active();

// All ranks of the job (Communicator::single() without MPI).
const Communicator& world();

// Processes of this job on this machine (1 without MPI): to share the cores.
int local_ranks();

// Ends the whole job at once (MPI_Abort under MPI, else exit): for an error
// that only this rank knows about, where waiting for the others would hang.
[[noreturn]] void abort_job(int exit_code);

// An error every rank of the job knows about (thrown by run_on_all_ranks), so
// rank 0 alone reports it and every rank exits normally with exit_code.
struct JobError : std::runtime_error {
  JobError(const std::string& message, int exit_code) : std::runtime_error(message), exit_code(exit_code) {}
  int exit_code;
};

// Runs `step` on every rank of `group`, then compares notes (a collective:
// every rank must get here). If it threw anywhere, every rank throws the same
// JobError: the lowest failing rank's message ("rank R: ..." when there are
// several ranks) and exit code (2 for errors `is_usage_error` accepts, else 1).
// Without this, a rank that fails alone would leave the others waiting in the
// next collective.
void run_on_all_ranks(const Communicator& group, const std::function<void()>& step,
                      const std::function<bool(const std::exception&)>& is_usage_error = nullptr);

}  // namespace dsv2::dist
