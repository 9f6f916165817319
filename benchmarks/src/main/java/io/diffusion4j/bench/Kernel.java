package io.diffusion4j.bench;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a JMH {@code @Benchmark} method as the benchmark of a kernel family (one of the names
 * {@code d4j_kernel_families} returns, D4J_KERNEL_FAMILIES in native/common/backend_iface.h) and of the
 * native entry points of native/include/d4j.h it calls. {@link CoverageCheck} fails when a family or a kernel
 * entry point has no such method; {@link KernelReport} groups its table by family.
 */
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface Kernel {
    /** The kernel family, exactly as d4j_kernel_families spells it. */
    String family();

    /** The d4j.h functions one call of the benchmark method runs. */
    String[] entryPoints();
}
