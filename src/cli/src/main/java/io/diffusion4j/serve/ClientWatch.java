package io.diffusion4j.serve;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Notices clients that close their connection while their request waits for its images, so that the request
 * stops occupying the batch. The JDK's HttpServer reads nothing from a connection while its handler works and
 * gives the handler no socket, so the connection's state is looked up where the kernel publishes it: Linux's
 * {@code /proc/net/tcp} and {@code /proc/net/tcp6}, scanned every {@link #INTERVAL_MILLIS} by one thread while
 * any request waits. A connection counts as closed by its client once it is in a state past the client's FIN
 * (CLOSE_WAIT, LAST_ACK, CLOSING, CLOSE), or, having been seen established, is missing from two scans in a row
 * (a reset; one scan can miss a socket while the table changes under it). A client that half-closes its side
 * after sending its request is taken as gone too, as most servers do. Elsewhere (no such files) nothing is
 * noticed here and a request whose client left runs to its end or its deadline.
 */
final class ClientWatch implements AutoCloseable {
    static final long INTERVAL_MILLIS = 200;
    private static final List<Path> TABLES = List.of(Path.of("/proc/net/tcp"), Path.of("/proc/net/tcp6"));
    /** TCP states in which the peer has closed its side: CLOSE_WAIT, LAST_ACK, CLOSE, CLOSING. */
    private static final Set<String> PEER_CLOSED = Set.of("08", "09", "07", "0B");
    private static final String ESTABLISHED = "01";

    private final boolean available;
    private final Set<Watch> watches = ConcurrentHashMap.newKeySet();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition added = lock.newCondition();
    private volatile boolean closed;
    private final Thread scanner;

    ClientWatch() {
        this.available = TABLES.stream().anyMatch(Files::isReadable);
        this.scanner = available ? Thread.ofPlatform().name("d4j-serve-client-watch").daemon(true).start(this::scan) : null;
    }

    /** Whether closed connections can be noticed on this system. */
    boolean available() {
        return available;
    }

    /**
     * Watches the connection from {@code remote} to {@code local} (the server's side) until the returned watch
     * is closed; {@code onGone} runs once, on the scanning thread, if the client closes it meanwhile.
     */
    Watch watch(InetSocketAddress local, InetSocketAddress remote, Runnable onGone) {
        Watch w = new Watch(key(remote.getAddress(), remote.getPort(), local.getPort()), onGone);
        if (!available || closed) return w;
        watches.add(w);
        lock.lock();
        try {
            added.signalAll();
        } finally {
            lock.unlock();
        }
        return w;
    }

    @Override
    public void close() {
        closed = true;
        if (scanner == null) return;
        lock.lock();
        try {
            added.signalAll();
        } finally {
            lock.unlock();
        }
        scanner.interrupt();
    }

    /** One watched connection. */
    final class Watch implements AutoCloseable {
        final String key;
        private final Runnable onGone;
        private boolean seen;
        private int missing;
        private volatile boolean gone;

        private Watch(String key, Runnable onGone) {
            this.key = key;
            this.onGone = onGone;
        }

        /** Whether the client closed the connection while watched. */
        boolean gone() {
            return gone;
        }

        /** Stops watching. */
        @Override
        public void close() {
            watches.remove(this);
        }

        /** Scanner thread: the connection's state in this scan (null: not listed). */
        void observe(String state) {
            if (ESTABLISHED.equals(state)) {
                seen = true;
                missing = 0;
                return;
            }
            boolean closedByClient = state != null ? PEER_CLOSED.contains(state) : seen && ++missing >= 2;
            if (closedByClient && !gone) {
                gone = true;
                watches.remove(this);
                onGone.run();
            }
        }
    }

    private void scan() {
        while (!closed) {
            try {
                lock.lock();
                try {
                    while (watches.isEmpty() && !closed) added.await();
                } finally {
                    lock.unlock();
                }
                if (closed) break;
                Map<String, String> states = states();
                for (Watch w : watches) w.observe(states.get(w.key));
                Thread.sleep(INTERVAL_MILLIS);
            } catch (InterruptedException e) {
                if (closed) break;
            } catch (RuntimeException e) {
                // a table that did not parse: nothing is concluded from this scan
            }
        }
    }

    /** Connection key to TCP state (two hex digits) of every listed socket whose local port is watched. */
    private Map<String, String> states() {
        Set<String> ports = new HashSet<>();
        for (Watch w : watches) ports.add(w.key.substring(w.key.lastIndexOf(':') + 1));
        Map<String, String> states = new HashMap<>();
        for (Path table : TABLES) {
            String text;
            try {
                text = new String(Files.readAllBytes(table), StandardCharsets.US_ASCII);
            } catch (IOException e) {
                continue;
            }
            for (String line : text.split("\n")) {
                String[] f = line.trim().split("\\s+");
                if (f.length < 4 || !f[0].endsWith(":")) continue; // the header line
                int lc = f[1].indexOf(':'), rc = f[2].indexOf(':');
                if (lc < 0 || rc < 0) continue;
                int localPort = Integer.parseInt(f[1].substring(lc + 1), 16);
                if (!ports.contains(Integer.toString(localPort))) continue;
                byte[] remote = address(f[2].substring(0, rc));
                int remotePort = Integer.parseInt(f[2].substring(rc + 1), 16);
                states.put(key(remote, remotePort, localPort), f[3]);
            }
        }
        return states;
    }

    /** An address as the kernel prints it: 4-byte words in host order, each as 8 hex digits. */
    static byte[] address(String hex) {
        byte[] b = HexFormat.of().parseHex(hex);
        if (ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN) {
            for (int i = 0; i + 3 < b.length; i += 4) {
                byte t0 = b[i], t1 = b[i + 1];
                b[i] = b[i + 3];
                b[i + 1] = b[i + 2];
                b[i + 2] = t1;
                b[i + 3] = t0;
            }
        }
        return b;
    }

    static String key(InetAddress remote, int remotePort, int localPort) {
        return key(remote.getAddress(), remotePort, localPort);
    }

    /** remote address (IPv4-mapped IPv6 as IPv4), remote port, local port. */
    static String key(byte[] remote, int remotePort, int localPort) {
        byte[] a = remote;
        if (a.length == 16) {
            boolean mapped = a[10] == (byte) 0xff && a[11] == (byte) 0xff;
            for (int i = 0; i < 10 && mapped; i++) mapped = a[i] == 0;
            if (mapped) a = Arrays.copyOfRange(a, 12, 16);
        }
        return String.format(Locale.ROOT, "%s:%d:%d", HexFormat.of().formatHex(a), remotePort, localPort);
    }
}
