package io.diffusion4j.serve;

import static io.diffusion4j.serve.ServeTestSupport.get;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.diffusion4j.io.Json;
import io.diffusion4j.testutil.RepoPaths;
import io.diffusion4j.testutil.TestRandom;
import java.io.IOException;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * deploy/: the container image and Kubernetes manifests cannot be run on this project's machines (no container
 * engine, no cluster), so what they rely on is checked here instead: the Deployment's {@code serve} arguments equal
 * the image's CMD and start a real server (model path, ports and bind address swapped for a test checkpoint, free
 * ports and loopback) whose probe paths answer 200 on the management port, whose /metrics there carries the
 * autoscaler's metric as a gauge, and whose sampling port samples; the ports, names, metric, drain time and
 * pre-stop sleep agree across the files.
 */
class DeployManifestsTest {
    @TempDir
    Path dir;

    static String read(String path) throws IOException {
        return Files.readString(RepoPaths.of(path));
    }

    static String group(String text, String regex, String what) {
        Matcher m = Pattern.compile(regex, Pattern.DOTALL).matcher(text);
        assertTrue(m.find(), what + " not found (" + regex + ")");
        return m.group(1);
    }

    /** A YAML flow sequence or JSON array of strings, e.g. {@code ["serve", "--port", "8080"]}. */
    static List<String> stringArray(String json) {
        List<String> out = new ArrayList<>();
        for (Object o : (List<?>) Json.parseObject("{\"a\": " + json + "}").get("a")) out.add((String) o);
        return out;
    }

    static String after(List<String> args, String option) {
        int i = args.indexOf(option);
        assertTrue(i >= 0 && i + 1 < args.size(), option + " in " + args);
        return args.get(i + 1);
    }

    @Test
    void manifestsAgreeAndTheirServeArgumentsStartAServerThatAnswersTheProbes() throws Exception {
        String deployment = read("deploy/kubernetes/deployment.yaml");
        String service = read("deploy/kubernetes/service.yaml");
        String hpa = read("deploy/kubernetes/hpa.yaml");
        String rules = read("deploy/kubernetes/prometheus-adapter-rules.yaml");
        String containerfile = read("deploy/Containerfile");

        List<String> args = stringArray(group(deployment, "\\n\\s*args: (\\[[^\\]]*\\])", "the container's args"));
        assertEquals(args, stringArray(group(containerfile, "\\nCMD (\\[[^\\]]*\\])", "the image's CMD")),
                "the Deployment's args and the image's CMD");
        assertEquals("serve", args.getFirst());
        String port = after(args, "--port");
        String management = after(args, "--management-port");
        assertEquals(port, group(deployment, "- name: http\\s*containerPort: (\\d+)", "the http containerPort"));
        assertEquals(management, group(deployment, "- name: management\\s*containerPort: (\\d+)",
                "the management containerPort"));
        assertEquals(port, group(service, "targetPort: (\\d+)", "the Service's targetPort"));
        assertEquals(port + " " + management, group(containerfile, "\\nEXPOSE (\\d+ \\d+)\\n", "EXPOSE"));
        String readyPath = group(deployment, "readinessProbe:\\s*httpGet:\\s*path: (\\S+)", "readiness path");
        String livePath = group(deployment, "livenessProbe:\\s*httpGet:\\s*path: (\\S+)", "liveness path");
        assertEquals(management, group(deployment, "readinessProbe:\\s*httpGet:\\s*path: \\S+\\s*port: (\\d+)", "readiness port"));
        assertEquals(management, group(deployment, "livenessProbe:\\s*httpGet:\\s*path: \\S+\\s*port: (\\d+)", "liveness port"));
        assertEquals(management, group(deployment, "prometheus\\.io/port: \"(\\d+)\"", "the scrape port"));
        long grace = Long.parseLong(group(deployment, "terminationGracePeriodSeconds: (\\d+)", "grace period"));
        long preStop = Long.parseLong(group(deployment, "preStop:\\s*exec:\\s*command: \\[\"sleep\", \"(\\d+)\"\\]",
                "the pre-stop sleep"));
        long shutdown = SampleServer.shutdownBoundMillis(Long.parseLong(after(args, "--drain-ms")));
        assertTrue(preStop * 1000 + shutdown < grace * 1000, "the pre-stop sleep (" + preStop + " s) and the longest "
                + "shutdown (" + shutdown + " ms) must end inside the termination grace period (" + grace + " s)");
        String deploymentName = group(deployment, "kind: Deployment\\s*metadata:\\s*name: (\\S+)", "Deployment name");
        assertEquals(deploymentName, group(hpa, "scaleTargetRef:.*?kind: Deployment\\s*name: (\\S+)", "HPA target"));
        String metric = group(hpa, "metric:\\s*name: (\\S+)", "the HPA's metric");
        assertEquals(metric, group(rules, "seriesQuery: '(\\w+)\\{", "the adapter's series"));
        assertEquals(metric, group(rules, "as: \"(\\w+)\"", "the adapter's published name"));

        // the same arguments on a real server: the model folder, port and bind address are the pod's own
        Path ck = ServeTestSupport.checkpoint(dir.resolve("ck"), TestRandom.fresh().nextLong());
        List<String> local = new ArrayList<>(args.subList(1, args.size()));
        String model = after(local, "--model");
        local.set(local.indexOf(model), model.substring(0, model.indexOf('=') + 1) + ck);
        local.set(local.indexOf("--port") + 1, "0");
        local.set(local.indexOf("--management-port") + 1, "0");
        local.set(local.indexOf("--host") + 1, "127.0.0.1");
        try (ChildServer server = ChildServer.start(List.of(), local)) {
            assertTrue(server.healthPort != server.port, "a management port of its own");
            for (String path : List.of(readyPath, livePath)) {
                HttpResponse<String> r = get(server.healthPort, path);
                assertEquals(200, r.statusCode(), path + ": " + r.body() + "\n" + server.output);
            }
            HttpResponse<byte[]> sample = ServeTestSupport.post(server.port, "{\"model\":\"default\",\"steps\":2}");
            assertEquals(200, sample.statusCode(), ServeTestSupport.text(sample));
            assertEquals(404, get(server.port, readyPath).statusCode(), "the probes are not on the sampling port");
            String metrics = get(server.healthPort, "/metrics").body();
            assertTrue(metrics.contains("# TYPE " + metric + " gauge"), metric + " is a gauge on /metrics:\n" + metrics);
            assertTrue(Pattern.compile("(?m)^" + metric + " \\d+$").matcher(metrics).find(),
                    metric + " has one unlabelled value per pod:\n" + metrics);
        }
    }
}
