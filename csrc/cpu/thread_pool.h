// thread_pool.h — the CPU launcher's persistent worker threads.
#pragma once

#include <cstdint>
#include <functional>

namespace detnoise {

// Runs work(0), ..., work(count - 1) and returns when all have finished: index 0 on the calling
// thread, the others on pool threads (started on first need and kept). Safe to call from several
// threads at once. A child process after fork() starts a fresh pool: the parent's threads do not
// exist there. If a thread cannot be started, its share runs on the calling thread. `work` must
// not throw.
void parallel_for(uint64_t count, const std::function<void(uint64_t)>& work);

}  // namespace detnoise
