package io.diffusion4j.distributed;

import io.diffusion4j.tensor.Tensor;
import io.diffusion4j.train.GradientExchange;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.concurrent.locks.LockSupport;

/**
 * The gradient exchange of a data-parallel run over MPI.
 *
 * <p><b>Fixed-order all-reduce.</b> MPI_Allreduce may add the ranks' contributions in any order (and does, by
 * message size and topology), so ranks could end a step with different bits. Instead the flat gradient buffer is
 * cut into one chunk per rank; MPI_Alltoall sends chunk j of every rank to rank j, which adds the n contributions
 * in rank order 0, 1, ..., n-1 and divides by n, and MPI_Allgather hands every rank every reduced chunk. Each
 * chunk is reduced once, by its owner, so all ranks receive the same bits. The traffic is that of a
 * reduce-scatter plus an all-gather, {@code 2 (n-1)/n} of the buffer sent and received per rank, as in a ring
 * all-reduce.
 *
 * <p><b>Check-in with a deadline.</b> Before each exchange every rank reports its step to rank 0 and waits for
 * rank 0's go-ahead, polling non-blocking requests against a deadline, so that a rank that died or hung is named
 * instead of leaving the others blocked inside a collective: rank 0 names the ranks missing after
 * {@code timeout}; another rank names rank 0 after twice that (rank 0's own message comes first when it is the
 * waiting one). The collectives themselves are non-blocking and polled against the same deadline, so a rank that
 * stops inside an exchange also ends the job, with a message that cannot name it. The caller then ends the job
 * ({@link Mpi#abort}). A rank process that dies is also seen by the launcher (Open MPI's mpirun ends the job and
 * names it).
 *
 * <p>Only the thread that created it may call it (MPI is initialised FUNNELED).
 */
public final class DataParallel implements GradientExchange {
    private static final int TAG_CHECK_IN = 0x6434, TAG_GO = 0x6435;
    private static final long SPIN_NANOS = 20_000_000L;

    private final Mpi mpi;
    private final long timeoutNanos;
    private final Arena arena = Arena.ofConfined();
    private MemorySegment send, recv, mine, full;
    private final MemorySegment checkIns, go, mineCheckIn, gatherOne, gatherAll, flag;
    private int chunk = -1;
    private long bytesPerStep;
    private long exchangeNanos, firstNanos, waitNanos, exchanges;

    /**
     * @param mpi the initialised MPI of this process
     * @param timeoutMillis how long rank 0 waits for the others at each step before it names them (another rank
     *     waits twice that for rank 0)
     */
    public DataParallel(Mpi mpi, long timeoutMillis) {
        this.mpi = Objects.requireNonNull(mpi, "mpi");
        if (timeoutMillis < 1) throw new IllegalArgumentException("timeout must be >= 1 ms, got " + timeoutMillis);
        this.timeoutNanos = Math.multiplyExact(timeoutMillis, 1_000_000L);
        int n = mpi.size();
        // the small messages' buffers live as long as this object: after a timeout their requests stay pending until
        // the job is aborted, and MPI may still write into them
        this.checkIns = arena.allocate(ValueLayout.JAVA_LONG, 2L * n);
        this.go = arena.allocate(ValueLayout.JAVA_LONG, 2);
        this.mineCheckIn = arena.allocate(ValueLayout.JAVA_LONG, 2);
        this.gatherOne = arena.allocate(ValueLayout.JAVA_LONG);
        this.gatherAll = arena.allocate(ValueLayout.JAVA_LONG, n);
        this.flag = arena.allocate(ValueLayout.JAVA_INT);
    }

    @Override
    public int rank() {
        return mpi.rank();
    }

    @Override
    public int worldSize() {
        return mpi.size();
    }

    /** Bytes this rank sent and received per exchange (all-to-all and all-gather), 0 before the first. */
    public long bytesPerExchange() {
        return bytesPerStep;
    }

    /**
     * Mean wall time of the exchanges so far, in seconds (the copies, both collectives and the sums), leaving out the
     * first when there are more (it allocates and touches the buffers and runs the summing loop interpreted).
     */
    public double meanExchangeSeconds() {
        if (exchanges == 0) return 0;
        return exchanges == 1 ? firstNanos * 1e-9 : (exchangeNanos - firstNanos) * 1e-9 / (exchanges - 1);
    }

    /** Mean wall time per exchange spent in the check-in before it (waiting for the slowest rank), in seconds. */
    public double meanWaitSeconds() {
        return exchanges == 0 ? 0 : waitNanos * 1e-9 / exchanges;
    }

