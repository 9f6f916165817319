package io.diffusion4j.serve;

import com.sun.net.httpserver.HttpExchange;
import java.io.IOException;
import java.io.InputStream;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Reads a request body within the server's limits, on a virtual thread of its own so that the handler can stop
 * waiting for a client that stalls: the JDK's body streams block without a timeout. Every refusal names the field
 * "body" and is the client's fault: 400 when the framing is broken (a body shorter than its Content-Length, a bad
 * chunk), 413 past the size limit, 408 when the body is not complete by the deadline. After a refusal the handler
 * answers and drops the connection ({@link SampleServer}), which also ends a read still blocked here.
 */
final class RequestBody {
    private RequestBody() {}

    /** How much of a body past the limit is read and dropped, so that the 413 is not lost to a reset. */
    static final int DISCARD_BYTES = 64 << 10;

    /** How long past the deadline a body reader that has not run yet gets to read what the client sent. */
    static final long GRACE_MS = 100;

    /** The body, at most {@code limit} bytes, complete by {@code deadlineNanos} ({@link System#nanoTime()} scale). */
    static byte[] read(HttpExchange ex, int limit, long deadlineNanos) throws RequestException, InterruptedException {
        long declared = declaredLength(ex);
        AtomicBoolean tooLarge = new AtomicBoolean(declared > limit);
        CompletableFuture<byte[]> body = new CompletableFuture<>();
        java.util.concurrent.CountDownLatch reading = new java.util.concurrent.CountDownLatch(1);
        Thread.ofVirtual().name("d4j-serve-body").start(() -> {
            reading.countDown();
            try {
                InputStream in = ex.getRequestBody();
                if (!tooLarge.get()) {
                    byte[] b = in.readNBytes(limit + 1);
                    if (b.length <= limit) {
                        body.complete(b);
                        return;
                    }
                    tooLarge.set(true);
                }
                in.skipNBytes(Math.min(DISCARD_BYTES, declared >= 0 ? declared : DISCARD_BYTES));
                body.completeExceptionally(tooLarge(limit, declared));
            } catch (IOException | RuntimeException e) {
                // a stream that ends early, a malformed chunk (some surface as index errors), a reset
                body.completeExceptionally(tooLarge.get() ? tooLarge(limit, declared) : new RequestException(400, "body",
                        "body: malformed or incomplete (" + e.getMessage() + ")"));
            }
        });
        try {
            return body.get(Math.max(0, deadlineNanos - System.nanoTime()), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            throw (RequestException) e.getCause();
        } catch (TimeoutException e) {
            // On a loaded machine the reader may not have run yet: bytes the client did send would then be unread
            // when the connection is dropped, and the kernel would answer them with a reset that destroys the 408 on
            // its way. Give it the chance to read what arrived (it runs within the grace once started).
            if (reading.await(GRACE_MS, TimeUnit.MILLISECONDS)) {
                try {
                    return body.get(GRACE_MS, TimeUnit.MILLISECONDS);
                } catch (ExecutionException | TimeoutException late) {
                    // still incomplete (or refused): decided below
                }
            }
            if (body.isDone()) return read(body);
            if (tooLarge.get()) throw tooLarge(limit, declared);
            throw new RequestException(408, "body", "body: not complete within the read timeout");
        }
    }

    private static byte[] read(CompletableFuture<byte[]> done) throws RequestException, InterruptedException {
        try {
            return done.get();
        } catch (ExecutionException e) {
            throw (RequestException) e.getCause();
        }
    }

    /** Content-Length, or -1 (none, or chunked); the JDK has refused malformed and conflicting ones already. */
    private static long declaredLength(HttpExchange ex) {
        String len = ex.getRequestHeaders().getFirst("Content-Length");
        if (len == null || ex.getRequestHeaders().containsKey("Transfer-Encoding")) return -1;
        try {
            return Long.parseLong(len.trim());
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static RequestException tooLarge(int limit, long declared) {
        return new RequestException(413, "body", "body: larger than the limit of " + limit + " bytes"
                + (declared >= 0 ? " (" + declared + ")" : ""));
    }
}
