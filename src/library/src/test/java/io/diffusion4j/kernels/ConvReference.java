package io.diffusion4j.kernels;

import io.diffusion4j.kernels.ConvKernels.Conv2dSpec;

/**
 * float64 reference of the conv2d family, written from the definition in d4j.h (and diffusers'
 * nn.Conv2d / F.interpolate(nearest) / F.pad) as plain loops, independently of the kernels: the
 * forward materialises the padded, upsampled input; the backward is the adjoint of those loops
 * (scatter), where the kernels gather. Every result comes with a scale: the sum of the absolute
 * values of the terms a float32 kernel adds for that element, which bounds its rounding error.
 */
final class ConvReference {
    private ConvReference() {}

    /** A problem: x [n, h, w, cIn] and weight [k, k, cIn, cOut]. */
    record Problem(Conv2dSpec spec, int n, int h, int w, int cIn, int cOut) {
        int k() {
            return spec.kernelSize();
        }

        int hIn() {
            return spec.upsample2x() ? 2 * h : h;
        }

        int wIn() {
            return spec.upsample2x() ? 2 * w : w;
        }

        int hOut() {
            return (hIn() + spec.padTop() + spec.padBottom() - k()) / spec.stride() + 1;
        }

        int wOut() {
            return (wIn() + spec.padLeft() + spec.padRight() - k()) / spec.stride() + 1;
        }

        int xSize() {
            return n * h * w * cIn;
        }

        int wSize() {
            return k() * k() * cIn * cOut;
        }

        int ySize() {
            return n * hOut() * wOut() * cOut;
        }

        long[] xShape() {
            return new long[] {n, h, w, cIn};
        }

        long[] wShape() {
            return new long[] {k(), k(), cIn, cOut};
        }

        long[] yShape() {
            return new long[] {n, hOut(), wOut(), cOut};
        }

        /** Terms summed per forward output element (besides the bias). */
        int forwardTerms() {
            return k() * k() * cIn;
        }

        /** Terms summed per dx element: every (child, tap, co). */
        int dxTerms() {
            return (spec.upsample2x() ? 4 : 1) * k() * k() * cOut;
        }

        /** Terms summed per dweight / dbias element: every output pixel. */
        int dwTerms() {
            return n * hOut() * wOut();
        }

        @Override
        public String toString() {
            return String.format("k=%d s=%d pad(t,l,b,r)=(%d,%d,%d,%d)%s x=[%d,%d,%d,%d] cOut=%d", k(), spec.stride(),
                    spec.padTop(), spec.padLeft(), spec.padBottom(), spec.padRight(),
                    spec.upsample2x() ? " up2x" : "", n, h, w, cIn, cOut);
        }
    }

    record Result(double[] value, double[] scale) {}

