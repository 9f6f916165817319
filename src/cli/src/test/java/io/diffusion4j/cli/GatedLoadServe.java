package io.diffusion4j.cli;

import io.diffusion4j.serve.ServedModel;
import java.io.IOException;

/**
 * {@code Main} for a child JVM whose {@code serve} holds in its loading state until a line arrives on its standard
 * input: the replica tests observe a load balancer around a loading replica for as long as they need, where a real
 * load takes milliseconds to seconds. Only the wait is added; the models are then loaded as {@code serve} loads them.
 */
public final class GatedLoadServe {
    private GatedLoadServe() {}

    public static void main(String[] args) {
        ServeCommand.ModelLoader real = ServeCommand.loader;
        Object gate = new Object();
        boolean[] open = {false};
        ServeCommand.loader = (name, dir, noEma, backend) -> {
            synchronized (gate) {
                if (!open[0]) {
                    if (System.in.read() < 0) throw new IOException("the test closed the gate's input");
                    open[0] = true;
                }
            }
            return real.load(name, dir, noEma, backend);
        };
        System.exit(Main.run(args, System.out, System.err));
    }
}
