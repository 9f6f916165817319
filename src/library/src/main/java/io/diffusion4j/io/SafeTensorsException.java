package io.diffusion4j.io;

import java.io.IOException;

/**
 * A safetensors file (or byte image) that is corrupt, truncated or uses a feature this reader does
 * not support. Thrown before any tensor is handed out: a file is either accepted whole or refused.
 */
public final class SafeTensorsException extends IOException {
    SafeTensorsException(String message) {
        super(message);
    }

    SafeTensorsException(String message, Throwable cause) {
        super(message, cause);
    }
}
