package io.diffusion4j.testutil;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import java.util.EnumMap;
import java.util.Map;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * The device backends of a test class: each opened once on first use and closed by {@link #close()}; a
 * backend that cannot run here makes the calling test skip with the reason it gave. {@link OnDevices}
 * tests get theirs from {@link #of}, which the class's extension context closes when the class is done.
 */
public final class DeviceBackends implements AutoCloseable, ExtensionContext.Store.CloseableResource {
    private static final ExtensionContext.Namespace NAMESPACE = ExtensionContext.Namespace.create(DeviceBackends.class);
    private final Map<Device, Backend> open = new EnumMap<>(Device.class);
    private final Map<Device, String> unavailable = new EnumMap<>(Device.class);

    /** The device backends of the test class that {@code context} runs in, closed when that class is done. */
    public static DeviceBackends of(ExtensionContext context) {
        ExtensionContext c = context;
        while (c.getTestMethod().isPresent() && c.getParent().isPresent()) c = c.getParent().get();
        return c.getStore(NAMESPACE).getOrComputeIfAbsent(DeviceBackends.class, k -> new DeviceBackends(),
                DeviceBackends.class);
    }

    /** The backend, or the test is skipped with the backend's own reason. */
    public synchronized Backend get(Device kind) {
        Backend b = tryGet(kind);
        String reason = unavailable.get(kind);
        assumeTrue(b != null, () -> "backend " + kind.cliName() + " is unavailable: " + reason);
        return b;
    }

    /** The backend, or null when it cannot run here ({@link #get} then skips with the reason). */
    public synchronized Backend tryGet(Device kind) {
        if (!open.containsKey(kind) && !unavailable.containsKey(kind)) {
            try {
                open.put(kind, Backend.open(kind));
            } catch (D4jException.BackendUnavailableException e) {
                unavailable.put(kind, e.getMessage());
            }
        }
        return open.get(kind);
    }

    /** Whether a backend opens here (this opens and closes it once); for tests whose expectations differ on a GPU. */
    public static boolean usable(Device kind) {
        try {
            Backend.open(kind).close();
            return true;
        } catch (D4jException.BackendUnavailableException e) {
            return false;
        }
    }

    @Override
    public synchronized void close() {
        open.values().forEach(Backend::close);
        open.clear();
    }
}
