package io.diffusion4j.train;

import static io.diffusion4j.train.TrainCommandTest.run;
import static io.diffusion4j.train.TrainResumeCommandTest.assertSameTensors;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.cli.CliRun;
import io.diffusion4j.cli.ChildJava;
import io.diffusion4j.cli.Main;
import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.testutil.TestRandom;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Crash consistency of checkpoints, as a test: a child JVM runs {@code train --save-every 1} (a checkpoint after
 * every step) and is killed with SIGKILL at a random moment, {@value #KILLS} times. After every kill the folder
 * must either hold no checkpoint yet or load as one checkpoint whose files all belong to one step, and
 * {@code train --resume} from it must end bit for bit where an uninterrupted run ends (weights, EMA, AdamW moments,
 * history, loss.csv). Leftover temporary files of the killed save are gone after the resumed run's first save.
 *
 * <p>The kill moment: after a random step's "saved" line (or, for a tenth of the kills, before the first one), a
 * random delay of up to about one step's duration, so kills land inside saves, inside steps and between them.
 */
class CheckpointKillTest {
    static final int KILLS = 50;
    static final int STEPS = 8;

    @Test
    void sigkillDuringCheckpointingNeverLosesOrMixesAStep(@TempDir Path dir) throws Exception {
        TestRandom rnd = TestRandom.fresh();
        String seed = Long.toString(rnd.nextLong());
        Path config = TrainResumeCommandTest.tinyConfig(dir);
        List<String> common = List.of("train", "--config", config.toString(), "--batch-size", "2", "--seed", seed,
                "--backend", "cpu", "--lr", "2e-3", "--warmup", "2", "--log-every", "1", "--threads", "1");
        Path straight = dir.resolve("straight");
        CliRun ref = run(concat(common, "--steps", Integer.toString(STEPS), "--out", straight.toString()));
        assertEquals(0, ref.exit(), ref.toString());

        int kills = 0, attempts = 0, beforeFirstSave = 0, tmpSeen = 0;
        long stepNanos = TimeUnit.MILLISECONDS.toNanos(20); // refined from the children's own pace
        StringBuilder log = new StringBuilder();
        while (kills < KILLS) {
            assertTrue(++attempts <= 3 * KILLS, "too many children finished before their kill: " + log);
            Path out = dir.resolve("k" + attempts);
            int killAfter = rnd.nextInt(10) == 0 ? 0 : 1 + rnd.nextInt(STEPS - 1); // a "saved: step N" line, 0: none
            long delay = (long) (rnd.nextDouble() * stepNanos);
            List<String> cmd = ChildJava.command(List.of("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
                    Main.class.getName(), concatList(common, "--steps", Integer.toString(STEPS), "--save-every", "1",
                            "--out", out.toString()));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            boolean killed = false;
            long lastSave = 0;
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                if (killAfter == 0) {
                    // before the first save: while the model is being built or the first step runs
                    Thread.sleep(TimeUnit.NANOSECONDS.toMillis(delay) * 20);
                    killed = kill(p);
                }
                while (!killed && (line = r.readLine()) != null) {
                    if (!line.startsWith("saved: step ")) continue;
                    long now = System.nanoTime();
                    if (lastSave != 0) stepNanos = (stepNanos * 7 + (now - lastSave)) / 8;
                    lastSave = now;
                    int step = Integer.parseInt(line.substring("saved: step ".length()).split(" ")[0]);
                    if (step == killAfter) {
                        TimeUnit.NANOSECONDS.sleep(delay);
                        killed = kill(p);
                    }
                }
            } finally {
                if (p.isAlive()) p.destroyForcibly();
                p.waitFor(30, TimeUnit.SECONDS);
            }
            if (!killed) continue; // finished first: not a kill
            kills++;
            boolean journal = Files.exists(out.resolve(AtomicFiles.JOURNAL));
            if (!Files.exists(out.resolve(Checkpoint.TRAINING_STATE)) && !journal) {
                beforeFirstSave++;
                continue; // no checkpoint committed yet: nothing to resume (a new run starts over)
            }
            try (Stream<Path> s = Files.walk(out)) {
                if (s.anyMatch(f -> f.getFileName().toString().startsWith("."))) tmpSeen++; // staged, temporary, journal
            }
            // the step on disk before the resumed run recovers the folder (a committed save may still be staged)
            String step = Files.exists(out.resolve(Checkpoint.TRAINING_STATE))
                    ? Checkpoint.readStateMetadata(out).get("step") + (journal ? ", a later save committed" : "")
                    : "none, the first save committed";
            String ctx = "kill " + kills + " (after saved step " + killAfter + " + " + delay / 1000 + " us, checkpoint at step "
                    + step + "), seed " + seed + " " + rnd.describe();
            log.append(ctx).append('\n');
            CliRun resume = run("train", "--resume", out.toString(), "--steps", Integer.toString(STEPS), "--backend", "cpu",
                    "--log-every", "1", "--threads", "1");
            assertEquals(0, resume.exit(), ctx + ": " + resume);
            for (String f : List.of(Checkpoint.WEIGHTS, "ema/" + Checkpoint.WEIGHTS, Checkpoint.TRAINING_STATE)) {
                assertSameTensors(straight.resolve(f), out.resolve(f), f + " " + ctx);
            }
            assertEquals(Checkpoint.readStateMetadata(straight), Checkpoint.readStateMetadata(out), "metadata " + ctx);
            assertEquals(Files.readString(straight.resolve(TrainingDefaults.LOSS_CSV)),
                    Files.readString(out.resolve(TrainingDefaults.LOSS_CSV)), "loss.csv " + ctx);
            try (Stream<Path> s = Files.walk(out)) {
                List<Path> left = s.filter(f -> f.getFileName().toString().startsWith(".")).toList();
                assertTrue(left.isEmpty(), "temporary files left after the resumed run's saves: " + left + " " + ctx);
            }
        }
        // kills land inside saves about a third of the time: none at all would mean the test no longer reaches them
        assertTrue(tmpSeen > 0, "no kill landed inside a save (no staged, temporary or journal file seen): " + log);
        System.out.printf("checkpoint kill test: %d SIGKILLs in %d children (%d before the first save, %d left staged, "
                + "temporary or journal files, all resolved by the resumed run), every checkpoint resumed bit for bit%n", kills, attempts,
                beforeFirstSave, tmpSeen);
    }

    static boolean kill(Process p) {
        if (!p.isAlive()) return false;
        // Process.destroyForcibly is SIGKILL on Linux: no shutdown hook, no finally block runs in the child
        p.destroyForcibly();
        return true;
    }

    static String[] concat(List<String> a, String... b) {
        return concatList(a, b).toArray(String[]::new);
    }

    static List<String> concatList(List<String> a, String... b) {
        List<String> l = new ArrayList<>(a);
        l.addAll(List.of(b));
        return l;
    }
}
