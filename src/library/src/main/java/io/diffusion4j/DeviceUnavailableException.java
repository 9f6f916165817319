package io.diffusion4j;

/**
 * A device cannot be used on this machine: its library is not part of this build, there is no NVIDIA driver,
 * no visible GPU, or the driver is too old. The message is one sentence saying which.
 */
public final class DeviceUnavailableException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The device that was asked for. */
    private final Device device;

    /**
     * Creates the exception.
     *
     * @param device the device that was asked for
     * @param message why it cannot be used
     * @param cause the underlying failure, or null
     */
    public DeviceUnavailableException(Device device, String message, Throwable cause) {
        super(message, cause);
        this.device = device;
    }

    /**
     * The device that was asked for.
     *
     * @return the unavailable device
     */
    public Device device() {
        return device;
    }
}
