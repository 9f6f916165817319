// The conv2d family on the CPU: forward, dX and dW of a k x k convolution
// (k = 1 or 3, stride 1 or 2, optional nearest-2x upsampled input), NHWC
// activations and HWIO weights, as implicit GEMMs.
//
// Forward and dX share one register-blocked micro-kernel: a tile of kMR
// output rows (pixels) x kNR output columns (channels), accumulated over
// "segments", each a (row pointers, weight slab) pair:
//   forward: rows are input pixels under one kernel tap (a C_in vector each),
//            the slab is weight[tap] in panels of kNR output channels (packed,
//            or read in place when C_out % kNR == 0 and the call is small);
//            with upsample2x (stride 1) the output is computed by phase (oh % 2,
//            ow % 2), each phase with at most 2 x 2 combined taps instead of 9
//            (dX and dW of those convs too: 16 combined segments instead of 36);
//   dX:      rows are dy pixels reached through one tap (a C_out vector each),
//            the slab is weight[tap] transposed and packed by kNR input channels;
//            with upsample2x the 4 upsampled children of a pixel add 4x the segments;
//            with stride 2 the input pixels are tiled by parity class, each
//            class with only the taps that reach it.
// A tap that falls into the zero padding points at a zero row, so the inner
// loops carry no branches. With few channels (conv_in forward, conv_out dX)
// the tile's rows of all taps are gathered into one segment of taps * C
// values. Where the single output channel would waste 15 of 16 columns
// (C_out = 1 forward, C_in = 1 dX) each pixel is one dot product instead.
//
// Where C_out (forward) or C_in (dX) has two or more panels, micro_kernel_2
// computes two panels per tile, so each broadcast row value feeds two vectors.
//
// dW is a reduction over all N * H_out * W_out pixels. Tasks are (taps, range of
// kRange pixels, group of input channels): without upsampling a task takes all
// the taps, so a chunk's dy rows and its (overlapping) x rows are reused from
// cache by every tap; with upsampling one tap. A task walks its range in chunks
// of kChunk pixels; without upsampling the kernels read the x rows of a chunk
// under a tap in place, run by run (consecutive pixels of one output row have
// evenly spaced x rows; rows in the padding are skipped), else it gathers them
// into a contiguous buffer once; a 12 x 32 (AVX-512 only), 6 x 32 or 6 x 16
// micro-kernel runs over the chunk for every output panel (in place, the last
// channel tile overlaps the one before instead of being copied); each chunk sum
// (float registers, pixel order) is added into
// the task's float64 partial, and the partials of the ranges are added in
// range order at the end: the result depends on the range and chunk boundaries
// only (fixed by the shape), never on the thread count, and the float64 carry
// keeps the error at about kChunk u instead of N H W u. With few input
// channels (conv_in) the rows are the (tap, ci) pairs of one gather; with
// C_out = 1 (conv_out) an axpy over C_in per tap.
//
// Every output element is produced by exactly one task with a fixed
// summation order, so results are bit-identical for any number of threads.
//
// This file picks the path for a shape; the paths are in kernels_conv2d_forward.cpp,
// kernels_conv2d_dx.cpp and kernels_conv2d_dw.cpp, the micro-kernels and shared tile helpers in
// conv2d_tiles.h / kernels_conv2d_tiles.cpp. Measurements: benchmarks/results/cpu-profile.md.
#include "conv2d_tiles.h"

