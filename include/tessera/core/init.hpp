// File: tessera/core/init.hpp
//
// tessera::init(argc, argv): call first in main(). It reads the TESSERA_* environment
// (TESSERA_SCHEDULER, TESSERA_NUM_WORKERS) and tessera's own command-line flags, which it
// removes from argv:
//   --tessera-scheduler=NAME     default scheduler
//   --tessera-num-workers=N      default worker threads
//   --tessera-worker=ADDRESS     serve as a worker of the scheduler at ADDRESS, then exit
//                                (also TESSERA_RUN_WORKER=ADDRESS; the worker's settings come
//                                from TESSERA_WORKER_NTHREADS, _NAME, _PRELOAD, …). This is how
//                                a program's own registered ops run on a cluster: LocalCluster
//                                starts its workers this way when main() called init.
// Unknown --tessera-* flags are an error (ValueError naming the flag).
#pragma once

namespace tessera {

// Initializes tessera from the environment and command line; see the file comment.
void init(int& argc, char** argv);

}  // namespace tessera
