package io.diffusion4j.serve;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.kernels.ConditioningKernels;
import io.diffusion4j.kernels.DiffusionKernels;
import io.diffusion4j.kernels.DiffusionKernels.SampleNoise;
import io.diffusion4j.kernels.DropoutKernels;
import io.diffusion4j.kernels.NativeSchedule;
import io.diffusion4j.model.UNet2DModel;
import io.diffusion4j.sample.ImageLayout;
import io.diffusion4j.sample.RunPlan;
import io.diffusion4j.sample.Sampler;
import io.diffusion4j.tensor.DType;
import io.diffusion4j.tensor.Tensor;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Continuous batching over denoising steps. One worker thread owns the backend, every device buffer and every
 * model workspace; {@link #submit} (called by HTTP handlers) only queues a request and returns its future.
 *
 * <p><b>Batches.</b> Each served model has one batch of up to {@code maxBatch} rows in flight: x (NHWC, one row
 * per image in flight; for a class-conditional model with a null class twice as many rows, the second half
 * holding the unconditional copies of guided rows), and when needed DPM-Solver++'s previous-x0 buffer, the
 * dynamic-thresholding scratch and the known image and mask rows of image-to-image and inpainting. A request of
 * n images occupies n consecutive rows and follows its own {@link RunPlan} (its steps; image-to-image's start;
 * inpainting's merges and jumps back), one op index per request. Every iteration of the worker:
 * <ol>
 *   <li>drops requests whose deadline passed or whose handler gave up (their rows leave now),</li>
 *   <li>admits queued requests in arrival order (per model; a request waits while its model's batch has fewer
 *       than n free rows), putting each image's start into its row: x_T, or the init image noised to the first
 *       timestep (image-to-image),</li>
 *   <li>for each model with rows in flight: the requests whose next ops are jumps back (RePaint's UNDO) renoise
 *       their rows, which needs no model call; then ONE model call over all rows in flight (each with its own
 *       timestep and class label) plus, after them, a copy of each guided request's rows labelled with the null
 *       class; then per request classifier-free guidance into its conditional rows, {@link Sampler#update} on its
 *       row range and, inpainting, the merge of the known region,</li>
 *   <li>completes the requests that did their last op (their rows leave; later rows move down so the rows in
 *       flight stay a prefix, each moved row copied on the device with an exact copy kernel).</li>
 * </ol>
 *
 * <p><b>Bits.</b> Op k of image g of a request with seed s uses the Philox streams {@link Sampler} gives op k of
 * image g of {@code sample}: x_T (and image-to-image's start) from (s, g &lt;&lt; 32), a scheduler step's noise from
 * {@link RunPlan#stepOffset}, a merge's or jump's from {@link RunPlan#renoiseOffset}. The model call, guidance and
 * the update, merge and jump kernels work row by row, so a request's images are bit for bit those of
 * {@code sample} with the same seed and settings, whatever else is in the batch.
 *
 * <p><b>Workspaces.</b> A model call over r rows (rows in flight plus copies) runs on an inference instance sized
 * for the bucket {@code b >= r} (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... up to the rows of x, at most 1.5 times r):
 * the rows between r and b are computed and ignored. Instances are made on first use and kept, so a changing row
 * count never reallocates per step. After {@code idleReleaseMillis} with nothing in flight and nothing queued every
 * workspace and batch buffer is freed (native live bytes return to the models' weights); the next request
 * makes them again.
 */
public final class BatchEngine implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(BatchEngine.class.getName());

    /** Engine options. */
    public record Options(int maxBatch, int queueLimit, long idleReleaseMillis) {
        public Options {
            if (maxBatch < 1) throw new IllegalArgumentException("max batch must be >= 1, got " + maxBatch);
            if (queueLimit < 1) throw new IllegalArgumentException("queue limit must be >= 1, got " + queueLimit);
            if (idleReleaseMillis < 0) throw new IllegalArgumentException("idle release must be >= 0 ms, got " + idleReleaseMillis);
        }
    }

    /** A submitted request: its future (NCHW float32 samples) and its cancellation. */
    public static final class Job {
        final SampleRequest request;
        final long submittedNanos, deadlineNanos;
        final CompletableFuture<float[]> result = new CompletableFuture<>();
        private volatile boolean cancelled;

        Job(SampleRequest request, long now) {
            this.request = request;
            this.submittedNanos = now;
            this.deadlineNanos = now + TimeUnit.MILLISECONDS.toNanos(request.deadlineMillis());
        }

        /** The samples, float32 NCHW [n, C, H, W]; completes exceptionally with a {@link RequestException}. */
        public CompletableFuture<float[]> result() {
            return result;
        }

        /** When the request's deadline passes ({@link System#nanoTime()} scale). */
        public long deadlineNanos() {
            return deadlineNanos;
        }

        /**
         * Gives the request up (its handler stopped waiting: a deadline passed or the client left): it leaves the
         * queue, or its rows leave the batch, at the worker's next step.
         */
        public void cancel() {
            cancelled = true;
        }

        /** Whether {@link #cancel} was called. */
        public boolean cancelled() {
            return cancelled;
        }

        boolean expired(long now) {
            return cancelled || now - deadlineNanos >= 0;
        }
    }

    private final Backend backend;
    private final Options options;
    private final Metrics metrics;
    private final Map<String, ModelBatch> batches = new LinkedHashMap<>();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final ArrayDeque<Job> pending = new ArrayDeque<>(); // guarded by lock
    private boolean accepting = true; // guarded by lock
    private boolean stopping; // guarded by lock
    private long drainDeadlineNanos; // guarded by lock
    private final Thread worker;
    private volatile Throwable failure;
    /** Test hook: run by the worker at the start of every iteration (may block to pause it). */
    volatile Runnable iterationHook;

    public BatchEngine(Backend backend, List<ServedModel> models, Options options, Metrics metrics) {
        this.backend = backend;
        this.options = options;
        this.metrics = metrics;
        for (ServedModel m : models) {
            if (m.model().backend() != backend) throw new IllegalArgumentException("model '" + m.name() + "' is on another backend");
            if (batches.put(m.name(), new ModelBatch(m)) != null) throw new IllegalArgumentException("model name '" + m.name() + "' given twice");
        }
        metrics.queueDepth(this::queueDepth);
        publish();
        worker = Thread.ofPlatform().name("d4j-serve-worker").daemon(true).unstarted(this::work);
        worker.start();
    }

    public Options options() {
        return options;
    }

    /** Requests accepted and not yet admitted to a batch. */
    public int queueDepth() {
        lock.lock();
        try {
            return pending.size();
        } finally {
            lock.unlock();
        }
    }

    /** Whether new requests are accepted (false once shutdown began or the worker failed). */
    public boolean accepting() {
        lock.lock();
        try {
            return accepting && failure == null;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Queues a validated request.
     *
     * @throws RequestException 429 when the queue is full, 503 when shutting down or failed
     */
    public Job submit(SampleRequest r) throws RequestException {
        ModelBatch b = batches.get(r.model().name());
        if (b == null || b.served != r.model()) throw new RequestException(404, "model", "model: '" + r.model().name() + "' is not served here");
        if (r.n() > options.maxBatch()) {
            throw RequestException.bad("n", "must be <= " + options.maxBatch() + " (the server's batch size), got " + r.n());
        }
        lock.lock();
        try {
            if (failure != null) throw new RequestException(503, null, "the sampling worker failed: " + failure);
            if (!accepting) throw new RequestException(503, null, "the server is shutting down");
            if (pending.size() >= options.queueLimit()) {
                throw new RequestException(429, null, "the queue is full (" + options.queueLimit() + " requests waiting)");
            }
            Job j = new Job(r, System.nanoTime());
            pending.add(j);
            changed.signalAll();
            return j;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Stops accepting, lets the worker finish queued and in-flight requests for up to {@code drainMillis}, then
     * cancels what is left (503) and waits for the worker to release every device buffer. Returns whether
     * everything finished without cancellation. Idempotent; the models stay open (their owner closes them).
     */
    public boolean shutdown(long drainMillis) {
        lock.lock();
        try {
            if (!stopping) {
                stopping = true;
                accepting = false;
                drainDeadlineNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(Math.max(0, drainMillis));
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        boolean interrupted = false;
        while (worker.isAlive()) {
            try {
                worker.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        return !cancelledAtShutdown;
    }

    private volatile boolean cancelledAtShutdown;

    @Override
    public void close() {
        shutdown(0);
    }

    /** Whether the worker thread runs (false after a failure or shutdown). */
    public boolean workerAlive() {
        return worker.isAlive() && failure == null;
    }

    /** Rows in flight per model (what the worker last published). */
    Map<String, Integer> rowsInFlight() {
        Map<String, Integer> m = new TreeMap<>();
        for (ModelBatch b : batches.values()) m.put(b.served.name(), b.publishedRows);
        return m;
    }

    // ---------------------------------------------------------------------------------------------
    // the worker

    private void work() {
        long idleSince = System.nanoTime();
        boolean released = true;
        try {
            while (true) {
                Runnable hook = iterationHook;
                if (hook != null) hook.run();
                List<Job> admit = new ArrayList<>();
                List<Job> cancel = new ArrayList<>();
                boolean exit = false, cancelAll = false;
                lock.lock();
                try {
                    long now = System.nanoTime();
                    if (stopping && now - drainDeadlineNanos >= 0) {
                        cancelAll = true;
                        cancel.addAll(pending);
                        pending.clear();
                    }
                    for (Iterator<Job> it = pending.iterator(); it.hasNext(); ) {
                        Job j = it.next();
                        if (j.expired(now)) {
                            it.remove();
                            cancel.add(j);
                        }
                    }
                    Set<String> blocked = new HashSet<>();
                    Map<String, Integer> free = new LinkedHashMap<>();
                    for (ModelBatch b : batches.values()) free.put(b.served.name(), options.maxBatch() - b.rowsUsed);
                    for (Iterator<Job> it = pending.iterator(); it.hasNext(); ) {
                        Job j = it.next();
                        String name = j.request.model().name();
                        if (blocked.contains(name)) continue;
                        int f = free.get(name);
                        if (j.request.n() <= f) {
                            free.put(name, f - j.request.n());
                            admit.add(j);
                            it.remove();
                        } else {
                            blocked.add(name); // keep arrival order within a model
                        }
                    }
                    boolean busy = !admit.isEmpty() || batches.values().stream().anyMatch(b -> b.rowsUsed > 0);
                    if (!busy && cancel.isEmpty()) {
                        if (stopping && pending.isEmpty()) {
                            exit = true;
                        } else {
                            long idleNanos = TimeUnit.MILLISECONDS.toNanos(options.idleReleaseMillis());
                            if (!released && now - idleSince >= idleNanos) {
                                released = true; // released below, outside the lock
                            } else {
                                long wait = released ? TimeUnit.MILLISECONDS.toNanos(500) : idleNanos - (now - idleSince);
                                if (stopping) wait = Math.min(wait, Math.max(1, drainDeadlineNanos - now));
                                changed.awaitNanos(Math.max(1, wait));
                                continue;
                            }
                        }
                    }
                } finally {
                    lock.unlock();
                }
                for (Job j : cancel) fail(j, cancelAll && !j.expired(System.nanoTime()) ? shutdownCancel() : dropped(j));
                if (exit) break;
                if (cancelAll) {
                    for (ModelBatch b : batches.values()) b.dropAll(shutdownCancel());
                }
                if (released && admit.isEmpty() && batches.values().stream().allMatch(b -> b.rowsUsed == 0)) {
                    for (ModelBatch b : batches.values()) b.release();
                    publish();
                    continue;
                }
                released = false;
                for (Job j : admit) batches.get(j.request.model().name()).admit(j);
                for (ModelBatch b : batches.values()) {
                    b.dropExpired(System.nanoTime());
                    if (b.rowsUsed > 0) b.step();
                }
                publish();
                if (batches.values().stream().allMatch(b -> b.rowsUsed == 0)) idleSince = System.nanoTime();
            }
        } catch (Throwable t) {
            failure = t;
            RequestException e = new RequestException(500, null, "the sampling worker failed: " + t);
            lock.lock();
            try {
                accepting = false;
                for (Job j : pending) j.result.completeExceptionally(e);
                pending.clear();
            } finally {
                lock.unlock();
            }
            for (ModelBatch b : batches.values()) b.dropAll(e);
            LOG.log(System.Logger.Level.ERROR, "the sampling worker failed", t);
        } finally {
            for (ModelBatch b : batches.values()) {
                try {
                    b.release();
                } catch (RuntimeException e) {
                    LOG.log(System.Logger.Level.WARNING, "releasing the batch of " + b.served.name() + " failed", e);
                }
            }
            publish();
        }
    }

    private RequestException shutdownCancel() {
        cancelledAtShutdown = true;
        return new RequestException(503, null, "cancelled: the server is shutting down");
    }

    /** Why a request left before its end: given up by its handler, or past its deadline. */
    private static RequestException dropped(Job j) {
        if (j.cancelled) return new RequestException(503, null, "cancelled: the request was given up before it finished");
        return new RequestException(504, "deadline_ms", "the deadline of " + j.request.deadlineMillis()
                + " ms passed before the request finished");
    }

    private static void fail(Job j, RequestException e) {
        j.result.completeExceptionally(e);
    }

    private void publish() {
        Map<String, Integer> rows = new LinkedHashMap<>();
        for (ModelBatch b : batches.values()) {
            b.publishedRows = b.rowsUsed;
            rows.put(b.served.name(), b.rowsUsed);
        }
        metrics.batch(rows, options.maxBatch());
        if (!backend.isClosed()) {
            metrics.liveBytes.set(backend.liveBytes());
            metrics.liveBuffers.set(backend.liveBuffers());
        }
    }

    /** Bucket sizes: 1, 2, 3, 4, 6, 8, 12, ... (powers of two and 1.5 times them), capped by maxBatch. */
    static int bucket(int rows, int maxBatch) {
        int b = 1;
        while (b < rows) {
            int half = b + b / 2;
            b = half > b && half >= rows ? half : b * 2;
        }
        return Math.min(b, maxBatch);
    }

    /** A model's batch, owned by the worker. */
    private final class ModelBatch {
        final ServedModel served;
        /** Rows in flight at most; rows of x (guidable models: the rows in flight, then up to as many copies). */
        final int cap, rowsCap, h, w, c;
        final long per;
        final boolean conditional;
        final List<InFlight> active = new ArrayList<>();
        int rowsUsed;
        volatile int publishedRows;
        NativeSchedule schedule;
        Tensor x, x0, threshold, known, mask;
        final List<Tensor> xRows = new ArrayList<>(), x0Rows = new ArrayList<>(), knownRows = new ArrayList<>(),
                maskRows = new ArrayList<>();
        final Map<Integer, UNet2DModel> workspaces = new TreeMap<>();
        final Map<Integer, Tensor> bucketViews = new TreeMap<>();
        final Map<Integer, float[]> bucketTimesteps = new TreeMap<>();
        final Map<Integer, int[]> bucketLabels = new TreeMap<>();

        ModelBatch(ServedModel served) {
            this.served = served;
            this.cap = options.maxBatch();
            this.rowsCap = served.guidable() ? 2 * cap : cap;
            this.h = served.height();
            this.w = served.width();
            this.c = served.channels();
            this.per = served.imageFloats();
            this.conditional = served.classes() != null;
        }

        void admit(Job j) {
            if (j.expired(System.nanoTime())) {
                fail(j, dropped(j));
                return;
            }
            if (schedule == null) schedule = NativeSchedule.of(served.schedule());
            if (x == null) {
                x = Tensor.allocate(backend, DType.FLOAT32, rowsCap, h, w, c);
                x.fill(0f); // rows past the ones in flight are computed too (bucket padding): keep them finite
                for (int r = 0; r < cap; r++) xRows.add(x.view(r * per, per));
            }
            InFlight a = new InFlight(j);
            if (a.dpm && x0 == null) {
                x0 = Tensor.allocate(backend, DType.FLOAT32, cap, h, w, c);
                for (int r = 0; r < cap; r++) x0Rows.add(x0.view(r * per, per));
            }
            if (a.thresholded && threshold == null) threshold = Tensor.allocate(backend, DType.FLOAT32, cap);
            if (a.image && known == null) {
                known = Tensor.allocate(backend, DType.FLOAT32, cap, h, w, c);
                mask = Tensor.allocate(backend, DType.FLOAT32, cap, h, w, c);
                for (int r = 0; r < cap; r++) {
                    knownRows.add(known.view(r * per, per));
                    maskRows.add(mask.view(r * per, per));
                }
            }
            a.first = rowsUsed;
            rowsUsed += a.n;
            active.add(a);
            makeViews(a);
            // x at the start, as Sampler starts a run: the init image noised to the first timestep (image-to-image)
            // from the stream x_T would have come from, or x_T itself
            SampleRequest rq = j.request;
            if (a.image) a.knownv.copyFrom(ImageLayout.nchwToNhwc(rq.inputs().image(), a.n, c, h, w));
            if (a.inpaint) a.maskv.copyFrom(ImageLayout.nchwToNhwc(rq.inputs().mask(), a.n, c, h, w));
            long seed = rq.seed();
            int start = rq.runPlan().startTimestep();
            if (start >= 0) {
                int[] from = new int[a.n], to = new int[a.n];
                long[] seeds = new long[a.n], offsets = new long[a.n];
                for (int g = 0; g < a.n; g++) {
                    from[g] = -1;
                    to[g] = start;
                    seeds[g] = seed;
                    offsets[g] = (long) g << 32;
                }
                ConditioningKernels.noiseToTimestep(schedule, a.knownv, from, to, new SampleNoise(seeds, offsets), a.xv);
            } else {
                for (int g = 0; g < a.n; g++) DiffusionKernels.randomNormal(backend, seed, (long) g << 32, xRows.get(a.first + g));
            }
        }

        void makeViews(InFlight a) {
            a.closeViews();
            a.xv = x.view(a.first * per, a.n, h, w, c);
            if (a.dpm) a.x0v = x0.view(a.first * per, a.n, h, w, c);
            if (a.thresholded) a.thv = threshold.view(a.first, a.n);
            if (a.image) a.knownv = known.view(a.first * per, a.n, h, w, c);
            if (a.inpaint) a.maskv = mask.view(a.first * per, a.n, h, w, c);
        }

        void dropExpired(long now) {
            for (int i = 0; i < active.size(); i++) {
                InFlight a = active.get(i);
                if (a.job.expired(now)) {
                    fail(a.job, dropped(a.job));
                    remove(i--);
                }
            }
        }

        /** Fails every request in flight; no device work (also used after a device failure). */
        void dropAll(RequestException e) {
            for (InFlight a : active) {
                fail(a.job, e);
                a.closeViews();
            }
            active.clear();
            rowsUsed = 0;
        }

        /** Removes active request i; moves the rows of the later ones down (x, and the buffers each one uses). */
        void remove(int i) {
            InFlight gone = active.remove(i);
            gone.closeViews();
            rowsUsed -= gone.n;
            int dst = gone.first;
            for (int k = i; k < active.size(); k++) {
                InFlight a = active.get(k);
                for (int r = 0; r < a.n; r++) {
                    // exact device copy of one row; the rows differ, so they never overlap
                    move(xRows, a.first + r, dst + r);
                    if (a.dpm) move(x0Rows, a.first + r, dst + r);
                    if (a.image) move(knownRows, a.first + r, dst + r);
                    if (a.inpaint) move(maskRows, a.first + r, dst + r);
                }
                a.first = dst;
                makeViews(a);
                dst += a.n;
            }
        }

        private static void move(List<Tensor> rows, int from, int to) {
            DropoutKernels.copy(rows.get(from), rows.get(to));
        }

        /**
         * One step: the jumps back of the requests at one (no model call), then ONE model call over every row in
         * flight and, after them, the unconditional copies of the guided requests' rows (labelled with the null
         * class); then per request guidance, its scheduler update and inpainting's merge.
         */
        void step() {
            long t0 = System.nanoTime();
            for (InFlight a : active) a.undoToDenoise(schedule);
            int rows = rowsUsed, total = rows;
            for (InFlight a : active) {
                if (a.guided && !a.done()) {
                    a.copyFirst = total;
                    total += a.n;
                }
            }
            int b = bucket(total, rowsCap);
            UNet2DModel ws = workspaces.get(b);
            if (ws == null) {
                ws = served.model().sharingParameters();
                workspaces.put(b, ws);
                bucketViews.put(b, x.view(0, b, h, w, c));
                bucketTimesteps.put(b, new float[b]);
                if (conditional) bucketLabels.put(b, new int[b]);
            }
            float[] tModel = bucketTimesteps.get(b);
            int[] labels = conditional ? bucketLabels.get(b) : null;
            java.util.Arrays.fill(tModel, 0f);
            if (labels != null) java.util.Arrays.fill(labels, 0); // padding rows: any valid class
            for (InFlight a : active) {
                if (a.done()) continue;
                a.prepareDenoise();
                float ts = a.step().timestep();
                for (int r = 0; r < a.n; r++) {
                    tModel[a.first + r] = ts;
                    if (labels != null) labels[a.first + r] = a.labels[r];
                }
                if (a.guided) {
                    for (int r = 0; r < a.n; r++) {
                        tModel[a.copyFirst + r] = ts;
                        labels[a.copyFirst + r] = a.nullClass;
                    }
                    try (Tensor copies = x.view(a.copyFirst * per, a.n, h, w, c)) {
                        DropoutKernels.copy(a.xv, copies);
                    }
                }
            }
            Tensor out = ws.forward(bucketViews.get(b), tModel, labels);
            for (InFlight a : active) {
                if (!a.done()) a.finishDenoise(schedule, served, out, per, h, w, c);
            }
            for (int i = 0; i < active.size(); i++) {
                InFlight a = active.get(i);
                if (!a.done()) continue;
                float[] nchw = ImageLayout.nhwcToNchw(a.xv.toFloatArray(), a.n, c, h, w);
                a.job.result.complete(nchw);
                remove(i--);
            }
            metrics.steps.increment();
            metrics.occupancy.observe((double) rows / cap);
            metrics.stepSeconds.observe((System.nanoTime() - t0) / 1e9);
        }

        /** Frees every buffer and workspace (nothing may be in flight). */
        void release() {
            for (InFlight a : active) a.closeViews();
            active.clear();
            rowsUsed = 0;
            for (Tensor v : bucketViews.values()) v.close();
            bucketViews.clear();
            bucketTimesteps.clear();
            bucketLabels.clear();
            for (UNet2DModel m : workspaces.values()) m.close();
            workspaces.clear();
            for (List<Tensor> rows : List.of(maskRows, knownRows, x0Rows, xRows)) {
                for (int i = rows.size() - 1; i >= 0; i--) rows.get(i).close();
                rows.clear();
            }
            for (Tensor t : new Tensor[] {mask, known, threshold, x0, x}) {
                if (t != null) t.close();
            }
            mask = known = threshold = x0 = x = null;
            if (schedule != null) schedule.close();
            schedule = null;
        }
    }
}
