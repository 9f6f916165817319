package io.diffusion4j.schedule;

import java.util.Arrays;
import java.util.function.Function;
import java.util.stream.Collectors;

/** Package-private helpers for mapping diffusers config strings to enum constants. */
final class ConfigNames {
    private ConfigNames() {}

    /**
     * Returns the constant of {@code type} whose config name equals {@code value} exactly.
     *
     * @throws IllegalArgumentException naming {@code parameter}, the bad value and the valid names
     */
    static <E extends Enum<E>> E parse(
            Class<E> type, String parameter, String value, Function<E, String> configName) {
        if (value != null) {
            for (E e : type.getEnumConstants()) {
                if (configName.apply(e).equals(value)) {
                    return e;
                }
            }
        }
        String valid = Arrays.stream(type.getEnumConstants())
                .map(configName)
                .collect(Collectors.joining(", ", "[", "]"));
        String shown = value == null ? "null" : "'" + value + "'";
        throw new IllegalArgumentException(
                "unknown " + parameter + " " + shown + "; expected one of " + valid);
    }
}
