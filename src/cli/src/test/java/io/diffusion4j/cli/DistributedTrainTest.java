package io.diffusion4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.io.SafeTensors;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code train --distributed} as a real 2-rank MPI job ({@code mpirun --oversubscribe}, Open MPI from Debian's
 * openmpi-bin): the ranks against one process at the global batch, bit-identical replicas, resume, refusals, and a
 * rank that dies or hangs. Fails (does not skip) when mpirun is missing: .ci/run installs it.
 */
class DistributedTrainTest {
    /**
     * 2 ranks x 3 images against 1 process x 6 (the same samples, noise and timesteps; the gradients summed in another
     * order): ||two - one|| / ||one - start||, the difference relative to how far training moved the weights. Not
     * elementwise: where a gradient is near zero AdamW turns a rounding difference into an update of up to lr.
     */
    private static final double REL_L2 = 1e-3;
    private static final List<String> SMALL = List.of("--batch-size", "3", "--lr", "2e-3", "--warmup", "2", "--seed", "7");

    private static String mpirun;

    @BeforeAll
    static void findMpirun() {
        // Open MPI's own name first: with MPICH installed too, plain mpirun is whichever the alternatives chose
        mpirun = find("mpirun.openmpi", "mpirun");
        if (mpirun == null) fail("mpirun not found: install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)");
    }

