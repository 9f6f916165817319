package io.diffusion4j.selftest;

import io.diffusion4j.Precision;

/**
 * How far attention computed by a tensor-core variant may move from the exact result because it rounds its
 * inputs: absolute bounds on every element of out, lse, dq, dk and dv, on top of the FP32 bounds of the
 * computation (LinearAttentionReference). The kernels (variant v2 of the CUDA backend) round q, k, v and dout
 * to the format, whose unit roundoff e satisfies (1 + e)^2 = 1 + {@link Precision#productError()}; round the
 * probabilities P before P V and P^T dout and the score gradients dS before dS k and dS^T q; accumulate in FP32;
 * and keep the softmax sum l, Dsum = rowsum(dout * out), the exponentials and the lse in FP32 from unrounded
 * values. With pe = productError and sigma = max |scale| sum_d |q k| (the largest sum of a score's absolute
 * terms), every score moves by at most delta = pe sigma, and, first-order terms exact where they compound:
 * <ul>
 *   <li>softmax weights p = exp(s_j) / sum exp(s) by a factor within [e^-2delta, e^2delta]; rounding the
 *       weight and v adds (1 + e)^2 = 1 + pe; out is a convex combination of v, so
 *       |d out| <= (e^2delta (1 + pe) - 1) max|v|;
 *   <li>lse = log sum exp(s) by at most delta (l sums the unrounded weights);
 *   <li>in the backward, with out and lse given: P = exp(s - lse) within a factor e^delta, rounded: rho =
 *       e^delta (1 + e) - 1; dv = sum_i P dout within ((1 + rho)(1 + e) - 1) L max|dout| (sum_i p <= L);
 *   <li>dP = dout . v within pe D max|dout| max|v|; with pi = D max|dout| (max|v| + max|out|) bounding
 *       |dP - Dsum|, the rounded dS = P (dP - Dsum) differs from the exact one by at most p Delta_S,
 *       Delta_S = (e^delta (1 + e) - 1) pi + e^delta (1 + e) pe D max|dout| max|v|, and is at most p A_S,
 *       A_S = e^delta (1 + e) (pi + pe D max|dout| max|v|);
 *   <li>dq = scale sum_j dS k (k rounded: e) within |scale| max|k| (Delta_S + e A_S) (sum_j p = 1), and dk =
 *       scale sum_i dS q within |scale| max|q| L (Delta_S + e A_S).
 * </ul>
 * At FP32 every bound is 0.
 */
public final class AttentionRounding {
    private AttentionRounding() {}

    /** The absolute bounds of each output. */
    public record Bounds(double out, double lse, double dq, double dk, double dv) {}

    /**
     * The bounds at {@code precision}.
     *
     * @param sigma max over query and key tokens of |scale| sum_d |q k|
     * @param tokens the sequence length L
     * @param headDim D
     * @param scale the scores' scale
     * @param qMax max|q|, and likewise for k, v, the forward's out (given to the backward) and dout
     */
    public static Bounds of(Precision precision, double sigma, int tokens, int headDim, double scale, double qMax,
                            double kMax, double vMax, double outMax, double doutMax) {
        double pe = precision.productError(), e = Math.sqrt(1 + pe) - 1, delta = pe * sigma;
        double out = Math.expm1(2 * delta) * (1 + pe) + pe;
        double rho = Math.expm1(delta) * (1 + e) + e;
        double dv = (rho + e + rho * e) * tokens * doutMax;
        double grow = Math.exp(delta) * (1 + e), dpError = pe * headDim * doutMax * vMax;
        double pi = headDim * doutMax * (vMax + outMax);
        double deltaS = (grow - 1) * pi + grow * dpError, aS = grow * (pi + dpError);
        double perP = deltaS + e * aS, c = Math.abs(scale);
        return new Bounds(out * vMax, delta, c * kMax * perP, c * qMax * tokens * perP, dv);
    }
}
