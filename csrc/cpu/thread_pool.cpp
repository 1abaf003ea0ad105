// thread_pool.cpp — a small task queue served by persistent threads. Draws are split into a few
// equal ranges (one per thread), so a mutex-guarded queue is cheap next to the work.
#include "thread_pool.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace detnoise {
namespace {

// Counts finished tasks of one parallel_for call.
struct Latch {
  std::mutex mutex;
  std::condition_variable done;
  uint64_t remaining;

  explicit Latch(uint64_t count) : remaining(count) {}
  void arrive() {
    std::lock_guard<std::mutex> lock(mutex);
    if (--remaining == 0) done.notify_one();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [this] { return remaining == 0; });
  }
};

struct Task {
  const std::function<void(uint64_t)>* work;
  uint64_t index;
  Latch* latch;
};

class Pool {
 public:
  // Queues work(1 .. count-1) and returns how many of them were queued (the first `queued`);
  // fewer than count - 1 only if threads could not be started.
  uint64_t submit(uint64_t count, const std::function<void(uint64_t)>* work, Latch* latch) {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t wanted = count - 1;
    while (threads_.size() < wanted) {
      try {
        threads_.emplace_back([this] { serve(); });
      } catch (...) {
        break;
      }
    }
    const uint64_t room = std::min<uint64_t>(wanted, threads_.size());
    uint64_t queued = 0;
    try {
      while (queued < room) {
        queue_.push_back(Task{work, queued + 1, latch});
        ++queued;
      }
    } catch (...) {
      // Out of memory: the tasks not queued run on the caller (parallel_for), none is lost.
    }
    if (queued > 0) wake_.notify_all();
    return queued;
  }

 private:
  void serve() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return !queue_.empty(); });
        task = queue_.front();
        queue_.pop_front();
      }
      (*task.work)(task.index);
      task.latch->arrive();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> queue_;
  std::vector<std::thread> threads_;  // never joined: the pool lives as long as the process
};

// The pool of this process. Deliberately leaked: joining at exit could wait on a thread that a
// fork() left behind, and destroying joinable std::threads aborts.
Pool* g_pool = nullptr;
std::mutex g_pool_mutex;

void forget_pool_in_child() {
  // The parent's pool threads do not exist in the child (and a lock they held stays held there):
  // leak the old pool and its mutex state, and start afresh on first use.
  g_pool = nullptr;
  new (&g_pool_mutex) std::mutex();
}

Pool& pool() {
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, forget_pool_in_child);
    return true;
  }();
  (void)registered;
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool == nullptr) g_pool = new Pool();
  return *g_pool;
}

}  // namespace

void parallel_for(uint64_t count, const std::function<void(uint64_t)>& work) {
  if (count == 0) return;
  if (count == 1) {
    work(0);
    return;
  }
  Latch latch(count - 1);
  const uint64_t queued = pool().submit(count, &work, &latch);
  // Shares that found no thread run here.
  for (uint64_t index = queued + 1; index < count; ++index) {
    work(index);
    latch.arrive();
  }
  work(0);
  latch.wait();
}


}  // namespace detnoise
