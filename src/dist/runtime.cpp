#include "dist/runtime.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace dsv2::dist {

namespace {

Communicator& world_communicator() {
  static Communicator world;
  return world;
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

}  // namespace

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (const char* v = std::getenv(name); v && *v) return true;
  return false;
}

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

Runtime::Runtime(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
  // MPI calls come from one thread at a time (the main thread, or the server's
  // engine thread), never from OpenMP workers.
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
  world_communicator() = Communicator::mpi_world();
}

Runtime::~Runtime() {
  if (!mpi_active()) return;
  world_communicator() = Communicator();
  MPI_Finalize();
}

const Communicator& world() { return world_communicator(); }

int local_ranks() { return std::max(1, env_int("OMPI_COMM_WORLD_LOCAL_SIZE", env_int("MPI_LOCALNRANKS", 1))); }

void abort_job(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

void run_on_all_ranks(const Communicator& all, const std::function<void()>& step,
                      const std::function<bool(const std::exception&)>& is_usage_error) {
  std::string message;
  int code = 0;
  try {
    step();
  } catch (const JobError&) {
    throw;  // already agreed on by every rank
  } catch (const std::exception& e) {
    message = e.what();
    code = is_usage_error && is_usage_error(e) ? 2 : 1;
  }
  const std::vector<int> codes = all.all_gather_value<int>(code);
  int failed = 0;
  while (failed < all.size() && codes[failed] == 0) ++failed;
  if (failed == all.size()) return;
  // Name the rank only when the ranks disagree (an error every rank hit alike,
  // such as a bad option, is reported as it is).
  const std::vector<std::string> messages = all.all_gather(message);
  bool same = true;
  for (int r = 0; r < all.size(); ++r) same = same && codes[r] == codes[failed] && messages[r] == messages[failed];
  throw JobError(same ? messages[failed] : "rank " + std::to_string(failed) + ": " + messages[failed], codes[failed]);
}

}  // namespace dsv2::dist
