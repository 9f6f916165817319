package io.diffusion4j.serve;

import static org.junit.jupiter.api.Assertions.fail;

import io.diffusion4j.cli.ChildJava;
import io.diffusion4j.cli.Main;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A {@code serve} process in a child JVM (the CLI's classes and picocli on its class path), its output collected
 * line by line, the port of its /healthz /readyz /metrics it printed on start-up and the sampling port it printed
 * once its models were loaded, on loopback. {@link #close} kills it if still alive.
 */
final class ChildServer implements AutoCloseable {
    final Process process;
    /** The port of /healthz, /readyz and /metrics (the management port, or the one port). */
    final int healthPort;
    /** The sampling port, once {@link #awaitListening} (which {@link #start} calls) has seen it; else -1. */
    volatile int port = -1;
    /** Everything the child printed so far (stdout and stderr). */
    final StringBuffer output = new StringBuffer();
    private final Thread reader;
    private final LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();

    /**
     * Starts {@code java ... Main serve <args>} with extra JVM options and waits (up to 60 s) for its "listening on
     * http://127.0.0.1:PORT" line; fails the test with the child's output if it exits or never prints it.
     */
    static ChildServer start(List<String> jvmOptions, List<String> serveArgs) throws Exception {
        ChildServer c = launch(Main.class.getName(), jvmOptions, serveArgs);
        c.awaitListening();
        return c;
    }

    /**
     * Starts {@code java ... <mainClass> serve <args>} and waits (up to 60 s) for the line of its health endpoints,
     * printed before the models load; fails the test with the child's output if it exits or never prints it.
     */
    static ChildServer launch(String mainClass, List<String> jvmOptions, List<String> serveArgs) throws Exception {
        List<String> args = new ArrayList<>(List.of("serve"));
        args.addAll(serveArgs);
        ProcessBuilder pb = ChildJava.builder(ChildJava.command(jvmOptions, mainClass, args));
        return new ChildServer(pb.start());
    }

    private ChildServer(Process p) throws InterruptedException {
        this.process = p;
        reader = Thread.ofPlatform().daemon(true).start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String l; (l = r.readLine()) != null; ) {
                    output.append(l).append('\n');
                    lines.add(l);
                }
            } catch (IOException ignored) {
                // the process ended
            }
        });
        healthPort = await(Pattern.compile("/healthz /readyz /metrics on http://127\\.0\\.0\\.1:(\\d+)"));
    }

    /** Waits (up to 60 s) for the "listening on" line printed once the models are loaded; returns the port. */
    int awaitListening() throws InterruptedException {
        port = await(Pattern.compile("listening on http://127\\.0\\.0\\.1:(\\d+)"));
        return port;
    }

    private int await(Pattern pattern) throws InterruptedException {
        Process p = process;
        int found = -1;
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (found < 0 && System.nanoTime() < until) {
            String l = lines.poll(1, TimeUnit.SECONDS);
            if (l == null) {
                if (!p.isAlive()) {
                    reader.join(5_000);
                    fail("the server exited " + p.exitValue() + ":\n" + output);
                }
                continue;
            }
            Matcher m = pattern.matcher(l);
            if (m.find()) found = Integer.parseInt(m.group(1));
        }
        if (found < 0) {
            p.destroyForcibly();
            fail("no line matching '" + pattern + "' within 60 s:\n" + output);
        }
        return found;
    }

    /** Waits for the output to end after the process exited (true when it did within the time). */
    boolean awaitOutputEnd(long millis) throws InterruptedException {
        reader.join(millis);
        return !reader.isAlive();
    }

    @Override
    public void close() throws InterruptedException {
        if (process.isAlive()) process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
    }
}
