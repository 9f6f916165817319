package io.diffusion4j.serve;

/**
 * How long the server waits for a client and how many connections it keeps open.
 *
 * <p>{@code readTimeoutMillis}: a request's body must arrive within it of the request's headers, else 408 and the
 * connection closes ({@link SampleServer}'s handlers enforce it to the millisecond). A connection that sends
 * nothing at all, or stalls before the end of its headers, is closed by the JDK's HttpServer after the same time
 * rounded up to whole seconds, plus one second (the JDK counts from the request's first byte; the extra second
 * lets a stalled body get its 408 before the JDK closes the connection under it).
 *
 * <p>{@code idleTimeoutMillis}: a keep-alive connection idle between requests is closed after it (JDK, whole
 * seconds, rounded up). A connection that never sent a byte is closed after the smaller of the two timeouts.
 *
 * <p>{@code maxConnections}: connections accepted past it are closed at once (JDK).
 *
 * <p>The JDK's HttpServer reads these settings from system properties once per process, when its first server is
 * made: {@link #applyToJdkHttpServer} must run before that (the {@code serve} command calls it at start-up). Every
 * server of the process then shares them, except the body deadline, which is each {@link SampleServer}'s own. A
 * response not taken by the client within the longest deadline a request may ask for plus the read timeout is
 * abandoned as well (the JDK's response timer), so a client that never reads cannot hold a connection forever.
 */
public record ConnectionLimits(long readTimeoutMillis, long idleTimeoutMillis, int maxConnections) {
    /** Defaults of the {@code serve} command. */
    public static final ConnectionLimits DEFAULTS = new ConnectionLimits(10_000, 30_000, 512);

    public ConnectionLimits {
        if (readTimeoutMillis < 1) throw new IllegalArgumentException("read timeout must be >= 1 ms, got " + readTimeoutMillis);
        if (idleTimeoutMillis < 1) throw new IllegalArgumentException("idle timeout must be >= 1 ms, got " + idleTimeoutMillis);
        if (maxConnections < 1) throw new IllegalArgumentException("max connections must be >= 1, got " + maxConnections);
    }

    /** The JDK's request timer: the read timeout in whole seconds, rounded up, plus one. */
    long jdkRequestSeconds() {
        return ceilSeconds(readTimeoutMillis) + 1;
    }

    /**
     * Sets the JDK HttpServer's system properties from these limits and {@code maxDeadlineMillis} (the longest
     * deadline a request may ask for). Effective only when called before the process makes its first
     * {@code HttpServer} (they are read once, then kept); later calls change nothing.
     */
    public void applyToJdkHttpServer(long maxDeadlineMillis) {
        // how often the JDK's timers look for connections past their time: a quarter of the read timeout, 50 ms to 1 s
        long tick = Math.clamp(readTimeoutMillis / 4, 50, 1000);
        System.setProperty("sun.net.httpserver.maxReqTime", Long.toString(jdkRequestSeconds()));
        System.setProperty("sun.net.httpserver.maxRspTime", Long.toString(ceilSeconds(maxDeadlineMillis) + jdkRequestSeconds()));
        System.setProperty("sun.net.httpserver.idleInterval", Long.toString(ceilSeconds(idleTimeoutMillis)));
        System.setProperty("sun.net.httpserver.clockTick", Long.toString(tick));
        System.setProperty("sun.net.httpserver.timerMillis", Long.toString(tick));
        System.setProperty("jdk.httpserver.maxConnections", Integer.toString(maxConnections));
    }

    private static long ceilSeconds(long millis) {
        return Math.max(1, (millis + 999) / 1000);
    }
}
