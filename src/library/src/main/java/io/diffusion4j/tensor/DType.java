package io.diffusion4j.tensor;

/** Element types of tensors. */
public enum DType {
    FLOAT32(4),
    INT32(4),
    UINT32(4);

    private final int bytes;

    DType(int bytes) {
        this.bytes = bytes;
    }

    /** Size of one element in bytes. */
    public int byteSize() {
        return bytes;
    }
}
