/**
 * diffusion4j: train denoising diffusion models and sample from them, with native CPU and CUDA kernels called
 * through the Foreign Function and Memory API. The API is the package {@code io.diffusion4j}; every other
 * package is internal. The native libraries are loaded from this module, so grant it native access:
 * {@code --enable-native-access=io.diffusion4j} (or ALL-UNNAMED on the class path).
 */
module io.diffusion4j {
    requires java.desktop; // PNG encoding and decoding (javax.imageio) for samples, grids and image datasets
    exports io.diffusion4j;
}