    @Override
    public double allReduceMean(Tensor gradients, double loss, long step) {
        Objects.requireNonNull(gradients, "gradients");
        long w0 = System.nanoTime();
        double meanLoss = checkIn(step, loss, "the gradient exchange of step " + step, timeoutNanos);
        long t0 = System.nanoTime();
        waitNanos += t0 - w0;
        int n = mpi.size();
        long p = gradients.elementCount();
        long c = (p + n - 1) / n;
        if (c > Integer.MAX_VALUE / 4) throw new IllegalArgumentException("gradient buffer of " + p + " floats is too large");
        if (chunk != c) allocate((int) c, n);
        gradients.copyTo(send); // the padding after p floats stays zero
        collective(a -> mpi.allToAll(send, recv, chunk, a), "the all-to-all of step " + step);
        // block i of recv is rank i's share of this rank's chunk: add in rank order, the same order on every rank
        float inv = n; // divide rather than multiply by 1/n: exact for powers of two, one rounding either way
        for (int j = 0; j < chunk; j++) {
            float s = recv.getAtIndex(ValueLayout.JAVA_FLOAT, j);
            for (int i = 1; i < n; i++) s += recv.getAtIndex(ValueLayout.JAVA_FLOAT, (long) i * chunk + j);
            mine.setAtIndex(ValueLayout.JAVA_FLOAT, j, s / inv);
        }
        collective(a -> mpi.allGather(mine, full, chunk, a), "the all-gather of step " + step);
        gradients.copyFrom(full);
        long took = System.nanoTime() - t0;
        if (exchanges == 0) firstNanos = took;
        exchangeNanos += took;
        exchanges++;
        return meanLoss;
    }

    private void allocate(int c, int n) {
        chunk = c;
        long bytes = (long) c * n * Float.BYTES;
        send = arena.allocate(bytes, 64);
        send.fill((byte) 0);
        recv = arena.allocate(bytes, 64);
        mine = arena.allocate((long) c * Float.BYTES, 64);
        full = arena.allocate(bytes, 64);
        // sent and received by each rank: (n-1) chunks in the all-to-all and (n-1) in the all-gather, each way
        bytesPerStep = 2L * (n - 1) * c * Float.BYTES;
    }

    /**
     * Checks that every rank holds the same value (a hash of the weights, of the run's settings): throws naming the
     * ranks that differ from rank 0, on every rank.
     */
    public void requireSame(String what, long value) {
        long[] all = gather(value, what);
        List<String> differ = new ArrayList<>();
        for (int r = 1; r < all.length; r++) {
            if (all[r] != all[0]) differ.add(String.format(Locale.ROOT, "rank %d %016x", r, all[r]));
        }
        if (!differ.isEmpty()) {
            throw new MpiException(String.format(Locale.ROOT, "%s differs between the ranks: rank 0 %016x, %s", what,
                    all[0], String.join(", ", differ)));
        }
    }

    private long[] gather(long value, String what) {
        gatherOne.set(ValueLayout.JAVA_LONG, 0, value);
        collective(x -> mpi.allGatherLongs(gatherOne, gatherAll, 1, x), "the all-gather of " + what);
        return gatherAll.toArray(ValueLayout.JAVA_LONG);
    }

