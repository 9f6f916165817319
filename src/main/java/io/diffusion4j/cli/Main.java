package io.diffusion4j.cli;

import io.diffusion4j.Device;
import io.diffusion4j.backend.Backend;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.backend.NativeLibraries;
import io.diffusion4j.sample.EvalNllCommand;
import io.diffusion4j.sample.SampleCommand;
import io.diffusion4j.selftest.SelfTestCommand;
import io.diffusion4j.serve.ServeCommand;
import io.diffusion4j.train.TrainCommand;
import java.io.PrintStream;
import java.util.Arrays;

/** Command-line entry point: {@code java -jar diffusion4j.jar <command> [options]}. */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        // the commands draw PNGs (loss curve, sample grids) with java.awt: never open a display or a dock icon
        System.setProperty("java.awt.headless", "true");
        System.exit(run(args, System.out, System.err));
    }

    /** Runs a command and returns the process exit code. */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0 || args[0].equals("--help") || args[0].equals("-h") || args[0].equals("help")) {
            usage(out);
            return args.length == 0 ? 2 : 0;
        }
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        try {
            return switch (args[0]) {
                case "info" -> Info.run(rest, out);
                case "selftest" -> SelfTestCommand.run(rest, out, err);
                case "train" -> TrainCommand.run(rest, out, err);
                case "sample" -> SampleCommand.run(rest, out, err);
                case "eval-nll" -> EvalNllCommand.run(rest, out, err);
                case "demo" -> DemoCommand.run(rest, out, err);
                case "serve" -> ServeCommand.run(rest, out, err);
                default -> {
                    err.println("unknown command '" + args[0] + "'");
                    usage(err);
                    yield 2;
                }
            };
        } catch (IllegalArgumentException e) {
            err.println("error: " + e.getMessage());
            return 2;
        } catch (D4jException e) {
            err.println("error (" + e.status() + "): " + e.getMessage());
            return 1;
        }
    }

    static void usage(PrintStream out) {
        out.println("diffusion4j " + NativeLibraries.version() + " — denoising diffusion models with native CPU and CUDA kernels");
        out.println();
        out.println("usage: java -jar target/diffusion4j.jar <command> [options]");
        out.println();
        out.println("commands:");
        out.println("  info [--backend cpu|cuda|cuda-sim]   the native libraries, the backends found here, and why any cannot run");
        out.println("  selftest [--backend cuda|cuda-sim] [--variants all|default]");
        out.println("                                       every kernel family and variant on the device backend vs the cpu");
        out.println("                                       backend (default: cuda if a GPU is usable, else cuda-sim); exit 1 on a failure");
        out.println("  train [--data procedural|fashion-mnist|images] [--data-dir DIR] [--steps N] [--batch-size N] [--lr X]");
        out.println("        [--warmup N] [--ema-decay X] [--prediction-type epsilon|sample|v_prediction] [--min-snr-gamma X]");
        out.println("        [--beta-schedule NAME] [--config FILE] [--init-from MODEL_DIR] [--resume CHECKPOINT_DIR]");
        out.println("        [--out DIR] [--seed N] [--backend cpu|cuda|cuda-sim] (more: train --help)");
        out.println("                                       train a UNet2DModel (default: procedural shapes, 28x28, 300");
        out.println("                                       steps on the best backend) and write a diffusers checkpoint,");
        out.println("                                       loss.csv and loss_curve.png to --out");
        out.println("  sample --checkpoint DIR [--sampler ddpm|ddim|dpmsolver++] [--steps N] [--eta X] [--n N]");
        out.println("        [--batch-size N] [--seed N] [--out DIR] [--no-ema] [--init-noise FILE.npy] [--save-npy]");
        out.println("                                       sample images from a checkpoint (ours or diffusers) into --out");
        out.println("  eval-nll --checkpoint DIR [--data fashion-mnist|procedural] [--n N] [--batch-size N] [--seed N]");
        out.println("        [--timestep-stride K] [--no-ema] (more: eval-nll --help)");
        out.println("                                       negative log-likelihood in bits/dim (variational bound, T model");
        out.println("                                       calls per batch: minutes for the default 8 images on a CPU)");
        out.println("  demo [--out DIR] [--steps N] [--backend cpu|cuda|cuda-sim]");
        out.println("                                       train the default model on the built-in shapes for a few");
        out.println("                                       minutes, then sample a DDIM-50 grid into --out (demo-output/)");
        out.println("  serve --model NAME=CHECKPOINT_DIR [--model ...] [--port P] [--host H] [--max-batch N] (more: serve --help)");
        out.println("                                       HTTP sampling server with continuous batching (loopback by");
        out.println("                                       default): POST /v1/samples, GET /healthz /readyz /metrics");
        out.println("  help                                 this text");
    }

    /** The {@code info} command. */
    static final class Info {
        static int run(String[] args, PrintStream out) {
            String only = null;
            for (int i = 0; i < args.length; i++) {
                if (args[i].equals("--backend")) {
                    if (i + 1 >= args.length) throw new IllegalArgumentException("info: --backend needs a value (cpu, cuda or cuda-sim)");
                    only = Device.fromName(args[++i]).cliName(); // refuses an unknown name instead of listing nothing
                } else {
                    throw new IllegalArgumentException("info: unknown option '" + args[i] + "'");
                }
            }
            NativeLibraries libs = NativeLibraries.load();
            out.println("diffusion4j " + NativeLibraries.version());
            out.println("java        " + System.getProperty("java.version") + " (" + System.getProperty("java.vm.name") + ")");
            out.println("platform    " + NativeLibraries.platform());
            out.println("natives     " + libs.directory() + (libs.extracted() ? " (extracted from the jar, SHA-256 verified)" : " (from -D" + NativeLibraries.NATIVE_DIR_PROPERTY + ")"));
            out.println();
            out.println("backends:");
            for (Backend.Probe p : Backend.probeAll()) {
                if (only != null && !p.kind().cliName().equals(only)) continue;
                out.printf("  %-9s %-13s %s%n", p.kind().cliName(), p.available() ? "available" : "unavailable", p.detail());
                out.printf("  %-9s %-13s %s%n", "", "library", p.library() == null ? "(not built)" : p.library());
            }
            String chosen;
            try (Backend best = Backend.openBest()) {
                chosen = best.kind().cliName();
            }
            out.println();
            out.println("default backend: " + chosen);
            return 0;
        }
    }
}