    private static String find(String... names) {
        for (String name : names) {
            for (String dir : (System.getenv().getOrDefault("PATH", "") + ":/usr/bin:/usr/local/bin").split(":")) {
                if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, name))) return Path.of(dir, name).toString();
            }
        }
        return null;
    }

    @Test
    void twoRanksHoldIdenticalWeightsAndFollowOneProcessAtTheGlobalBatch(@TempDir Path tmp) throws Exception {
        Path two = tmp.resolve("two"), one = tmp.resolve("one");
        Job job = Job.start(2, tmp, concat(SMALL, List.of("--steps", "5", "--log-every", "1", "--check-replicas-every",
                "1", "--out", two.toString())));
        job.awaitExit(120);
        assertEquals(0, job.exit(), job.output());
        for (int s = 1; s <= 5; s++) {
            assertTrue(job.output().contains("replicas: weights identical on 2 ranks after step " + s + " "), job.output());
        }
        assertTrue(job.output().contains("global batch 6 = 2 x 3"), job.output());
        assertTrue(job.output().matches("(?s).*all-reduce \\(rank 0\\): [0-9.]+ MB sent.*"), job.output());
        assertEquals(1, count(job.output(), "done: 5 steps"), "only rank 0 reports: " + job.output());

        CliRun single = CliRun.of(concat(List.of("train", "--threads", "1", "--batch-size", "6", "--lr", "2e-3", "--warmup",
                "2", "--seed", "7", "--steps", "5", "--out", one.toString())).toArray(String[]::new));
        assertEquals(0, single.exit(), single.err());
        assertCloseNotEqual(one, two, List.of("--seed", "7"));
        // the losses of every step (the mean over the global batch, in float64) agree closely
        List<Double> l1 = lossColumn(one), l2 = lossColumn(two);
        assertEquals(l1.size(), l2.size());
        for (int i = 0; i < l1.size(); i++) assertEquals(l1.get(i), l2.get(i), 1e-4 * l1.get(i), "loss of step " + (i + 1));
        try (SafeTensors.Reader r = SafeTensors.open(two.resolve("training_state.safetensors"))) {
            assertEquals("2", r.metadata().get("world_size"));
        }
    }

    /**
     * The same through the CUDA backend (on the simulator here): the gradients are staged through host memory, so the
     * exchange is the CPU run's. One step of batch 1 per rank (the simulator runs a step in seconds).
     */
    @Test
    void twoRanksOnTheCudaBackendStageThroughTheHost(@TempDir Path tmp) throws Exception {
        Path two = tmp.resolve("two"), one = tmp.resolve("one");
        List<String> args = List.of("--backend", "cuda-sim", "--lr", "2e-3", "--warmup", "2", "--seed", "7", "--steps", "1");
        Job job = Job.start(2, tmp, concat(args, List.of("--batch-size", "1", "--check-replicas-every", "1", "--out",
                two.toString())));
        job.awaitExit(300);
        assertEquals(0, job.exit(), job.output());
        assertTrue(job.output().contains("on cuda-sim") && job.output().contains("replicas: weights identical on 2 ranks "
                + "after step 1 "), job.output());
        CliRun single = CliRun.of(concat(List.of("train", "--threads", "1", "--batch-size", "2", "--out", one.toString()),
                args).toArray(String[]::new));
        assertEquals(0, single.exit(), single.err());
        assertCloseNotEqual(one, two, List.of("--seed", "7"));
    }

    /** The checkpoints in {@code one} and {@code two} within REL_L2 of each other (see there), and not equal. */
    private static void assertCloseNotEqual(Path one, Path two, List<String> seedArgs) throws IOException {
        Path start = one.resolveSibling("start");
        // lr 0: AdamW leaves the weights as initialised (the decay is scaled by lr too)
        CliRun init = CliRun.of(concat(List.of("train", "--threads", "1", "--steps", "1", "--lr", "0", "--out",
                start.toString()), seedArgs).toArray(String[]::new));
        assertEquals(0, init.exit(), init.err());
        Map<String, float[]> s0 = weights(start), a = weights(one), b = weights(two);
        assertEquals(a.keySet(), b.keySet());
        double d = 0, moved = 0;
        for (String k : a.keySet()) {
            float[] x0 = s0.get(k), x = a.get(k), y = b.get(k);
            for (int i = 0; i < x.length; i++) {
                d += ((double) y[i] - x[i]) * ((double) y[i] - x[i]);
                moved += ((double) x[i] - x0[i]) * ((double) x[i] - x0[i]);
            }
        }
        double rel = Math.sqrt(d / moved);
        assertTrue(rel <= REL_L2, "||two ranks - one process|| / ||one process - start|| = " + rel);
        // not bit for bit: each rank sums its own rows' weight gradients, then the partial sums are added
        assertTrue(rel > 0, "2 ranks gave exactly the one-process weights: is the job really running 2 ranks?");
    }

    /**
     * The same job under MPICH's launcher (Hydra) and library, through MPICH's own bindings: the fixed-order exchange
     * makes the result independent of the MPI implementation, bit for bit.
     */
    @Test
    void anMpichJobGivesTheOpenMpiJobsBits(@TempDir Path tmp) throws Exception {
        String hydra = find("mpirun.mpich", "mpiexec.hydra");
        if (hydra == null) fail("MPICH's mpirun not found: install MPICH (Debian: apt-get install mpich libmpich-dev)");
        Path open = tmp.resolve("openmpi"), mpich = tmp.resolve("mpich");
        Job a = Job.start(2, tmp, concat(SMALL, List.of("--steps", "3", "--out", open.toString())));
        a.awaitExit(120);
        assertEquals(0, a.exit(), a.output());
        List<String> cmd = new ArrayList<>(List.of(hydra, "-np", "2"));
        cmd.addAll(Job.java(concat(SMALL, List.of("--steps", "3", "--out", mpich.toString()))));
        Job b = Job.start(cmd, tmp);
        b.awaitExit(120);
        assertEquals(0, b.exit(), b.output());
        assertTrue(b.output().contains("distributed: 2 ranks (MPICH"), b.output());
        Map<String, float[]> x = weights(open), y = weights(mpich);
        assertEquals(x.keySet(), y.keySet());
        for (String k : x.keySet()) assertArrayEquals(x.get(k), y.get(k), k + ": MPICH against Open MPI");
    }

    @Test
    void resumeContinuesBitForBitWithTheSameRanksAndRefusesAnotherCount(@TempDir Path tmp) throws Exception {
        Path straight = tmp.resolve("straight"), split = tmp.resolve("split");
        Job a = Job.start(2, tmp, concat(SMALL, List.of("--steps", "4", "--out", straight.toString())));
        Job b = null;
        a.awaitExit(120);
        assertEquals(0, a.exit(), a.output());
        b = Job.start(2, tmp, concat(SMALL, List.of("--steps", "2", "--out", split.toString())));
        b.awaitExit(120);
        assertEquals(0, b.exit(), b.output());
        Job c = Job.start(2, tmp, List.of("--resume", split.toString(), "--steps", "4"));
        c.awaitExit(120);
        assertEquals(0, c.exit(), c.output());
        assertTrue(c.output().contains("at step 2 of 4"), c.output());
        Map<String, float[]> x = weights(straight), y = weights(split);
        for (String k : x.keySet()) assertArrayEquals(x.get(k), y.get(k), k + " after resume");

        CliRun oneProcess = CliRun.of("train", "--resume", split.toString(), "--steps", "6");
        assertEquals(2, oneProcess.exit(), oneProcess.out() + oneProcess.err());
        assertTrue(oneProcess.err().contains("was trained on 2 ranks (global batch 6 = 2 x 3), this run has 1")
                && oneProcess.err().contains("mpirun -np 2"), oneProcess.err());
    }

    @Test
    void ranksGivenDifferentSettingsRefuseToStart(@TempDir Path tmp) throws Exception {
        // MPMD launch: rank 1 gets another seed; the settings check stops the job before any step
        List<String> cmd = new ArrayList<>(Job.launcher());
        cmd.addAll(List.of("-np", "1"));
        cmd.addAll(Job.java(concat(SMALL, List.of("--steps", "2", "--out", tmp.resolve("x").toString()))));
        cmd.addAll(List.of(":", "-np", "1"));
        cmd.addAll(Job.java(concat(List.of("--batch-size", "3", "--lr", "2e-3", "--warmup", "2", "--seed", "8"),
                List.of("--steps", "2", "--out", tmp.resolve("x").toString()))));
        Job j = Job.start(cmd, tmp);
        j.awaitExit(120);
        assertNotEquals(0, j.exit(), j.output());
        assertTrue(j.output().contains("the run's settings (command line, data, checkpoint state) differs between the ranks"),
                j.output());
        assertTrue(!Files.exists(tmp.resolve("x")), "nothing written");
    }

    @Test
    void aKilledRankEndsTheJobNamingIt(@TempDir Path tmp) throws Exception {
        Job j = Job.start(2, tmp, concat(SMALL, List.of("--steps", "100000", "--log-every", "1", "--out",
                tmp.resolve("k").toString())));
        j.awaitOutput("step      2/", 120);
        ProcessHandle victim = j.rankProcess(1);
        victim.destroyForcibly();
        long t0 = System.nanoTime();
        j.awaitExit(60);
        assertNotEquals(0, j.exit(), j.output());
        assertTrue(j.output().contains("rank 1"), "the launcher names the dead rank: " + j.output());
        double secs = (System.nanoTime() - t0) * 1e-9;
        assertTrue(secs < 30, "the job ended " + secs + " s after the kill");
    }

    @Test
    void aHungRankIsNamedByRankZeroWithinTheTimeout(@TempDir Path tmp) throws Exception {
        Job j = Job.start(2, tmp, concat(SMALL, List.of("--steps", "100000", "--log-every", "1", "--rank-timeout", "3",
                "--out", tmp.resolve("h").toString())));
        j.awaitOutput("step      2/", 120);
        ProcessHandle victim = j.rankProcess(1);
        long pid = victim.pid();
        try {
            signal("STOP", pid);
            long t0 = System.nanoTime();
            j.awaitExit(60);
            double secs = (System.nanoTime() - t0) * 1e-9;
            assertNotEquals(0, j.exit(), j.output());
            // stopped between exchanges (most of a step) it is named; stopped inside one, the exchange times out
            assertTrue(j.output().contains("rank 1 did not reach the gradient exchange of step")
                    || j.output().matches("(?s).*rank 0: the (all-to-all|all-gather) of step \\d+ did not complete within.*"),
                    j.output());
            assertTrue(secs < 40, "ended " + secs + " s after the hang");
        } finally {
            if (victim.isAlive()) {
                signal("CONT", pid);
                victim.destroyForcibly();
            }
        }
    }

    @Test
    void withoutALauncherTheCommandSaysHowToStartIt(@TempDir Path tmp) {
        CliRun r = CliRun.of("train", "--distributed", "--steps", "1", "--out", tmp.resolve("n").toString());
        assertEquals(1, r.exit(), r.out() + r.err());
        assertTrue(r.err().contains("not started by an MPI launcher") && r.err().contains("mpirun -np N"), r.err());
        CliRun flags = CliRun.of("train", "--rank-timeout", "5", "--steps", "1");
        assertEquals(2, flags.exit());
        assertTrue(flags.err().contains("apply to --distributed runs"), flags.err());
    }

    @Test
    void eachRankOfANodeGetsItsOwnGpuUnlessAssignedAlready() {
        assertEquals("1", DistributedJob.visibleDevice(Map.of("OMPI_COMM_WORLD_LOCAL_RANK", "1",
                "OMPI_COMM_WORLD_LOCAL_SIZE", "4")));
        assertEquals("0", DistributedJob.visibleDevice(Map.of("MPI_LOCALRANKID", "0", "MPI_LOCALNRANKS", "2")));
        assertEquals(null, DistributedJob.visibleDevice(Map.of("OMPI_COMM_WORLD_LOCAL_RANK", "0",
                "OMPI_COMM_WORLD_LOCAL_SIZE", "1")), "one rank per node: the default device");
        assertEquals(null, DistributedJob.visibleDevice(Map.of("OMPI_COMM_WORLD_LOCAL_RANK", "1",
                "OMPI_COMM_WORLD_LOCAL_SIZE", "2", "CUDA_VISIBLE_DEVICES", "3")), "the user's assignment stands");
        assertEquals(null, DistributedJob.visibleDevice(Map.of("SLURM_LOCALID", "1", "SLURM_NTASKS_PER_NODE", "2(x3)")));
    }

    private static void signal(String sig, long pid) throws Exception {
        Process p = new ProcessBuilder("kill", "-" + sig, Long.toString(pid)).inheritIO().start();
        assertEquals(0, p.waitFor(), "kill -" + sig + " " + pid);
    }

    private static Map<String, float[]> weights(Path dir) throws IOException {
        Map<String, float[]> out = new java.util.TreeMap<>();
        for (var e : SafeTensors.readAll(dir.resolve("diffusion_pytorch_model.safetensors")).entrySet()) {
            out.put(e.getKey(), e.getValue().data());
        }
        return out;
    }

    /** loss.csv's loss column (step, loss, lr, grad_norm). */
    private static List<Double> lossColumn(Path dir) throws IOException {
        List<Double> out = new ArrayList<>();
        List<String> lines = Files.readAllLines(dir.resolve("loss.csv"));
        for (String line : lines.subList(1, lines.size())) out.add(Double.parseDouble(line.split(",")[1]));
        return out;
    }

    private static int count(String s, String what) {
        int n = 0;
        for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) n++;
        return n;
    }

    @SafeVarargs
    private static List<String> concat(List<String>... parts) {
        List<String> out = new ArrayList<>();
        for (List<String> p : parts) out.addAll(p);
        return out;
    }

    /** An mpirun job of {@code train --distributed}; its output (all ranks and mpirun's) collected. */
    private static final class Job {
        final Process process;
        private final StringBuffer output = new StringBuffer();

        private Job(Process p) {
            this.process = p;
            Thread.ofPlatform().daemon(true).start(() -> {
                try {
                    byte[] buf = new byte[8192];
                    for (int n; (n = p.getInputStream().read(buf)) > 0; ) {
                        output.append(new String(buf, 0, n, StandardCharsets.UTF_8));
                    }
                } catch (IOException e) {
                    output.append("\n(reading the job's output failed: ").append(e).append(")\n");
                }
            });
        }

        static List<String> launcher() {
            List<String> cmd = new ArrayList<>(List.of(mpirun, "--oversubscribe",
                    // no cross-memory attach: containers often forbid the ptrace it needs
                    "--mca", "btl_vader_single_copy_mechanism", "none"));
            if ("root".equals(System.getProperty("user.name"))) cmd.add("--allow-run-as-root");
            return cmd;
        }

        static List<String> java(List<String> trainArgs) throws Exception {
            List<String> args = new ArrayList<>(List.of("train", "--distributed", "--threads", "1"));
            args.addAll(trainArgs);
            return ChildJava.command(List.of(), Main.class.getName(), args);
        }

        static Job start(int ranks, Path dir, List<String> trainArgs) throws Exception {
            List<String> cmd = new ArrayList<>(launcher());
            cmd.addAll(List.of("-np", Integer.toString(ranks)));
            cmd.addAll(java(trainArgs));
            return start(cmd, dir);
        }

        static Job start(List<String> cmd, Path dir) throws IOException {
            return new Job(ChildJava.builder(cmd).directory(dir.toFile()).start());
        }

        void awaitExit(int seconds) throws InterruptedException {
            if (!process.waitFor(seconds, TimeUnit.SECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
                fail("the job did not end within " + seconds + " s:\n" + output);
            }
            Thread.sleep(100); // the reader's last bytes
        }

        void awaitOutput(String text, int seconds) throws InterruptedException {
            long deadline = System.nanoTime() + seconds * 1_000_000_000L;
            while (!output.toString().contains(text)) {
                if (!process.isAlive()) fail("the job ended before printing '" + text + "':\n" + output);
                if (System.nanoTime() > deadline) {
                    process.descendants().forEach(ProcessHandle::destroyForcibly);
                    fail("no '" + text + "' within " + seconds + " s:\n" + output);
                }
                Thread.sleep(50);
            }
        }

        /** The java process of rank {@code r}: the launcher's descendant whose environment says so. */
        ProcessHandle rankProcess(int r) throws IOException {
            for (ProcessHandle h : process.descendants().toList()) {
                Path env = Path.of("/proc", Long.toString(h.pid()), "environ");
                if (!Files.isReadable(env)) continue;
                String e = new String(Files.readAllBytes(env), StandardCharsets.UTF_8);
                if (("\0" + e).contains("\0OMPI_COMM_WORLD_RANK=" + r + "\0")
                        && h.info().command().orElse("").endsWith("java")) {
                    return h;
                }
            }
            fail("no process of rank " + r + " among " + process.descendants().toList());
            return null;
        }

        int exit() {
            return process.exitValue();
        }

        String output() {
            return output.toString();
        }
    }
}
