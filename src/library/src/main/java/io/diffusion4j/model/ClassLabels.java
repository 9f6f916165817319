package io.diffusion4j.model;

import io.diffusion4j.io.AtomicFiles;
import io.diffusion4j.io.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The classes of a class-conditional model: the name of each label and the null class, the label that stands for
 * "no class" (the unconditional prediction classifier-free guidance needs). Kept beside the checkpoint's
 * config.json as {@value #FILE}, in the {@code id2label} form of Hugging Face configs:
 * <pre>{"id2label": {"0": "T-shirt/top", "1": "Trouser", ...}, "null_class": 10}</pre>
 * {@code null_class} is -1 when the model has none (then every image needs a label and guidance is unavailable).
 *
 * @param names class name by label, for labels 0 .. names.size() - 1
 * @param nullClass the null class's label (names.size() by convention), or -1
 */
public record ClassLabels(List<String> names, int nullClass) {
    /** The file name beside config.json. */
    public static final String FILE = "class_labels.json";

    public ClassLabels {
        names = List.copyOf(names);
        if (nullClass < -1 || (nullClass >= 0 && nullClass < names.size())) {
            throw new IllegalArgumentException("null_class " + nullClass + " must be -1 or a label past the "
                    + names.size() + " named classes");
        }
    }

    /** Whether the model learnt the unconditional prediction (a null class). */
    public boolean hasNullClass() {
        return nullClass >= 0;
    }

    /**
     * The labels of a model with {@code numClassEmbeds} rows and no {@value #FILE}: every row a class named by its
     * number, no null class.
     */
    public static ClassLabels unnamed(int numClassEmbeds) {
        List<String> n = new ArrayList<>();
        for (int i = 0; i < numClassEmbeds; i++) n.add(Integer.toString(i));
        return new ClassLabels(n, -1);
    }

    /** Checks that these labels fit a model with {@code numClassEmbeds} class-embedding rows. */
    public void checkFits(int numClassEmbeds, Path file) throws IOException {
        int rows = names.size() + (hasNullClass() ? 1 : 0);
        if (rows != numClassEmbeds || (hasNullClass() && nullClass != names.size())) {
            throw new IOException(file + ": " + names.size() + " classes" + (hasNullClass() ? " and null class "
                    + nullClass : "") + " do not match the model's num_class_embeds " + numClassEmbeds);
        }
    }

    /**
     * The classes of the model whose config.json is in {@code dir}: null for an unconditional config; else its
     * {@value #FILE}, or {@link #unnamed} when there is none, checked against num_class_embeds.
     *
     * @throws IOException naming the file when it cannot be read or does not fit the config
     */
    public static ClassLabels forModel(UNet2DConfig config, Path dir) throws IOException {
        if (!config.isClassConditional()) return null;
        ClassLabels l = read(dir);
        if (l == null) l = unnamed(config.numClassEmbeds());
        l.checkFits(config.numClassEmbeds(), dir.resolve(FILE));
        return l;
    }

    /** Writes {@value #FILE} into {@code dir} atomically. */
    public void write(Path dir) throws IOException {
        AtomicFiles.writeString(dir.resolve(FILE), toJson());
    }

    /** The content of {@value #FILE}. */
    public String toJson() {
        Map<String, Object> id2label = new LinkedHashMap<>();
        for (int i = 0; i < names.size(); i++) id2label.put(Integer.toString(i), names.get(i));
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("id2label", id2label);
        m.put("null_class", (long) nullClass);
        return Json.write(m);
    }

    /** Reads {@value #FILE} of {@code dir}, or null when there is none. */
    public static ClassLabels read(Path dir) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Path file = dir.resolve(FILE);
        if (!Files.exists(file)) return null;
        try {
            Map<String, Object> m = Json.parseObject(io.diffusion4j.io.SmallFiles.readText(file));
            if (!(m.get("id2label") instanceof Map<?, ?> ids)) throw new IllegalArgumentException("id2label must be an object");
            List<String> names = new ArrayList<>();
            for (int i = 0; i < ids.size(); i++) {
                Object v = ids.get(Integer.toString(i));
                if (!(v instanceof String s)) {
                    throw new IllegalArgumentException("id2label must map \"0\" .. \"" + (ids.size() - 1)
                            + "\" to names; \"" + i + "\" is " + Json.typeName(v));
                }
                names.add(s);
            }
            if (!(m.get("null_class") instanceof Long n) || n < -1 || n > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("null_class must be an integer >= -1");
            }
            for (String k : m.keySet()) {
                if (!k.equals("id2label") && !k.equals("null_class")) throw new IllegalArgumentException("unknown key \"" + k + "\"");
            }
            return new ClassLabels(names, n.intValue());
        } catch (RuntimeException e) {
            throw new IOException(file + ": " + e.getMessage(), e);
        }
    }

    /** The label of a class given by number or by name (case-insensitive), or -1 when it is neither. */
    public int parse(String text) {
        String t = text.trim();
        try {
            int v = Integer.parseInt(t);
            return v >= 0 && v < names.size() ? v : -1;
        } catch (NumberFormatException e) {
            for (int i = 0; i < names.size(); i++) if (names.get(i).equalsIgnoreCase(t)) return i;
            return -1;
        }
    }
}
