package io.diffusion4j.schedule;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

class NoiseScheduleTest {

    private static final double EPS = 1e-14;

    private static void assertClose(double[] expected, double[] actual, double relTol) {
        assertEquals(expected.length, actual.length, "length");
        for (int i = 0; i < expected.length; i++) {
            double tol = relTol * Math.max(Math.abs(expected[i]), Double.MIN_NORMAL);
            assertEquals(expected[i], actual[i], tol, "index " + i);
        }
    }

    private static void assertMessageContains(Executable call, String... parts) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message '" + e.getMessage() + "' lacks '" + p + "'");
        }
    }

    /** The diffusers default (beta_start, beta_end) used with each schedule in practice. */
    private static NoiseSchedule typical(BetaSchedule b, int t) {
        return switch (b) {
            case SCALED_LINEAR -> NoiseSchedule.of(b, t, 0.00085, 0.012);
            default -> NoiseSchedule.of(b, t, 0.0001, 0.02);
        };
    }

    // ---- T = 3 linear 0.1 .. 0.3 worked by hand -------------------------------------------------

    @Test
    void smallLinearScheduleByHand() {
        NoiseSchedule s = NoiseSchedule.of(BetaSchedule.LINEAR, 3, 0.1, 0.3);
        assertEquals(3, s.numTrainTimesteps());
        assertSame(BetaSchedule.LINEAR, s.betaSchedule());
        assertEquals(0.1, s.betaStart());
        assertEquals(0.3, s.betaEnd());

        // betas 0.1, 0.2, 0.3; alphas 0.9, 0.8, 0.7
        assertClose(new double[] {0.1, 0.2, 0.3}, s.betas(), EPS);
        assertClose(new double[] {0.9, 0.8, 0.7}, s.alphas(), EPS);
        // ab: 0.9, 0.9*0.8 = 0.72, 0.72*0.7 = 0.504
        assertClose(new double[] {0.9, 0.72, 0.504}, s.alphasCumprod(), EPS);
        assertClose(new double[] {1.0, 0.9, 0.72}, s.alphasCumprodPrev(), EPS);
        assertClose(new double[] {Math.sqrt(0.9), Math.sqrt(0.72), Math.sqrt(0.504)}, s.sqrtAlphasCumprod(), EPS);
        // 1 - ab: 0.1, 0.28, 0.496
        assertClose(new double[] {Math.sqrt(0.1), Math.sqrt(0.28), Math.sqrt(0.496)},
                s.sqrtOneMinusAlphasCumprod(), EPS);
        assertClose(new double[] {Math.log(0.1), Math.log(0.28), Math.log(0.496)},
                s.logOneMinusAlphasCumprod(), EPS);
        // 1/ab: 10/9, 25/18, 125/63
        assertClose(new double[] {Math.sqrt(10.0 / 9), Math.sqrt(25.0 / 18), Math.sqrt(125.0 / 63)},
                s.sqrtRecipAlphasCumprod(), EPS);
        // 1/ab - 1: 1/9, 7/18, 62/63
        assertClose(new double[] {1.0 / 3, Math.sqrt(7.0 / 18), Math.sqrt(62.0 / 63)},
                s.sqrtRecipm1AlphasCumprod(), EPS);

        // posterior variance beta (1 - ab_prev) / (1 - ab):
        //   t=0: 0.1 * 0 / 0.1 = 0
        //   t=1: 0.2 * 0.1 / 0.28 = 0.02 / 0.28 = 1/14
        //   t=2: 0.3 * 0.28 / 0.496 = 0.084 / 0.496 = 21/124
        assertClose(new double[] {0.0, 1.0 / 14, 21.0 / 124}, s.posteriorVariance(), EPS);
        assertEquals(0.0, s.posteriorVariance()[0]);
        // log with element 0 replaced by element 1
        assertClose(new double[] {-Math.log(14), -Math.log(14), Math.log(21.0 / 124)},
                s.posteriorLogVarianceClipped(), EPS);

        // coef1 = beta sqrt(ab_prev) / (1 - ab):
        //   t=0: 0.1 * 1 / 0.1 = 1
        //   t=1: 0.2 sqrt(0.9) / 0.28 = (5/7) sqrt(0.9)
        //   t=2: 0.3 sqrt(0.72) / 0.496 = (75/124) sqrt(0.72)
        assertClose(new double[] {1.0, 5.0 / 7 * Math.sqrt(0.9), 75.0 / 124 * Math.sqrt(0.72)},
                s.posteriorMeanCoef1(), EPS);
        // coef2 = (1 - ab_prev) sqrt(alpha) / (1 - ab):
        //   t=0: 0
        //   t=1: 0.1 sqrt(0.8) / 0.28 = (5/14) sqrt(0.8)
        //   t=2: 0.28 sqrt(0.7) / 0.496 = (35/62) sqrt(0.7)
        assertClose(new double[] {0.0, 5.0 / 14 * Math.sqrt(0.8), 35.0 / 62 * Math.sqrt(0.7)},
                s.posteriorMeanCoef2(), EPS);

        // snr = ab / (1 - ab): 9, 0.72/0.28 = 18/7, 0.504/0.496 = 63/62
        assertClose(new double[] {9.0, 18.0 / 7, 63.0 / 62}, s.snr(), EPS);

        // scalar accessors
        assertEquals(0.72, s.alphaCumprod(1), EPS);
        assertEquals(0.72, s.alphaCumprodPrev(2), EPS);
        assertEquals(1.0, s.alphaCumprodPrev(0));
        assertEquals(0.3, s.beta(2), EPS);
        assertEquals(0.8, s.alpha(1), EPS);
    }

    @Test
    void minSnrWeightsByHand() {
        NoiseSchedule s = NoiseSchedule.of(BetaSchedule.LINEAR, 3, 0.1, 0.3);
        // snr = 9, 18/7, 63/62 ; gamma = 5 -> min = 5, 18/7, 63/62
        // epsilon: min/snr = 5/9, 1, 1
        assertClose(new double[] {5.0 / 9, 1.0, 1.0}, s.minSnrWeights(5.0, PredictionType.EPSILON), EPS);
        // sample: min = 5, 18/7, 63/62
        assertClose(new double[] {5.0, 18.0 / 7, 63.0 / 62}, s.minSnrWeights(5.0, PredictionType.SAMPLE), EPS);
        // v: min/(snr+1) = 5/10, (18/7)/(25/7) = 18/25, (63/62)/(125/62) = 63/125
        assertClose(new double[] {0.5, 0.72, 0.504}, s.minSnrWeights(5.0, PredictionType.V_PREDICTION), EPS);
        // gamma = 1 clamps everything: eps 1/9, 7/18, 62/63
        assertClose(new double[] {1.0 / 9, 7.0 / 18, 62.0 / 63}, s.minSnrWeights(1.0, PredictionType.EPSILON), EPS);
    }

    @Test
    void singleTimestep() {
        NoiseSchedule s = NoiseSchedule.of(BetaSchedule.LINEAR, 1, 0.25, 0.5);
        assertArrayEquals(new double[] {0.25}, s.betas());
        assertArrayEquals(new double[] {0.75}, s.alphasCumprod());
        assertArrayEquals(new double[] {1.0}, s.alphasCumprodPrev());
        assertArrayEquals(new double[] {0.0}, s.posteriorVariance());
        // T = 1: log(max(0, 1e-20))
        assertEquals(Math.log(1e-20), s.posteriorLogVarianceClipped()[0], 1e-12);
        assertEquals(-46.051701859880914, s.posteriorLogVarianceClipped()[0], 1e-12);
        assertArrayEquals(new double[] {1.0}, s.posteriorMeanCoef1());
        assertArrayEquals(new double[] {0.0}, s.posteriorMeanCoef2());
        for (BetaSchedule b : BetaSchedule.values()) {
            assertEquals(1, typical(b, 1).numTrainTimesteps());
        }
    }

    @Test
    void twoTimestepsClipsLogVariance() {
        // betas 0.5, 0.5: ab = 0.5, 0.25; pv[1] = 0.5 * 0.5 / 0.75 = 1/3
        NoiseSchedule s = NoiseSchedule.fromBetas(new double[] {0.5, 0.5});
        assertClose(new double[] {0.0, 1.0 / 3}, s.posteriorVariance(), EPS);
        assertClose(new double[] {-Math.log(3), -Math.log(3)}, s.posteriorLogVarianceClipped(), EPS);
    }

    // ---- reference values from plain-python float64 ---------------------------------------------

    @Test
    void diffusersDefaultLinear() {
        NoiseSchedule s = NoiseSchedule.defaults();
        assertSame(BetaSchedule.LINEAR, s.betaSchedule());
        assertEquals(1000, s.numTrainTimesteps());
        assertEquals(0.0001, s.betaStart());
        assertEquals(0.02, s.betaEnd());
        double[] ab = s.alphasCumprod();
        // python float64 running product; the exact rational product is 4.0358297653756835e-05
        assertEquals(4.0358297653756754e-05, ab[999], 1e-12 * 4.04e-5);
        assertEquals(4.035e-5, ab[999], 0.001e-5);
        assertEquals(0.07858724288177821, ab[499], 1e-12);
        assertEquals(1 - 0.0001, ab[0], 1e-16);
    }

    @Test
    void otherSchedulesAtT1000() {
        // python, same formulas, running product of (1 - beta)
        assertEquals(0.004660098513077234,
                NoiseSchedule.of(BetaSchedule.SCALED_LINEAR, 1000, 0.00085, 0.012).alphaCumprod(999), 1e-15);
        assertEquals(3.968181990533219e-05,
                NoiseSchedule.of(BetaSchedule.SIGMOID, 1000, 0.0001, 0.02).alphaCumprod(999), 1e-17);

        NoiseSchedule c = NoiseSchedule.of(BetaSchedule.SQUAREDCOS_CAP_V2, 1000, 0.0001, 0.02);
        assertEquals(0.999958715775178, c.alphaCumprod(0), 1e-14);
        assertEquals(0.4938435904406382, c.alphaCumprod(499), 1e-12);
        assertEquals(2.4287669070348544e-06, c.alphaCumprod(998), 1e-17);
        assertEquals(2.4287669070348567e-09, c.alphaCumprod(999), 1e-20);
        assertEquals(0.7499993929011166, c.beta(998), 1e-12);
        assertEquals(0.999, c.beta(999));
        // independent check: below the cap the product telescopes to f((t+1)/T) / f(0)
        double f0 = Math.pow(Math.cos(0.008 / 1.008 * Math.PI / 2), 2);
        for (int t = 0; t < 999; t += 37) {
            double ft = Math.pow(Math.cos(((t + 1) / 1000.0 + 0.008) / 1.008 * Math.PI / 2), 2);
            assertEquals(ft / f0, c.alphaCumprod(t), 1e-11 * (ft / f0), "t=" + t);
        }
    }

    // ---- properties for every schedule ----------------------------------------------------------

    @ParameterizedTest
    @EnumSource(BetaSchedule.class)
    void propertiesAtT1000(BetaSchedule b) {
        NoiseSchedule s = typical(b, 1000);
        int n = s.numTrainTimesteps();
        double[] beta = s.betas();
        double[] alpha = s.alphas();
        double[] ab = s.alphasCumprod();
        double[] abPrev = s.alphasCumprodPrev();
        double[] sab = s.sqrtAlphasCumprod();
        double[] s1m = s.sqrtOneMinusAlphasCumprod();
        double[] l1m = s.logOneMinusAlphasCumprod();
        double[] sr = s.sqrtRecipAlphasCumprod();
        double[] srm1 = s.sqrtRecipm1AlphasCumprod();
        double[] pv = s.posteriorVariance();
        double[] plv = s.posteriorLogVarianceClipped();
        double[] c1 = s.posteriorMeanCoef1();
        double[] c2 = s.posteriorMeanCoef2();
        double[] snr = s.snr();

        assertEquals(1.0, abPrev[0]);
        assertEquals(0.0, pv[0]);
        assertEquals(1.0, c1[0], 1e-12);
        assertEquals(0.0, c2[0]);
        assertEquals(plv[1], plv[0]);
        for (int t = 0; t < n; t++) {
            String at = b + " t=" + t;
            assertTrue(beta[t] > 0 && beta[t] < 1, at);
            assertEquals(1.0, alpha[t] + beta[t], 1e-15, at);
            assertTrue(ab[t] > 0 && ab[t] < 1, at);
            if (t > 0) {
                assertTrue(ab[t] < ab[t - 1], at);
                assertEquals(ab[t - 1], abPrev[t], at); // exact shift
                assertEquals(alpha[t], ab[t] / ab[t - 1], 1e-12, at);
                assertTrue(pv[t] > 0 && pv[t] < beta[t], at);
                assertEquals(Math.log(pv[t]), plv[t], 1e-12, at);
            }
            assertEquals(1.0, sab[t] * sab[t] + s1m[t] * s1m[t], 1e-14, at);
            assertEquals(1.0 - ab[t], Math.exp(l1m[t]), 1e-14, at);
            assertEquals(1.0, sr[t] * sab[t], 1e-14, at);
            assertEquals(1.0 / snr[t], srm1[t] * srm1[t], 1e-12 / snr[t], at);
            assertEquals(ab[t] / (1 - ab[t]), snr[t], 1e-12 * snr[t], at);

            // Marginal consistency of q(x_{t-1} | x_t, x0): with x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps,
            //   E[mu] = (c1 + c2 sqrt(ab_t)) x0 must equal E[x_{t-1} | x0] = sqrt(ab_{t-1}) x0, and
            //   Var(mu) + posterior variance = c2^2 (1 - ab_t) + pv_t must equal 1 - ab_{t-1}.
            // (Algebra: beta sqrt(ab_p) + (1-ab_p) sqrt(alpha) sqrt(ab_t) = sqrt(ab_p) (beta + alpha - ab_t).)
            double abp = t == 0 ? 1.0 : ab[t - 1];
            assertEquals(Math.sqrt(abp), c1[t] + c2[t] * sab[t], 1e-12, at);
            assertEquals(1.0 - abp, c2[t] * c2[t] * (1.0 - ab[t]) + pv[t], 1e-12, at);
        }

        // min-SNR weights: epsilon weight is 1 where snr <= gamma and gamma/snr otherwise
        double[] w = s.minSnrWeights(5.0, PredictionType.EPSILON);
        double[] wv = s.minSnrWeights(5.0, PredictionType.V_PREDICTION);
        double[] wx = s.minSnrWeights(5.0, PredictionType.SAMPLE);
        for (int t = 0; t < n; t++) {
            double expected = snr[t] <= 5.0 ? 1.0 : 5.0 / snr[t];
            assertEquals(expected, w[t], 1e-12, b + " t=" + t);
            assertTrue(wx[t] <= 5.0 && wx[t] > 0, b + " t=" + t);
            // below gamma, v weight = snr/(snr+1) = ab
            if (snr[t] <= 5.0) {
                assertEquals(ab[t], wv[t], 1e-12, b + " t=" + t);
            }
        }
    }

    // ---- fromBetas / copies ---------------------------------------------------------------------

    @Test
    void fromBetasCopiesAndMatchesOf() {
        double[] in = {0.1, 0.2, 0.3};
        NoiseSchedule s = NoiseSchedule.fromBetas(in);
        in[0] = 0.9;
        assertNull(s.betaSchedule());
        assertEquals(0.1, s.betaStart());
        assertEquals(0.3, s.betaEnd());
        assertArrayEquals(new double[] {0.1, 0.2, 0.3}, s.betas());
        assertArrayEquals(NoiseSchedule.of(BetaSchedule.LINEAR, 3, 0.1, 0.3).alphasCumprod(), s.alphasCumprod());
        assertTrue(s.toString().contains("T=3"), s.toString());
    }

    @Test
    void accessorsReturnDefensiveCopies() {
        NoiseSchedule s = NoiseSchedule.of(BetaSchedule.LINEAR, 3, 0.1, 0.3);
        s.betas()[0] = 0.5;
        s.alphasCumprod()[1] = 0.5;
        s.posteriorVariance()[1] = 0.5;
        s.posteriorMeanCoef1()[1] = 0.5;
        assertEquals(0.1, s.betas()[0]);
        assertEquals(0.72, s.alphasCumprod()[1], EPS);
        assertEquals(1.0 / 14, s.posteriorVariance()[1], EPS);
        assertEquals(0.72, s.alphaCumprod(1), EPS);
    }

    @Test
    void toStringIsShortAndInformative() {
        String str = NoiseSchedule.defaults().toString();
        assertTrue(str.contains("linear") && str.contains("T=1000"), str);
        assertTrue(str.length() < 200, str);
        assertTrue(NoiseSchedule.fromBetas(new double[] {0.5}).toString().contains("trained_betas"));
    }

    // ---- bad inputs -----------------------------------------------------------------------------

    @ParameterizedTest
    @ValueSource(ints = {0, -1, 100_001, Integer.MIN_VALUE, Integer.MAX_VALUE})
    void badTimestepCount(int t) {
        for (BetaSchedule b : BetaSchedule.values()) {
            assertMessageContains(() -> NoiseSchedule.of(b, t, 0.0001, 0.02), "numTrainTimesteps",
                    Integer.toString(t));
        }
    }

    @Test
    void timestepBoundsAreInclusive() {
        assertEquals(100_000, NoiseSchedule.of(BetaSchedule.LINEAR, 100_000, 1e-6, 1e-4).numTrainTimesteps());
        assertEquals(100_000, NoiseSchedule.of(BetaSchedule.SQUAREDCOS_CAP_V2, 100_000, 0.1, 0.2)
                .numTrainTimesteps());
    }

    static Stream<Arguments> badBetaBounds() {
        return Stream.of(Double.NaN, -0.1, 0.0, -0.0, 1.0, 1.5, Double.POSITIVE_INFINITY,
                        Double.NEGATIVE_INFINITY)
                .map(Arguments::of);
    }

    @ParameterizedTest
    @MethodSource("badBetaBounds")
    void badBetaStartAndEnd(double v) {
        for (BetaSchedule b : BetaSchedule.values()) {
            assertMessageContains(() -> NoiseSchedule.of(b, 10, v, 0.02), "betaStart", String.valueOf(v));
            assertMessageContains(() -> NoiseSchedule.of(b, 10, 0.0001, v), "betaEnd", String.valueOf(v));
        }
    }

    @Test
    void badExplicitBetas() {
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[0]), "numTrainTimesteps", "0");
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {0.1, Double.NaN}), "betas[1]", "NaN");
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {1.0}), "betas[0]", "1.0");
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {0.1, 0.2, 0.0}), "betas[2]", "0.0");
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {-0.1}), "betas[0]", "-0.1");
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {0.1, Double.POSITIVE_INFINITY}),
                "betas[1]", "Infinity");
        assertThrows(NullPointerException.class, () -> NoiseSchedule.fromBetas(null));
        assertThrows(NullPointerException.class, () -> NoiseSchedule.of(null, 10, 0.0001, 0.02));
    }

    @Test
    void degenerateAlphasCumprodIsRejected() {
        // sum of betas ~ 1e5 * 0.01 = 1000 > 745: the running product underflows to 0
        assertMessageContains(() -> NoiseSchedule.of(BetaSchedule.LINEAR, 100_000, 0.0001, 0.02),
                "alphasCumprod", "underflow");
        // 1 - 1e-17 rounds to 1.0: ab[0] = 1 is not inside (0, 1)
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {1e-17}), "alphasCumprod[0]",
                "betas[0]");
        // ... and later in the schedule it breaks strict decrease
        assertMessageContains(() -> NoiseSchedule.fromBetas(new double[] {0.5, 1e-17}),
                "strictly decreasing", "t=1");
        // betas 0.5 x 1023: ab[1022] = 2^-1023 is subnormal (precision lost, 1/ab near overflow)
        double[] halves = new double[1023];
        java.util.Arrays.fill(halves, 0.5);
        assertMessageContains(() -> NoiseSchedule.fromBetas(halves), "alphasCumprod[1022]", "underflow");
        // with 1022 halves ab = 2^-1022 = Double.MIN_NORMAL is accepted and everything is finite
        NoiseSchedule edge = NoiseSchedule.fromBetas(java.util.Arrays.copyOf(halves, 1022));
        assertEquals(0x1p-1022, edge.alphaCumprod(1021));
        assertEquals(0x1p511, edge.sqrtRecipAlphasCumprod()[1021]);
        assertTrue(Double.isFinite(edge.sqrtRecipm1AlphasCumprod()[1021]));
    }

    @Test
    void badTimestepIndex() {
        NoiseSchedule s = NoiseSchedule.of(BetaSchedule.LINEAR, 3, 0.1, 0.3);
        assertMessageContains(() -> s.alphaCumprod(3), "t=3", "T=3");
        assertMessageContains(() -> s.alphaCumprod(-1), "t=-1", "T=3");
        assertMessageContains(() -> s.alphaCumprodPrev(3), "t=3", "T=3");
        assertMessageContains(() -> s.beta(7), "t=7", "T=3");
        assertMessageContains(() -> s.alpha(-2), "t=-2", "T=3");
    }

    @ParameterizedTest
    @ValueSource(doubles = {0.0, -0.0, -1.0, Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY})
    void badGamma(double gamma) {
        NoiseSchedule s = NoiseSchedule.defaults();
        for (PredictionType p : PredictionType.values()) {
            assertMessageContains(() -> s.minSnrWeights(gamma, p), "gamma", String.valueOf(gamma));
        }
    }

    @Test
    void nullPredictionTypeRejected() {
        assertThrows(NullPointerException.class, () -> NoiseSchedule.defaults().minSnrWeights(5.0, null));
    }
}
