package io.diffusion4j.schedule;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class BetaScheduleTest {

    private static void assertClose(double[] expected, double[] actual, double relTol) {
        assertEquals(expected.length, actual.length, "length");
        for (int i = 0; i < expected.length; i++) {
            double tol = relTol * Math.max(Math.abs(expected[i]), Double.MIN_NORMAL);
            assertEquals(expected[i], actual[i], tol, "index " + i);
        }
    }

    // ---- config names --------------------------------------------------------------------------

    @Test
    void configNamesRoundTripAndMatchDiffusers() {
        assertEquals("linear", BetaSchedule.LINEAR.configName());
        assertEquals("scaled_linear", BetaSchedule.SCALED_LINEAR.configName());
        assertEquals("squaredcos_cap_v2", BetaSchedule.SQUAREDCOS_CAP_V2.configName());
        assertEquals("sigmoid", BetaSchedule.SIGMOID.configName());
        for (BetaSchedule b : BetaSchedule.values()) {
            assertSame(b, BetaSchedule.fromConfigName(b.configName()));
        }
        assertEquals("epsilon", PredictionType.EPSILON.configName());
        assertEquals("sample", PredictionType.SAMPLE.configName());
        assertEquals("v_prediction", PredictionType.V_PREDICTION.configName());
        for (PredictionType p : PredictionType.values()) {
            assertSame(p, PredictionType.fromConfigName(p.configName()));
        }
        assertEquals("fixed_small", VarianceType.FIXED_SMALL.configName());
        assertEquals("fixed_large", VarianceType.FIXED_LARGE.configName());
        for (VarianceType v : VarianceType.values()) {
            assertSame(v, VarianceType.fromConfigName(v.configName()));
        }
    }

    @Test
    void ordinalsMatchNativeEnums() {
        // d4j_prediction_type: EPSILON=0, SAMPLE=1, V=2; d4j_variance_type: FIXED_SMALL=0, FIXED_LARGE=1
        assertEquals(List.of(PredictionType.EPSILON, PredictionType.SAMPLE, PredictionType.V_PREDICTION),
                List.of(PredictionType.values()));
        assertEquals(0, PredictionType.EPSILON.ordinal());
        assertEquals(1, PredictionType.SAMPLE.ordinal());
        assertEquals(2, PredictionType.V_PREDICTION.ordinal());
        assertEquals(0, VarianceType.FIXED_SMALL.ordinal());
        assertEquals(1, VarianceType.FIXED_LARGE.ordinal());
        assertEquals(2, VarianceType.values().length);
        assertEquals(List.of(BetaSchedule.LINEAR, BetaSchedule.SCALED_LINEAR, BetaSchedule.SQUAREDCOS_CAP_V2,
                BetaSchedule.SIGMOID), List.of(BetaSchedule.values()));
    }

    @Test
    void unknownBetaScheduleNamesValueAndValidOnes() {
        for (String bad : new String[] {"cosine", "Linear", "", " linear"}) {
            IllegalArgumentException e =
                    assertThrows(IllegalArgumentException.class, () -> BetaSchedule.fromConfigName(bad));
            assertTrue(e.getMessage().contains("beta_schedule"), e.getMessage());
            assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
            for (BetaSchedule b : BetaSchedule.values()) {
                assertTrue(e.getMessage().contains(b.configName()), e.getMessage());
            }
        }
        IllegalArgumentException e =
                assertThrows(IllegalArgumentException.class, () -> BetaSchedule.fromConfigName(null));
        assertTrue(e.getMessage().contains("null"), e.getMessage());
    }

    @Test
    void unknownPredictionAndVarianceTypeNamesValueAndValidOnes() {
        IllegalArgumentException e =
                assertThrows(IllegalArgumentException.class, () -> PredictionType.fromConfigName("v"));
        assertTrue(e.getMessage().contains("prediction_type"), e.getMessage());
        assertTrue(e.getMessage().contains("'v'"), e.getMessage());
        assertTrue(e.getMessage().contains("epsilon") && e.getMessage().contains("sample")
                && e.getMessage().contains("v_prediction"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PredictionType.fromConfigName(null));

        e = assertThrows(IllegalArgumentException.class, () -> VarianceType.fromConfigName("learned_range"));
        assertTrue(e.getMessage().contains("variance_type"), e.getMessage());
        assertTrue(e.getMessage().contains("'learned_range'"), e.getMessage());
        assertTrue(e.getMessage().contains("fixed_small") && e.getMessage().contains("fixed_large"),
                e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> VarianceType.fromConfigName(null));
    }

    // ---- linspace (numpy semantics) -----------------------------------------------------------

    @Test
    void linspaceMatchesNumpy() {
        assertArrayEquals(new double[] {0.0, 0.25, 0.5, 0.75, 1.0}, NumpyMath.linspace(0, 1, 5));
        assertArrayEquals(new double[] {1.0, 0.5, 0.0}, NumpyMath.linspace(1, 0, 3));
        assertArrayEquals(new double[] {2.0, 2.0, 2.0}, NumpyMath.linspace(2, 2, 3));
        assertArrayEquals(new double[] {7.0}, NumpyMath.linspace(7, 9, 1));
        // numpy.linspace(0.1, 0.3, 3) == [0.1, 0.2, 0.3]: step (0.3-0.1)/2 = 0.09999999999999999,
        // 1*step + 0.1 rounds to 0.2, and the endpoint is set to exactly 0.3.
        assertArrayEquals(new double[] {0.1, 0.2, 0.3}, NumpyMath.linspace(0.1, 0.3, 3));
        // endpoint is exact even when i*step + start would not be:
        // 3 * ((0.3 - 0.1) / 3) + 0.1 == 0.30000000000000004 in float64, numpy stores 0.3
        double[] y = NumpyMath.linspace(0.1, 0.3, 4);
        assertEquals(0.3, y[3]);
        assertEquals(0.1, y[0]);
        assertEquals(0.3, BetaSchedule.LINEAR.betas(4, 0.1, 0.3)[3]);
    }

    // ---- betas of each schedule, literals from plain-python float64 --------------------------------

    @Test
    void linearBetas() {
        assertArrayEquals(new double[] {0.1, 0.2, 0.3}, BetaSchedule.LINEAR.betas(3, 0.1, 0.3));
        assertArrayEquals(new double[] {0.3, 0.2, 0.1}, BetaSchedule.LINEAR.betas(3, 0.3, 0.1), 1e-16);
        assertArrayEquals(new double[] {0.25}, BetaSchedule.LINEAR.betas(1, 0.25, 0.5));
    }

    @Test
    void scaledLinearBetas() {
        // python: [v*v for v in lin(sqrt(0.00085), sqrt(0.012), 4)]
        double[] expected = {0.00085, 0.003130552837570784, 0.00684721950423745, 0.012};
        assertClose(expected, BetaSchedule.SCALED_LINEAR.betas(4, 0.00085, 0.012), 1e-14);
        // independent closed form: beta_i = ((3-i) sqrt(a) + i sqrt(b))^2 / 9
        double sa = Math.sqrt(0.00085);
        double sb = Math.sqrt(0.012);
        double[] actual = BetaSchedule.SCALED_LINEAR.betas(4, 0.00085, 0.012);
        for (int i = 0; i < 4; i++) {
            double v = ((3 - i) * sa + i * sb) / 3;
            assertEquals(v * v, actual[i], 1e-15, "i=" + i);
        }
        // T=1 gives [beta_start] (sqrt then square)
        assertEquals(0.00085, BetaSchedule.SCALED_LINEAR.betas(1, 0.00085, 0.012)[0], 1e-18);
    }

    @Test
    void sigmoidBetas() {
        // x = -6, -3, 0, 3, 6; beta = e^x/(1+e^x) * (0.02-0.0001) + 0.0001 (python)
        double[] expected = {0.00014920520081703202, 0.001043774876233579, 0.01005,
            0.019056225123766424, 0.019950794799182967};
        assertClose(expected, BetaSchedule.SIGMOID.betas(5, 0.0001, 0.02), 1e-14);
        // middle is exactly the mean of start and end: sigmoid(0) = 1/2
        assertEquals((0.0001 + 0.02) / 2, BetaSchedule.SIGMOID.betas(5, 0.0001, 0.02)[2], 1e-17);
        // T=1 -> linspace(-6,6,1) = [-6]
        assertEquals(0.00014920520081703202, BetaSchedule.SIGMOID.betas(1, 0.0001, 0.02)[0], 1e-17);
    }

    @Test
    void squaredcosBetas() {
        // python: f(t)=cos((t+0.008)/1.008*pi/2)**2; min(1 - f((i+1)/4)/f(i/4), 0.999)
        double[] expected = {0.1529878386730953, 0.41695808751199426, 0.7078587123971634, 0.999};
        assertClose(expected, BetaSchedule.SQUAREDCOS_CAP_V2.betas(4, 0.0001, 0.02), 1e-13);
        // beta_start/beta_end are ignored
        assertArrayEquals(BetaSchedule.SQUAREDCOS_CAP_V2.betas(4, 0.0001, 0.02),
                BetaSchedule.SQUAREDCOS_CAP_V2.betas(4, 0.5, 0.6));
        // T=1: 1 - f(1)/f(0) = 1 - ~0 is capped at max_beta
        assertArrayEquals(new double[] {0.999}, BetaSchedule.SQUAREDCOS_CAP_V2.betas(1, 0.0001, 0.02));
    }

    @Test
    void betasValidateArguments() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> BetaSchedule.LINEAR.betas(0, 0.1, 0.2));
        assertTrue(e.getMessage().contains("numTrainTimesteps") && e.getMessage().contains("0"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> BetaSchedule.SIGMOID.betas(3, Double.NaN, 0.2));
        assertTrue(e.getMessage().contains("betaStart") && e.getMessage().contains("NaN"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> BetaSchedule.SCALED_LINEAR.betas(3, 0.1, 1.0));
        assertTrue(e.getMessage().contains("betaEnd") && e.getMessage().contains("1.0"), e.getMessage());
    }
}