    static double[] d(float[] v) {
        if (v == null) return null;
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) o[i] = v[i];
        return o;
    }

    record Grads(Result dx, Result dw, Result db) {}

    /** The padded (and upsampled) conv input as a dense [n][hIn + pt + pb][wIn + pl + pr][cIn] array. */
    static double[][][][] paddedInput(Problem p, double[] x) {
        Conv2dSpec s = p.spec();
        int hp = p.hIn() + s.padTop() + s.padBottom(), wp = p.wIn() + s.padLeft() + s.padRight();
        double[][][][] u = new double[p.n()][hp][wp][p.cIn()];
        for (int b = 0; b < p.n(); b++)
            for (int i = 0; i < p.hIn(); i++)
                for (int j = 0; j < p.wIn(); j++) {
                    int si = s.upsample2x() ? i / 2 : i, sj = s.upsample2x() ? j / 2 : j; // nearest: floor(i / 2)
                    for (int c = 0; c < p.cIn(); c++)
                        u[b][i + s.padTop()][j + s.padLeft()][c] = x[((b * p.h() + si) * p.w() + sj) * p.cIn() + c];
                }
        return u;
    }

    static Result forward(Problem p, double[] x, double[] w, double[] bias) {
        double[][][][] u = paddedInput(p, x);
        int k = p.k(), st = p.spec().stride(), ho = p.hOut(), wo = p.wOut();
        double[] y = new double[p.ySize()], sc = new double[p.ySize()];
        for (int b = 0; b < p.n(); b++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++)
                    for (int co = 0; co < p.cOut(); co++) {
                        double acc = bias == null ? 0 : bias[co], mag = bias == null ? 0 : Math.abs(bias[co]);
                        for (int kh = 0; kh < k; kh++)
                            for (int kw = 0; kw < k; kw++)
                                for (int ci = 0; ci < p.cIn(); ci++) {
                                    double t = u[b][oh * st + kh][ow * st + kw][ci]
                                            * w[((kh * k + kw) * p.cIn() + ci) * p.cOut() + co];
                                    acc += t;
                                    mag += Math.abs(t);
                                }
                        int idx = ((b * ho + oh) * wo + ow) * p.cOut() + co;
                        y[idx] = acc;
                        sc[idx] = mag;
                    }
        return new Result(y, sc);
    }

    /** Analytic backward: the adjoint of {@link #forward}, as scatters through the padding and the upsampling. */
    static Grads backward(Problem p, double[] x, double[] w, double[] dy) {
        Conv2dSpec s = p.spec();
        double[][][][] u = paddedInput(p, x);
        int k = p.k(), st = s.stride(), ho = p.hOut(), wo = p.wOut();
        int hp = p.hIn() + s.padTop() + s.padBottom(), wp = p.wIn() + s.padLeft() + s.padRight();
        double[][][][] du = new double[p.n()][hp][wp][p.cIn()], duMag = new double[p.n()][hp][wp][p.cIn()];
        double[] dw = new double[p.wSize()], dwMag = new double[p.wSize()];
        double[] db = new double[p.cOut()], dbMag = new double[p.cOut()];
        for (int b = 0; b < p.n(); b++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++)
                    for (int co = 0; co < p.cOut(); co++) {
                        double g = dy[((b * ho + oh) * wo + ow) * p.cOut() + co];
                        db[co] += g;
                        dbMag[co] += Math.abs(g);
                        for (int kh = 0; kh < k; kh++)
                            for (int kw = 0; kw < k; kw++)
                                for (int ci = 0; ci < p.cIn(); ci++) {
                                    int wi = ((kh * k + kw) * p.cIn() + ci) * p.cOut() + co;
                                    double td = g * w[wi], tw = g * u[b][oh * st + kh][ow * st + kw][ci];
                                    du[b][oh * st + kh][ow * st + kw][ci] += td;
                                    duMag[b][oh * st + kh][ow * st + kw][ci] += Math.abs(td);
                                    dw[wi] += tw;
                                    dwMag[wi] += Math.abs(tw);
                                }
                    }
        // drop the padding, then sum the upsampled copies into the small input
        double[] dx = new double[p.xSize()], dxMag = new double[p.xSize()];
        for (int b = 0; b < p.n(); b++)
            for (int i = 0; i < p.hIn(); i++)
                for (int j = 0; j < p.wIn(); j++) {
                    int si = s.upsample2x() ? i / 2 : i, sj = s.upsample2x() ? j / 2 : j;
                    for (int c = 0; c < p.cIn(); c++) {
                        int idx = ((b * p.h() + si) * p.w() + sj) * p.cIn() + c;
                        dx[idx] += du[b][i + s.padTop()][j + s.padLeft()][c];
                        dxMag[idx] += duMag[b][i + s.padTop()][j + s.padLeft()][c];
                    }
                }
        return new Grads(new Result(dx, dxMag), new Result(dw, dwMag), new Result(db, dbMag));
    }

    /** L = sum(y * g) in float64, for finite differences. */
    static double loss(Problem p, double[] x, double[] w, double[] bias, double[] g) {
        double[] y = forward(p, x, w, bias).value();
        double l = 0;
        for (int i = 0; i < y.length; i++) l += y[i] * g[i];
        return l;
    }

    /** OIHW -> HWIO written independently of ConvKernels (by coordinates, not by flat index loops). */
    static float[] hwioAt(float[] oihw, int cOut, int cIn, int k) {
        float[] out = new float[oihw.length];
        int idx = 0;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                for (int c = 0; c < cIn; c++)
                    for (int o = 0; o < cOut; o++) out[idx++] = oihw[o * cIn * k * k + c * k * k + i * k + j];
        return out;
    }
}
