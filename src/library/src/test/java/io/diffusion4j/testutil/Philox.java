package io.diffusion4j.testutil;

/**
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC'11),
 * written from the paper's round function in Java, independently of native/common/philox.h.
 *
 * <p>All 32-bit words are carried as {@code long} values in [0, 2^32) so that the unsigned
 * multiplication, addition and comparison are plain long arithmetic. The full 64-bit product of two
 * unsigned 32-bit words may exceed {@code Long.MAX_VALUE}, but Java's long multiplication is exact
 * modulo 2^64, so {@code p >>> 32} and {@code p & MASK} are the exact high and low words.
 *
 * <p>Stream convention of diffusion4j (native/include/d4j.h): uint32 element i of (seed, offset) is
 * word i % 4 of Philox4x32-10 with key = {lo(seed), hi(seed)} and counter =
 * {lo(i/4), hi(i/4), lo(offset), hi(offset)}.
 */
public final class Philox {
    private Philox() {}

    private static final long MASK = 0xFFFF_FFFFL;
    private static final long MULT0 = 0xD2511F53L;
    private static final long MULT1 = 0xCD9E8D57L;
    private static final long WEYL0 = 0x9E3779B9L; // golden ratio
    private static final long WEYL1 = 0xBB67AE85L; // sqrt(3) - 1

    /**
     * One Philox4x32-10 block.
     *
     * @param ctr four counter words (raw int bits)
     * @param key two key words (raw int bits)
     * @return the four output words (raw int bits)
     */
    public static int[] philox4x32_10(int[] ctr, int[] key) {
        long c0 = ctr[0] & MASK, c1 = ctr[1] & MASK, c2 = ctr[2] & MASK, c3 = ctr[3] & MASK;
        long k0 = key[0] & MASK, k1 = key[1] & MASK;
        for (int round = 0; round < 10; round++) {
            if (round > 0) { // key schedule: bump by the Weyl constants before rounds 2..10
                k0 = (k0 + WEYL0) & MASK;
                k1 = (k1 + WEYL1) & MASK;
            }
            long p0 = MULT0 * c0; // exact mod 2^64
            long p1 = MULT1 * c2;
            long hi0 = p0 >>> 32, lo0 = p0 & MASK;
            long hi1 = p1 >>> 32, lo1 = p1 & MASK;
            long n0 = hi1 ^ c1 ^ k0;
            long n1 = lo1;
            long n2 = hi0 ^ c3 ^ k1;
            long n3 = lo0;
            c0 = n0;
            c1 = n1;
            c2 = n2;
            c3 = n3;
        }
        return new int[] {(int) c0, (int) c1, (int) c2, (int) c3};
    }

    /** Block j of the stream (seed, offset) in the d4j.h convention. */
    public static int[] block(long seed, long offset, long j) {
        int[] ctr = {(int) j, (int) (j >>> 32), (int) offset, (int) (offset >>> 32)};
        int[] key = {(int) seed, (int) (seed >>> 32)};
        return philox4x32_10(ctr, key);
    }

    /** uint32 elements first .. first+count-1 of the stream (seed, offset), as raw int bits. */
    public static int[] uint32(long seed, long offset, long first, int count) {
        int[] out = new int[count];
        long j = -1;
        int[] w = null;
        for (int k = 0; k < count; k++) {
            long i = first + k;
            if ((i >>> 2) != j || w == null) {
                j = i >>> 2;
                w = block(seed, offset, j);
            }
            out[k] = w[(int) (i & 3)];
        }
        return out;
    }
}
