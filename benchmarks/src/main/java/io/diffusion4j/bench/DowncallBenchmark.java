package io.diffusion4j.bench;

import io.diffusion4j.backend.Native;
import io.diffusion4j.bindings.d4j_h;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.invoke.MethodHandle;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Cost of one empty downcall (d4j_noop) through the generated binding (a
 * static final MethodHandle, invokeExact) and through a handle linked with
 * Linker.Option.critical, which skips the thread-state transition and is
 * allowed only for calls that cannot block (d4j_noop cannot; our kernels can,
 * so they are never linked critical).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class DowncallBenchmark {
    static {
        Native.ensureLoaded();
    }

    static final MethodHandle NOOP_CRITICAL = Linker.nativeLinker().downcallHandle(
            d4j_h.d4j_noop$address(), FunctionDescriptor.ofVoid(), Linker.Option.critical(false));

    @Benchmark
    public void plain() {
        d4j_h.d4j_noop();
    }

    @Benchmark
    public void critical() throws Throwable {
        NOOP_CRITICAL.invokeExact();
    }
}