    /** A 64-bit FNV-1a hash of a float32 tensor's bits (the replicas' weights are compared by it). */
    public static long hash(Tensor t) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment m = a.allocate(t.byteSize(), 64);
            t.copyTo(m);
            long h = 0xcbf29ce484222325L;
            long n = t.byteSize() / Integer.BYTES;
            for (long i = 0; i < n; i++) {
                h = (h ^ m.getAtIndex(ValueLayout.JAVA_INT, i)) * 0x100000001b3L;
            }
            return h;
        }
    }

    /**
     * A barrier with a deadline: every rank reports {@code step} to rank 0 and waits for its go-ahead (see the class
     * comment). Throws {@link MpiException} naming the late ranks when the deadline passes, or the ranks whose step
     * differs.
     */
    public void checkIn(long step, String what) {
        checkIn(step, 0, what, timeoutNanos);
    }

    /**
     * Waits for rank 0's checkpoint write of {@code step}: a barrier whose deadline is ten times the rank timeout, at
     * least ten minutes, since a save of a large model to slow storage takes longer than a step.
     */
    public void awaitSave(long step) {
        long nanos = Math.max(Math.multiplyExact(timeoutNanos, 10L), 600_000_000_000L);
        checkIn(step, 0, "rank 0's checkpoint write of step " + step, nanos);
    }

    /** The check-in carrying one value per rank: returns their mean, added in rank order by rank 0. */
    private double checkIn(long step, double value, String what, long nanos) {
        int n = mpi.size(), me = mpi.rank();
        if (n == 1) return value;
        try (Arena a = Arena.ofConfined()) { // the requests' handles only: MPI writes them inside MPI_Test alone
            if (me == 0) {
                MemorySegment[] requests = new MemorySegment[n];
                for (int r = 1; r < n; r++) {
                    requests[r] = mpi.irecv(checkIns.asSlice(2L * r * Long.BYTES, 2L * Long.BYTES), 2, r, TAG_CHECK_IN, a);
                }
                List<Integer> missing = waitAll(requests, nanos, a);
                if (!missing.isEmpty()) {
                    throw new MpiException(String.format(Locale.ROOT, "rank%s %s did not reach %s within %s (dead or hung)",
                            missing.size() > 1 ? "s" : "", join(missing), what, seconds(nanos)));
                }
                List<String> wrong = new ArrayList<>();
                double sum = value;
                for (int r = 1; r < n; r++) {
                    long s = checkIns.getAtIndex(ValueLayout.JAVA_LONG, 2L * r);
                    if (s != step) wrong.add("rank " + r + " is at step " + s);
                    sum += Double.longBitsToDouble(checkIns.getAtIndex(ValueLayout.JAVA_LONG, 2L * r + 1));
                }
                if (!wrong.isEmpty()) {
                    throw new MpiException("the ranks are out of step at " + what + ": rank 0 is at step " + step + ", "
                            + String.join(", ", wrong));
                }
                double mean = sum / n;
                go.setAtIndex(ValueLayout.JAVA_LONG, 0, step);
                go.setAtIndex(ValueLayout.JAVA_LONG, 1, Double.doubleToRawLongBits(mean));
                MemorySegment[] sends = new MemorySegment[n];
                for (int r = 1; r < n; r++) sends[r] = mpi.isend(go, 2, r, TAG_GO, a);
                List<Integer> stuck = waitAll(sends, nanos, a);
                if (!stuck.isEmpty()) {
                    throw new MpiException("rank" + (stuck.size() > 1 ? "s " : " ") + join(stuck)
                            + " did not take rank 0's go-ahead for " + what + " within " + seconds(nanos));
                }
                return mean;
            }
            mineCheckIn.setAtIndex(ValueLayout.JAVA_LONG, 0, step);
            mineCheckIn.setAtIndex(ValueLayout.JAVA_LONG, 1, Double.doubleToRawLongBits(value));
            MemorySegment[] requests = {mpi.isend(mineCheckIn, 2, 0, TAG_CHECK_IN, a), mpi.irecv(go, 2, 0, TAG_GO, a)};
            if (!waitAll(requests, 2 * nanos, a).isEmpty()) {
                throw new MpiException(String.format(Locale.ROOT, "rank %d: rank 0 did not answer at %s within %s "
                        + "(dead or hung)", me, what, seconds(2 * nanos)));
            }
            return Double.longBitsToDouble(go.getAtIndex(ValueLayout.JAVA_LONG, 1));
        }
    }

    /**
     * Runs a non-blocking collective to completion or to the deadline: a rank that stops inside the exchange (after
     * the check-in) cannot be named, since a collective does not say who is missing, but it still ends the job.
     */
    private void collective(java.util.function.Function<Arena, MemorySegment> start, String what) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment request = start.apply(a);
            if (!waitAll(new MemorySegment[] {request}, timeoutNanos, a).isEmpty()) {
                throw new MpiException(String.format(Locale.ROOT, "rank %d: %s did not complete within %s (a rank died "
                        + "or hung inside it)", mpi.rank(), what, seconds(timeoutNanos)));
            }
        }
    }

    /** Polls the requests (null entries are skipped) until all complete or the deadline passes; the incomplete. */
    private List<Integer> waitAll(MemorySegment[] requests, long nanos, Arena a) {
        boolean[] done = new boolean[requests.length];
        long start = System.nanoTime(), deadline = start + nanos;
        while (true) {
            boolean all = true;
            for (int i = 0; i < requests.length; i++) {
                if (requests[i] == null || done[i]) continue;
                done[i] = mpi.test(requests[i], flag);
                all &= done[i];
            }
            if (all) return List.of();
            if (System.nanoTime() - deadline > 0) {
                List<Integer> missing = new ArrayList<>();
                for (int i = 0; i < requests.length; i++) if (requests[i] != null && !done[i]) missing.add(i);
                return missing;
            }
            // MPI progresses a non-blocking collective only inside calls such as MPI_Test: poll back to back for
            // the first milliseconds (an exchange's rounds), then every 50 us so a long wait leaves the core free
            if (System.nanoTime() - start > SPIN_NANOS) LockSupport.parkNanos(50_000);
            if (Thread.interrupted()) {
                Thread.currentThread().interrupt();
                throw new MpiException("interrupted while waiting for the other ranks");
            }
        }
    }

    private static String join(List<Integer> ranks) {
        return String.join(", ", ranks.stream().map(String::valueOf).toList());
    }

    private static String seconds(long nanos) {
        return String.format(Locale.ROOT, "%.3g s", nanos * 1e-9);
    }

    /** Frees the exchange buffers (MPI itself stays up until {@link Mpi#finish}). */
    public void close() {
        arena.close();
    }
}