namespace d4j::cpu {

using conv::Geom;

namespace {

constexpr int64_t kPhaseMin = 512;     // upsample2x dX by output phase (combined taps) from this many output pixels
constexpr int64_t kPhaseMinDw = 2048;  // the same for dW (its per-phase setup costs more at batch 1)

// An upsample2x conv that the phase paths (combined taps) can take.
bool by_phase(const Geom &g) { return g.upsample2x && g.stride == 1 && g.k <= 3; }

// The Winograd tile (2 or 4) for a conv, 0 for the direct paths. Decided by the shape only, never the batch, so an
// image gets the same bits alone or in a batch. From measurements of the cifar10 and Fashion-MNIST models' shapes
// at batches 1, 8 and 64 (docs/cpu-inference.md, benchmarks/results/conv-forward-cifar10.md): the transforms cost
// O(C_in + C_out) per tile point and the GEMMs O(C_in C_out), so below 128 channels on either side (the
// Fashion-MNIST model) the direct paths are as fast or faster; F(4x4) from 28 x 28 (at 16 x 16 its transformed
// weights, 4x the weights' size, cost more memory traffic at batch 1 than its fewer multiplies save); F(2x2)
// down to 8 x 8; at 4 x 4 the direct path (the transforms of 4 tiles do not pay at batch 1).
int winograd_tile(const Geom &g) {
    if (!conv::winograd_applies(g) || g.c_in < 128 || g.c_out < 128) return 0;
    const int64_t px = (int64_t)g.h * g.w;
    if (px >= 784) return 4;
    return px >= 64 ? 2 : 0;
}

// Prepared weights (d4j_conv2d_prepare): a header of kPreparedHeader floats naming the path and geometry they
// were made for, then the path's own form of the weights, which a forward would otherwise compute on every call:
// forward_upsample's combined taps (packed for its micro-kernels), forward_winograd's U. Paths that read the
// weights in place (direct, one-channel) have none. The same values as computed per call, so the same bits.
constexpr int64_t kPreparedHeader = 16;  // 64 bytes: the form after it keeps the buffer's alignment
constexpr int32_t kPreparedMagic = 0x44344a50;

// The prepared path of a geometry, as forward_with dispatches: 1 the phase path, 2 or 4 the Winograd tile, 0 none.
int prepared_path(const Geom &g) {
    if (g.c_out == 1) return 0;
    if (by_phase(g)) return 1;
    return winograd_tile(g);
}

void prepared_header(const Geom &g, int32_t (&hdr)[kPreparedHeader]) {
    const int32_t v[] = {kPreparedMagic, prepared_path(g), g.h, g.w, g.c_in, g.c_out, g.k, g.stride,
                         g.pad_top, g.pad_left, g.upsample2x, g.h_out, g.w_out};
    std::fill(std::begin(hdr), std::end(hdr), 0);
    std::copy(std::begin(v), std::end(v), hdr);
}

d4j_status forward_with(void *state, const Geom &g, const float *x, const float *weight, const float *prepared,
                        const float *bias, float *y) {
    ThreadPool &pool = pool_of(state);
    if (g.c_out == 1) conv::forward_single(pool, g, x, weight, bias, y);
    // Always by phase, whatever the batch: the combined taps round differently from the 9-tap path, and
    // a forward must give an image the same bits whatever batch it is computed in (samplers, the server).
    else if (by_phase(g)) conv::forward_upsample(pool, g, x, weight, prepared, bias, y);
    else if (const int tile = winograd_tile(g)) conv::forward_winograd(pool, g, tile, x, weight, prepared, bias, y);
    else conv::forward_tiled(pool, g, x, weight, bias, y);
    return D4J_OK;
}

// With g.prepared the weight argument is a prepared buffer: its form, after the header is checked.
d4j_status split_prepared(const Geom &g, const float *&weight, const float *&prepared) {
    prepared = nullptr;
    if (!g.prepared) return D4J_OK;
    int32_t want[kPreparedHeader], got[kPreparedHeader];
    prepared_header(g, want);
    std::memcpy(got, weight, sizeof got);
    if (want[1] == 0 || std::memcmp(want, got, sizeof want) != 0) {
        g_host->set_error("conv2d: the prepared weights were made for another geometry (made for %dx%d, c_in %d, "
                          "c_out %d, kernel %d, stride %d, upsample2x %d; this call is %dx%d, c_in %d, c_out %d, "
                          "kernel %d, stride %d, upsample2x %d)",
                          got[2], got[3], got[4], got[5], got[6], got[7], got[10], g.h, g.w, g.c_in, g.c_out, g.k,
                          g.stride, g.upsample2x);
        return D4J_ERR_INVALID_ARGUMENT;
    }
    prepared = weight + kPreparedHeader;
    weight = nullptr;
    return D4J_OK;
}

}  // namespace

int64_t conv2d_prepared_floats(void *, const Geom *gp) {
    const Geom &g = *gp;
    switch (prepared_path(g)) {
    case 1: return kPreparedHeader + conv::upsample_prepared_floats(g);
    case 2: case 4: return kPreparedHeader + conv::winograd_prepared_floats(g, prepared_path(g));
    default: return 0;
    }
}

d4j_status conv2d_prepare(void *state, const Geom *gp, const float *weight, float *prepared) {
    const Geom &g = *gp;
    const int path = prepared_path(g);
    int32_t hdr[kPreparedHeader];
    prepared_header(g, hdr);
    std::memcpy(prepared, hdr, sizeof hdr);
    float *form = prepared + kPreparedHeader;
    if (path == 1) conv::pack_phase_panels(pool_of(state), g, conv::TapMatrix{weight, g.c_in, g.c_out, g.c_out, 1}, form);
    else conv::winograd_prepare(pool_of(state), g, path, weight, form);  // the front asks for a path first
    return D4J_OK;
}

d4j_status conv2d_forward(void *state, const Geom *gp, const float *x, const float *weight, const float *bias,
                          float *y) {
    const float *prepared;
    if (const d4j_status st = split_prepared(*gp, weight, prepared); st != D4J_OK) return st;
    return forward_with(state, *gp, x, weight, prepared, bias, y);
}

// The normalised input is materialised and convolved: the CPU paths read each
// input row many times (once per tap and output panel), so normalising it once
// costs less than normalising on every read, and the result is bit for bit that
// of group_norm_forward then conv2d_forward. The buffer is this thread's, kept
// for its next call (a fresh allocation of this size costs page faults on every call).
d4j_status group_norm_conv2d_forward(void *state, const Geom *gp, const d4j_gn_input *gn, const float *x,
                                     const float *weight, const float *bias, float *y) {
    const Geom g = *gp;
    const float *prepared;
    if (const d4j_status st = split_prepared(g, weight, prepared); st != D4J_OK) return st;
    const int64_t count = (int64_t)g.n * g.h * g.w * g.c_in;
    thread_local std::vector<float> u;
    if (u.size() < (size_t)count) {
        u.clear();
        u.shrink_to_fit();
        u.resize((size_t)count);
    }
    group_norm_apply(state, gn, x, g.n, (int64_t)g.h * g.w, g.c_in, u.data());
    return forward_with(state, g, u.data(), weight, prepared, bias, y);
}

d4j_status conv2d_backward(void *state, const Geom *gp, const float *x, const float *weight, const float *dy,
                           float *dx, float *dweight, float *dbias) {
    const Geom g = *gp;
    ThreadPool &pool = pool_of(state);
    if (dx) {
        if (g.c_in == 1) conv::dx_single(pool, g, weight, dy, dx);
        else if (by_phase(g) && (int64_t)g.n * g.h * g.w * 4 >= kPhaseMin) conv::dx_upsample(pool, g, weight, dy, dx);
        else conv::dx_tiled(pool, g, weight, dy, dx);
    }
    if (dweight) {
        const int taps = g.k * g.k;
        if (g.c_out == 1) conv::dw_single(pool, g, x, dy, dweight);
        else if (taps > 1 && taps * g.c_in <= conv::kGatherMax) conv::dw_gather(pool, g, x, dy, dweight);
        else if (by_phase(g) && (int64_t)g.n * g.h_out * g.w_out >= kPhaseMinDw) conv::dw_upsample(pool, g, x, dy, dweight);
        else conv::dw_tiled(pool, g, x, dy, dweight);
    }
    if (dbias) conv::db_sum(g, dy, dbias);
    return D4J_OK;
}

}  // namespace d4j::cpu
