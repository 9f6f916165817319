package io.diffusion4j.testutil;

import io.diffusion4j.backend.Backend;
import io.diffusion4j.Device;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.Extension;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.junit.jupiter.api.extension.TestTemplateInvocationContext;
import org.junit.jupiter.api.extension.TestTemplateInvocationContextProvider;
import org.junit.platform.commons.support.AnnotationSupport;

/**
 * Runs an {@link OnDevices} method once per listed backend, and resolves a {@link DeviceBackends}
 * parameter (the test class's shared device backends) for any method of a class extended with it, such
 * as a {@code @TestFactory} that builds one dynamic test per device. The backend of an invocation is
 * opened before it runs (in {@code beforeEach}), so an unavailable one skips the invocation with its
 * reason rather than failing parameter resolution.
 */
public final class OnDevicesExtension implements TestTemplateInvocationContextProvider, ParameterResolver {
    @Override
    public boolean supportsTestTemplate(ExtensionContext context) {
        return AnnotationSupport.isAnnotated(context.getTestMethod(), OnDevices.class);
    }

    @Override
    public Stream<TestTemplateInvocationContext> provideTestTemplateInvocationContexts(ExtensionContext context) {
        Device[] kinds = AnnotationSupport.findAnnotation(context.getRequiredTestMethod(), OnDevices.class)
                .orElseThrow().value();
        return Arrays.stream(kinds).map(Invocation::new);
    }

    @Override
    public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
        return parameter.getParameter().getType() == DeviceBackends.class;
    }

    @Override
    public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
        return DeviceBackends.of(context);
    }

    /** One backend's run of the method. */
    private record Invocation(Device kind) implements TestTemplateInvocationContext {
        @Override
        public String getDisplayName(int invocationIndex) {
            return "[" + invocationIndex + "] " + kind;
        }

        @Override
        public List<Extension> getAdditionalExtensions() {
            return List.of((BeforeEachCallback) context -> DeviceBackends.of(context).get(kind), new ParameterResolver() {
                @Override
                public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
                    Class<?> type = parameter.getParameter().getType();
                    return type == Backend.class || type == Device.class;
                }

                @Override
                public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
                    return parameter.getParameter().getType() == Device.class ? kind : DeviceBackends.of(context).get(kind);
                }
            });
        }
    }
}
