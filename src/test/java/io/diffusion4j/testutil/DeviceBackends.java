package io.diffusion4j.testutil;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import java.util.EnumMap;
import java.util.Map;

/**
 * The device backends of a parity test class: each opened once on first use and closed by
 * {@link #close()}; a backend that cannot run here makes the calling test skip with the reason it gave.
 */
public final class DeviceBackends implements AutoCloseable {
    private final Map<Device, Backend> open = new EnumMap<>(Device.class);
    private final Map<Device, String> unavailable = new EnumMap<>(Device.class);

    /** The backend, or the test is skipped with the backend's own reason. */
    public synchronized Backend get(Device kind) {
        if (!open.containsKey(kind) && !unavailable.containsKey(kind)) {
            try {
                open.put(kind, Backend.open(kind));
            } catch (D4jException.BackendUnavailableException e) {
                unavailable.put(kind, e.getMessage());
            }
        }
        Backend b = open.get(kind);
        String reason = unavailable.get(kind);
        assumeTrue(b != null, () -> "backend " + kind.cliName() + " is unavailable: " + reason);
        return b;
    }

    /**
     * Opens a backend the caller owns and closes (one test's worth), or skips the calling test with the
     * backend's own reason when it cannot run here.
     */
    public static Backend openOrSkip(Device kind) {
        try {
            return Backend.open(kind);
        } catch (D4jException.BackendUnavailableException e) {
            assumeTrue(false, "backend " + kind.cliName() + " is unavailable: " + e.getMessage());
            return null;  // not reached: assumeTrue(false, ...) throws
        }
    }

    @Override
    public synchronized void close() {
        open.values().forEach(Backend::close);
        open.clear();
    }
}
