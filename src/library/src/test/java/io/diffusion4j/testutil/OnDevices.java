package io.diffusion4j.testutil;

import io.diffusion4j.Device;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.junit.jupiter.api.TestTemplate;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * A test run once per device backend: the method may take the {@link io.diffusion4j.backend.Backend}
 * and its {@link Device} as parameters. Each backend is opened once per test class and closed when
 * the class is done ({@link DeviceBackends#of}); where it cannot run here, that invocation is skipped with
 * the backend's own reason. The method must not close the backend.
 */
@Target(ElementType.METHOD)
@Retention(RetentionPolicy.RUNTIME)
@TestTemplate
@ExtendWith(OnDevicesExtension.class)
public @interface OnDevices {
    /** The device backends to run on. */
    Device[] value() default {Device.CUDA, Device.CUDA_SIM};
}
