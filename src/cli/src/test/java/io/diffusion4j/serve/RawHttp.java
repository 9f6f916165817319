package io.diffusion4j.serve;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * HTTP/1.1 over a plain socket, for the tests of clients that break the protocol: what is written is exactly what
 * the test says (no client library fixes the framing), and a response is read as far as it goes.
 */
final class RawHttp {
    private RawHttp() {}

    /** A connected socket whose reads give up after {@code readTimeoutMillis}. */
    static Socket open(int port, int readTimeoutMillis) throws IOException {
        Socket s = new Socket();
        s.connect(new InetSocketAddress("127.0.0.1", port), 10_000);
        s.setSoTimeout(readTimeoutMillis);
        return s;
    }

    static void write(Socket s, String text) throws IOException {
        s.getOutputStream().write(text.getBytes(StandardCharsets.ISO_8859_1));
        s.getOutputStream().flush();
    }

    /** The start of a POST to /v1/samples with the given framing header, up to the end of the headers. */
    static String postHead(String framing) {
        return "POST /v1/samples HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n" + framing + "\r\n\r\n";
    }

    /** A response: status, headers (lower-case names) and body. */
    record Response(int status, String head, String body) {
        String header(String name) {
            for (String line : head.split("\r\n")) {
                int colon = line.indexOf(':');
                if (colon > 0 && line.substring(0, colon).trim().equalsIgnoreCase(name)) return line.substring(colon + 1).trim();
            }
            return null;
        }
    }

    /** Reads one response (its body by Content-Length); fails with SocketTimeoutException when none comes. */
    static Response read(Socket s) throws IOException {
        InputStream in = s.getInputStream();
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        int matched = 0;
        while (matched < 4) {
            int c = in.read();
            if (c < 0) throw new IOException("the connection ended after " + head.size() + " bytes of a response: " + head);
            head.write(c);
            matched = (c == (matched % 2 == 0 ? '\r' : '\n')) ? matched + 1 : (c == '\r' ? 1 : 0);
        }
        String h = head.toString(StandardCharsets.ISO_8859_1);
        String[] status = h.split("\r\n", 2)[0].split(" ");
        Response partial = new Response(Integer.parseInt(status[1]), h, "");
        String len = partial.header("Content-Length");
        byte[] body = len == null ? new byte[0] : in.readNBytes(Integer.parseInt(len));
        return new Response(partial.status(), h, new String(body, StandardCharsets.UTF_8));
    }

    /**
     * Waits until the server ends the connection (end of stream or reset), reading and dropping whatever comes
     * first; returns the milliseconds waited, or -1 when it was still open after {@code maxMillis}.
     */
    static long awaitClosed(Socket s, long maxMillis) throws IOException {
        long t0 = System.nanoTime();
        long until = t0 + maxMillis * 1_000_000L;
        byte[] buf = new byte[4096];
        while (true) {
            long left = (until - System.nanoTime()) / 1_000_000L;
            if (left <= 0) return -1;
            s.setSoTimeout((int) Math.max(1, left));
            try {
                if (s.getInputStream().read(buf) < 0) break;
            } catch (SocketTimeoutException e) {
                return -1;
            } catch (IOException reset) {
                break;
            }
        }
        return (System.nanoTime() - t0) / 1_000_000L;
    }

    static String describe(Response r) {
        return String.format(Locale.ROOT, "%d %s", r.status(), r.body());
    }
}
