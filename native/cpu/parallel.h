// A minimal fork-join pool for the CPU backend. Work is split into contiguous
// ranges by the caller's fixed grain, never by thread count, so every result
// (including reductions, which combine per-grain partials in index order) is
// identical whatever the number of threads.
#ifndef D4J_CPU_PARALLEL_H
#define D4J_CPU_PARALLEL_H

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace d4j::cpu {

class ThreadPool {
public:
    explicit ThreadPool(int threads) { resize(threads); }
    ~ThreadPool() { stop(); }
    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int threads() const { return (int)workers_.size() + 1; }

    void resize(int threads) {
        stop();
        stopping_ = false;
        stopping_atomic_.store(false);
        // New workers start at the current generation, so a finished region is not run again.
        const uint64_t start = generation_;
        blocks_ = std::vector<Block>((size_t)(threads < 1 ? 1 : threads));
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this, start, i] { work(i, start); });
    }

    // Calls fn(task) for task in [0, tasks), spread over the pool; the caller
    // takes part. Tasks are claimed dynamically; what each task computes
    // depends only on its index.
    void run(int64_t tasks, const std::function<void(int64_t)> &fn) {
        if (tasks <= 0) return;
        if (tasks == 1 || workers_.empty()) {
            for (int64_t i = 0; i < tasks; ++i) fn(i);
            return;
        }
        std::lock_guard<std::mutex> serial(run_mu_);  // one parallel region at a time
        {
            std::lock_guard<std::mutex> lock(mu_);
            fn_ = &fn;
            tasks_ = tasks;
            const int parts = (int)workers_.size() + 1;
            for (int p = 0; p < parts; ++p) {
                blocks_[p].next.store(tasks * p / parts, std::memory_order_relaxed);
                blocks_[p].end = tasks * (p + 1) / parts;
            }
            pending_.store((int)workers_.size(), std::memory_order_relaxed);
            ++generation_;
            generation_atomic_.store(generation_, std::memory_order_release);
        }
        cv_.notify_all();  // no system call when every worker is still spinning
        drain(0);
        // Wait for the workers to check in: spin first (a futex sleep and wake-up
        // costs 10-50 us, more than a whole kernel at batch 1), then sleep.
        for (int spin = 0; spin < kWaitSpins && pending_.load(std::memory_order_acquire) != 0; ++spin) cpu_relax();
        if (pending_.load(std::memory_order_acquire) != 0) {
            std::unique_lock<std::mutex> lock(mu_);
            done_cv_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        }
        fn_ = nullptr;
    }

private:
    // Pause loops of ~0.3 ms (idle worker between regions) and ~0.1 ms (caller
    // waiting for the workers to finish) before falling back to a futex sleep.
    static constexpr int kIdleSpins = 20000;
    static constexpr int kWaitSpins = 8000;

    // Tasks are dealt out in contiguous blocks, one per participant (the
    // caller is participant 0, worker i is participant i), so consecutive
    // kernels over the same rows run on the same core and find their data in
    // its L2; a participant that finishes its block goes on with what is left
    // of the others' blocks (a descheduled or late worker costs no idle time).
    // Which thread runs a task never changes what the task computes.
    void drain(int self) {
        const int parts = (int)workers_.size() + 1;
        for (int i = 0; i < parts; ++i) {
            Block &blk = blocks_[(self + i) % parts];
            for (;;) {
                const int64_t t = blk.next.fetch_add(1, std::memory_order_relaxed);
                if (t >= blk.end) break;
                (*fn_)(t);
            }
        }
    }

    static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }

    void work(int self, uint64_t seen) {
        for (;;) {
            // Spin briefly before sleeping: back-to-back kernels (a sampling
            // loop at batch 1) then start without a futex wake-up (~10-50 us).
            for (int spin = 0; spin < kIdleSpins && generation_atomic_.load(std::memory_order_acquire) == seen &&
                               !stopping_atomic_.load(std::memory_order_relaxed);
                 ++spin)
                cpu_relax();
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || generation_ != seen; });
                if (stopping_) return;
                seen = generation_;
            }
            drain(self);
            // The last worker out wakes the caller if it went to sleep; the
            // notify under mu_ cannot be lost (the caller tests pending_ under mu_).
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lock(mu_);
                done_cv_.notify_one();
            }
        }
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
            stopping_atomic_.store(true);
        }
        cv_.notify_all();
        for (auto &t : workers_) t.join();
        workers_.clear();
    }

    std::vector<std::thread> workers_;
    std::mutex run_mu_, mu_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(int64_t)> *fn_ = nullptr;
    int64_t tasks_ = 0;
    struct alignas(64) Block {
        std::atomic<int64_t> next{0};
        int64_t end = 0;
    };
    std::vector<Block> blocks_;  // one per participant, each on its own cache line
    std::atomic<int> pending_{0};
    uint64_t generation_ = 0;
    bool stopping_ = false;
    std::atomic<uint64_t> generation_atomic_{0};  // mirrors generation_ for the lock-free spin
    std::atomic<bool> stopping_atomic_{false};
};

// Below this many elements of work a kernel runs on the calling thread: waking
// the workers costs more than the work they would take over.
constexpr int64_t kSerialBelow = 8192;

// Runs fn(task) for task in [0, tasks); serially when the whole call touches
// fewer than kSerialBelow elements.
inline void run_tasks(ThreadPool &pool, int64_t tasks, int64_t elements, const std::function<void(int64_t)> &fn) {
    if (elements < kSerialBelow) {
        for (int64_t t = 0; t < tasks; ++t) fn(t);
    } else {
        pool.run(tasks, fn);
    }
}

// Runs fn(begin, end) over [0, n) in ranges of `grain` elements.
inline void parallel_ranges(ThreadPool &pool, int64_t n, int64_t grain,
                            const std::function<void(int64_t, int64_t)> &fn) {
    int64_t tasks = (n + grain - 1) / grain;
    run_tasks(pool, tasks, n, [&](int64_t t) {
        int64_t b = t * grain;
        int64_t e = b + grain < n ? b + grain : n;
        fn(b, e);
    });
}

}  // namespace d4j::cpu
#endif
