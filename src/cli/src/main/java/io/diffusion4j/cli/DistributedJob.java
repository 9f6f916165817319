package io.diffusion4j.cli;

import io.diffusion4j.distributed.DataParallel;
import io.diffusion4j.distributed.Mpi;
import io.diffusion4j.distributed.MpiException;
import io.diffusion4j.train.Trainer;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * One rank of {@code train --distributed}: MPI, the gradient exchange, and the rule that a failure on any rank ends
 * the whole job (MPI_Abort, which makes the launcher stop every rank) instead of leaving the others waiting.
 */
final class DistributedJob {
    /** The training-state metadata key with the number of ranks that trained a checkpoint (absent: 1). */
    static final String RANKS_KEY = "world_size";

    /** Where the progress lines of ranks other than 0 go. */
    static final PrintStream QUIET = new PrintStream(OutputStream.nullOutputStream());

    private final Mpi mpi;
    private final DataParallel exchange;
    private final int checkEvery;
    private final PrintStream err;

    private DistributedJob(Mpi mpi, DataParallel exchange, int checkEvery, PrintStream err) {
        this.mpi = mpi;
        this.exchange = exchange;
        this.checkEvery = checkEvery;
        this.err = err;
    }

    /**
     * Initialises MPI (throws {@link MpiException} with the reason when it cannot), and before any backend opens gives
     * each rank of a node its own GPU ({@link #visibleDevice}).
     */
    static DistributedJob start(long timeoutMillis, int checkEvery, PrintStream err) {
        Mpi mpi = Mpi.init(System.getenv());
        String gpu = visibleDevice(System.getenv());
        if (gpu != null) Mpi.setenv("CUDA_VISIBLE_DEVICES", gpu, true); // read by the CUDA runtime when it starts
        return new DistributedJob(mpi, new DataParallel(mpi, timeoutMillis), checkEvery, err);
    }

    /**
     * The CUDA_VISIBLE_DEVICES a rank should run with: its local rank (the index among the ranks on its node) when the
     * node has more than one rank and the launcher or user did not set the variable; else null (leave it as it is:
     * one rank per node uses the default device, and a set value is the user's own assignment).
     */
    static String visibleDevice(Map<String, String> env) {
        if (env.containsKey("CUDA_VISIBLE_DEVICES")) return null;
        Integer local = firstInt(env, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID");
        Integer ranks = firstInt(env, "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE");
        return local == null || ranks == null || ranks <= 1 || local < 0 ? null : Integer.toString(local);
    }

    private static Integer firstInt(Map<String, String> env, String... keys) {
        for (String k : keys) {
            String v = env.get(k);
            if (v == null) continue;
            try {
                return Integer.parseInt(v.trim());
            } catch (NumberFormatException e) {
                // not a plain number (Slurm's "2(x3)"): try the next variable
            }
        }
        return null;
    }

    int rank() {
        return mpi.rank();
    }

    int size() {
        return mpi.size();
    }

    DataParallel exchange() {
        return exchange;
    }

    int checkEvery() {
        return checkEvery;
    }

    /** The CPU threads of one rank when --threads is not given: the cores shared by the ranks on this node. */
    int defaultThreads() {
        Integer local = firstInt(System.getenv(), "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE");
        return Math.max(1, Runtime.getRuntime().availableProcessors() / Math.max(1, local == null ? 1 : local));
    }

    /**
     * Runs the rank's work; any exception or non-zero result prints a message naming this rank and aborts the job.
     * On success every rank finalises MPI and returns 0.
     */
    Integer run(Callable<Integer> body) {
        int rc;
        try {
            rc = body.call();
        } catch (Throwable e) {
            String m = e.getMessage() == null ? e.toString() : e.getMessage();
            if (m.startsWith("train: ")) m = m.substring("train: ".length()); // the prefix goes before the rank
            say(String.format(Locale.ROOT, "train: rank %d of %d: %s; ending the job", rank(), size(), m));
            mpi.abort(e instanceof picocli.CommandLine.ParameterException ? 2 : 1);
            return 1; // not reached
        }
        if (rc != 0) {
            say(String.format(Locale.ROOT, "train: rank %d of %d stopped with exit code %d; ending the job", rank(), size(), rc));
            mpi.abort(rc);
        }
        exchange.close();
        mpi.finish();
        return 0;
    }

    /** One write per line: the ranks share the launcher's stderr, and split writes interleave. */
    private void say(String line) {
        err.print(line + System.lineSeparator());
        err.flush();
    }

    /** Refuses to start when the ranks were given different settings or hold different initial weights. */
    void agree(Trainer trainer, Map<String, String> runMeta) {
        String settings = trainer.options() + "|" + trainer.model().config().toMap() + "|" + runMeta + "|"
                + trainer.stepCount() + "|" + trainer.state();
        exchange.requireSame("the run's settings (command line, data, checkpoint state)", fnv(settings));
        exchange.requireSame("the starting weights", weightsHash(trainer));
    }

    /** Compares the ranks' weights and EMA (a hash); prints the result on {@code out} when not null. */
    void checkReplicas(Trainer trainer, PrintStream out) {
        long h = weightsHash(trainer);
        exchange.requireSame("the weights after step " + trainer.stepCount(), h);
        if (out != null) {
            out.printf(Locale.ROOT, "replicas: weights identical on %d ranks after step %d (hash %016x)%n", size(),
                    trainer.stepCount(), h);
        }
    }

    private static long weightsHash(Trainer trainer) {
        return DataParallel.hash(trainer.model().parameters()) * 31 + DataParallel.hash(trainer.emaParameters());
    }

    private static long fnv(String s) {
        long h = 0xcbf29ce484222325L;
        for (int i = 0; i < s.length(); i++) h = (h ^ s.charAt(i)) * 0x100000001b3L;
        return h;
    }

    /** The line the job prints at its start. */
    String describe(Trainer trainer) {
        long p = trainer.model().parameters().elementCount();
        long chunk = (p + size() - 1) / size();
        double mb = 2.0 * (size() - 1) * chunk * Float.BYTES / 1e6;
        return String.format(Locale.ROOT, "distributed: %d ranks (%s), global batch %d = %d x %d; gradients of %,d floats "
                        + "all-reduced in rank order, %.2f MB sent (and as many received) per rank per step", size(),
                mpi.libraryVersion(), (long) size() * trainer.batchSize(), size(), trainer.batchSize(), p, mb);
    }

    /** The line the job prints at its end: the measured cost of the exchange per step. */
    String exchangeSummary(double secondsPerStep) {
        double ex = exchange.meanExchangeSeconds(), wait = exchange.meanWaitSeconds();
        return String.format(Locale.ROOT, "all-reduce (rank 0): %.2f MB sent and %.2f MB received per step, %.2f ms per "
                        + "step after the first (%.1f%% of a %.1f ms step), plus %.2f ms waiting at the check-in for the slowest rank",
                exchange.bytesPerExchange() / 1e6, exchange.bytesPerExchange() / 1e6, ex * 1e3,
                100 * ex / secondsPerStep, secondsPerStep * 1e3, wait * 1e3);
    }
}
