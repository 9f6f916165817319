package io.diffusion4j.cli;

import io.diffusion4j.DeviceUnavailableException;
import io.diffusion4j.backend.D4jException;
import io.diffusion4j.backend.NativeLibraries;
import io.diffusion4j.backend.Status;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Spec;

/**
 * Command-line entry point: {@code java -jar diffusion4j.jar <command> [options]}. Every command is a picocli
 * class in this package; their help, usage and option errors come from picocli, with one error format:
 * {@code error: <command>: <what>} then the command's usage on stderr, exit code 2 for a bad command line, 1 for
 * a failure while running (a file that cannot be read, a backend that cannot run).
 */
@Command(name = "diffusion4j", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Denoising diffusion models (DDPM, DDIM, DPM-Solver++) with native CPU and CUDA kernels.",
        synopsisHeading = "usage: ", commandListHeading = "%ncommands:%n",
        footer = {"", "Run 'diffusion4j <command> --help' for the options of a command."},
        subcommands = {InfoCommand.class, SelfTestCommand.class, TrainCommand.class, SampleCommand.class,
            EvalNllCommand.class, DemoCommand.class, ServeCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Callable<Integer> {
    /** Exit code of a bad command line. */
    static final int USAGE_ERROR = 2;
    /** Exit code of a command that failed while running. */
    static final int FAILED = 1;

    @Spec
    CommandSpec spec;

    private final Io io;

    Main(Io io) {
        this.io = io;
    }

    /** The process's output streams, handed to every command by {@link #commandLine}'s factory. */
    record Io(PrintStream out, PrintStream err) {}

    public static void main(String[] args) {
        // an application-wide choice, made here rather than in a library class: no display is ever needed
        System.setProperty("java.awt.headless", "true");
        // the library's log lines (e.g. why the default backend fell back to the CPU) as one plain line each
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", "diffusion4j: %5$s%6$s%n");
        }
        System.exit(run(args, System.out, System.err));
    }

    /**
     * Runs a command and returns the process exit code. Whatever a command throws ends as one line on stderr and
     * exit code 1, never a stack trace: an OutOfMemoryError (picocli lets Errors through) included.
     */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        try {
            return commandLine(out, err).execute(args);
        } catch (OutOfMemoryError e) {
            err.println(outOfMemory(e));
            return FAILED;
        } catch (StackOverflowError e) {
            err.println("error: the input is nested too deeply (stack overflow)");
            return FAILED;
        }
    }

    /** The one line for an OutOfMemoryError: what ran out and what to change. */
    static String outOfMemory(OutOfMemoryError e) {
        return "error: out of memory (" + (e.getMessage() == null ? "Java heap" : e.getMessage()) + "): the run needs more"
                + " than this JVM may use; lower --batch-size or the image size, or raise -Xmx (max heap "
                + Runtime.getRuntime().maxMemory() / (1 << 20) + " MiB)";
    }

    /** No command: the usage, and the exit code of a bad command line. */
    @Override
    public Integer call() {
        spec.commandLine().usage(io.out());
        return USAGE_ERROR;
    }

    static CommandLine commandLine(PrintStream out, PrintStream err) {
        Io io = new Io(out, err);
        CommandLine.IFactory fallback = CommandLine.defaultFactory();
        CommandLine.IFactory factory = new CommandLine.IFactory() {
            @Override
            public <K> K create(Class<K> cls) throws Exception {
                try {
                    var ctor = cls.getDeclaredConstructor(Io.class);
                    return ctor.newInstance(io);
                } catch (NoSuchMethodException e) {
                    return fallback.create(cls);
                }
            }
        };
        CommandLine cl = new CommandLine(Main.class, factory);
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        cl.setUsageHelpWidth(100);
        cl.setParameterExceptionHandler((ex, args) -> {
            CommandLine where = ex.getCommandLine();
            err.println("error: " + prefix(where) + message(ex, where));
            where.usage(err);
            return USAGE_ERROR;
        });
        cl.setExecutionExceptionHandler((ex, where, parseResult) -> {
            if (ex instanceof IllegalArgumentException) {
                err.println("error: " + ex.getMessage());
                return USAGE_ERROR;
            }
            if (ex instanceof D4jException d) {
                err.println("error (" + d.status() + "): " + d.getMessage());
                return FAILED;
            }
            // the public API's form of an unavailable device (demo opens through it): a reason, not a stack trace
            if (ex instanceof DeviceUnavailableException u) {
                err.println("error (" + Status.UNAVAILABLE + "): the " + u.device().cliName() + " backend cannot run here: "
                        + u.getMessage());
                return FAILED;
            }
            if (ex instanceof MemoryOptions.TooLarge t) {
                err.println("error: " + t.getMessage());
                return FAILED;
            }
            // the rest must not reach the user as a stack trace either: one line saying what failed
            if (ex instanceof UncheckedIOException u) {
                err.println("error: " + describe(u.getCause()));
                return FAILED;
            }
            if (ex instanceof IOException ioe) {
                err.println("error: " + describe(ioe));
                return FAILED;
            }
            if (ex instanceof ArithmeticException a) {
                err.println("error: a size computed from the input overflows (" + a.getMessage() + "): the input"
                        + " describes something too large");
                return FAILED;
            }
            err.println("error: " + prefix(where) + "internal error: " + ex);
            return FAILED;
        });
        return cl;
    }

    /**
     * An IOException as one line that names the file: NoSuchFileException and AccessDeniedException carry only the
     * path as their message, so the reason is added.
     */
    static String describe(IOException e) {
        if (e instanceof java.nio.file.FileSystemException f && f.getFile() != null) {
            String reason = f.getReason() != null ? f.getReason() : switch (f) {
                case java.nio.file.NoSuchFileException x -> "no such file or directory";
                case java.nio.file.AccessDeniedException x -> "permission denied";
                case java.nio.file.FileAlreadyExistsException x -> "already exists";
                case java.nio.file.NotDirectoryException x -> "not a directory";
                default -> e.getClass().getSimpleName();
            };
            return f.getFile() + (f.getOtherFile() != null ? " -> " + f.getOtherFile() : "") + ": " + reason;
        }
        return e.getMessage() == null ? e.toString() : e.getMessage();
    }

    /** "sample: " for a subcommand, nothing for the top level. */
    private static String prefix(CommandLine where) {
        return where.getParent() == null ? "" : where.getCommandName() + ": ";
    }

    /** Option errors in this tool's words, the same for every command. */
    private static String message(CommandLine.ParameterException ex, CommandLine where) {
        if (ex instanceof CommandLine.UnmatchedArgumentException u && !u.getUnmatched().isEmpty()) {
            String arg = u.getUnmatched().get(0);
            if (arg.startsWith("-")) return "unknown option '" + arg + "'";
            return where.getParent() == null && !where.getSubcommands().isEmpty()
                    ? "unknown command '" + arg + "'" : "unexpected argument '" + arg + "'";
        }
        if (ex instanceof CommandLine.MissingParameterException m) {
            List<ArgSpec> missing = m.getMissing();
            if (!missing.isEmpty() && missing.get(0) instanceof OptionSpec o) {
                return m.getMessage().startsWith("Missing required parameter for option")
                        ? o.longestName() + " needs a value (" + o.paramLabel() + ")"
                        : o.longestName() + " " + o.paramLabel() + " is required";
            }
        }
        return ex.getMessage();
    }

    /** Throws the command-line error "--name must be >= min, got value" unless value >= min. */
    static int atLeast(CommandSpec spec, String name, int value, int min) {
        if (value < min) throw bad(spec, name + " must be >= " + min + ", got " + value);
        return value;
    }

    /** A command-line error of the given command: printed with its usage, exit code 2. */
    static CommandLine.ParameterException bad(CommandSpec spec, String message) {
        return new CommandLine.ParameterException(spec.commandLine(), message);
    }

    /** The library's version, for {@code --version}. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"diffusion4j " + NativeLibraries.version(), "java " + System.getProperty("java.version")
                    + " (" + System.getProperty("java.vm.name") + ")"};
        }
    }
}
