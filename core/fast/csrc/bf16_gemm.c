/* bf16 C = A @ B (+ bias) for row-major A (M, K) and B (K, N): the bits of torch's CPU
 * fallback kernel, many times faster.
 *
 * torch's fallback (aten/src/ATen/native/cpu/BlasKernel.cpp, gemm_notrans_ for reduced
 * floating types) computes every output element on its own: four float32 partial sums
 * over k = 0, 4, 8, ... / 1, 5, 9, ... / ..., each in order; the K % 4 leftover terms go
 * into the first; then ((p0 + p1) + p2) + p3; with a bias, bias + that; rounded to bf16
 * (nearest even, NaN -> 0x7FC0). Products of two bf16 numbers are exact in float32 unless
 * they overflow or underflow; torch's AVX2 / AVX-512 builds fuse `sum += a * b` into one
 * multiply-add (so an overflowing product never becomes inf on its own): MAC below.
 *
 * Here the same additions, in the same order, for a block of output rows and columns at
 * once, so the compiler can keep them in vector registers. Never compile with -ffast-math
 * (it reorders additions) or with contraction (core/fast/native.py compiles it, and checks the
 * result against torch before any use). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* acc + x * y as torch's build computes `acc += x * y`: one fused multiply-add where it
 * fuses (core/fast/native.py defines FUSED then), a rounded product and a rounded sum where it
 * does not. Explicit, since a compiler fuses only where it happens to see the pattern
 * (the file is compiled with -ffp-contract=off). */
#ifdef FUSED
#define MAC(acc, x, y) fmaf((x), (y), (acc))
#else
#define MAC(acc, x, y) ((acc) + (x) * (y))
#endif

#define COLS 64 /* output columns per block */
#define ROWS 8  /* output rows per block: ROWS x 4 partial sums x COLS floats (8 KB) stay in L1 */

static inline float bf16_to_float(uint16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) { /* c10::BFloat16's round_to_nearest_even */
    if (f != f) return 0x7FC0;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounding_bias = ((u >> 16) & 1) + 0x7FFF;
    return (uint16_t)((u + rounding_bias) >> 16);
}

/* ci[j] = bf16(sums[j]), or bf16(bias + sums[j]) as torch's addmm (beta = alpha = 1) rounds
 * it, for j < w; bi: NULL, or the bias row with column stride bias_cs. */
static inline void store_row(uint16_t *ci, const float *sums, int64_t w, const uint16_t *bi, int64_t bias_cs) {
    if (bi == NULL) {
        for (int64_t j = 0; j < w; j++) ci[j] = float_to_bf16(sums[j]);
    } else {
        for (int64_t j = 0; j < w; j++) ci[j] = float_to_bf16(bf16_to_float(bi[j * bias_cs]) + sums[j]);
    }
}

/* Rows [0, m) of C. a: (m, k) with row stride lda; b: (k, n) with row stride ldb; bias:
 * NULL, or bf16 with strides (bias_rs, bias_cs) (a 1-D bias: bias_rs = 0); c: (m, n) with
 * row stride ldc. Strides in elements; columns of a, b and c are contiguous. */
void bf16_gemm_rowrow(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *b,
                      int64_t ldb, const uint16_t *bias, int64_t bias_rs, int64_t bias_cs, uint16_t *c,
                      int64_t ldc) {
    /* p[r][q][j]: row i0 + r of the block, partial sum q, column j0 + j. ROWS rows share each
     * load of b's rows (the product streams b once per ROWS rows of a, not once per row). */
    float p[ROWS][4][COLS];
    for (int64_t j0 = 0; j0 < n; j0 += COLS) {
        const int64_t w = n - j0 < COLS ? n - j0 : COLS;
        for (int64_t i0 = 0; i0 < m; i0 += ROWS) {
            const int64_t h = m - i0 < ROWS ? m - i0 : ROWS;
            memset(p, 0, sizeof p);
            int64_t l = 0;
            for (; l + 4 <= k; l += 4) {
                const uint16_t *bl = b + l * ldb + j0;
                for (int64_t r = 0; r < h; r++) {
                    const uint16_t *ai = a + (i0 + r) * lda + l;
                    for (int q = 0; q < 4; q++) {
                        const float x = bf16_to_float(ai[q]);
                        const uint16_t *bq = bl + q * ldb;
                        float *pq = p[r][q];
                        for (int64_t j = 0; j < w; j++) pq[j] = MAC(pq[j], bf16_to_float(bq[j]), x);
                    }
                }
            }
            for (; l < k; l++) { /* the K % 4 leftover terms go into the first partial sum */
                const uint16_t *bl = b + l * ldb + j0;
                for (int64_t r = 0; r < h; r++) {
                    const float x = bf16_to_float(a[(i0 + r) * lda + l]);
                    float *p0 = p[r][0];
                    for (int64_t j = 0; j < w; j++) p0[j] = MAC(p0[j], bf16_to_float(bl[j]), x);
                }
            }
            for (int64_t r = 0; r < h; r++) {
                const int64_t i = i0 + r;
                const float *p0 = p[r][0], *p1 = p[r][1], *p2 = p[r][2], *p3 = p[r][3];
                float sums[COLS];
                for (int64_t j = 0; j < w; j++) sums[j] = ((p0[j] + p1[j]) + p2[j]) + p3[j];
                store_row(c + i * ldc + j0, sums, w, bias ? bias + i * bias_rs + j0 * bias_cs : NULL, bias_cs);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * bf16 C = A @ B (+ bias) for row-major A (M, K) and column-major B, given as Bt = B^T
 * (N, K) row-major: every output is a dot product of two contiguous rows. torch's kernel
 * for this layout (its bf16 "dot with fp32 arithmetic": 8 vector registers of 8 floats)
 * sums each dot product as follows, and so does this one, for JB outputs at once:
 *   main loop, 64 elements per iteration: register r, lane l accumulates element
 *     it + 8r + l with a multiply-add;
 *   registers folded r += r + 4, then r + 2, then r + 1; the lanes of what is left summed
 *     ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7));
 *   then, 16 elements at a time, lane l accumulates element j + l, then j + 8 + l, into a
 *     tail vector that is summed the same way and added (even when empty: + 0.0);
 *   then each leftover element's product is added in order.
 * ------------------------------------------------------------------------------------- */
#define JB 16 /* outputs per block (columns of C), across which everything is vectorized */

static inline float lane_sum(const float v[8][JB], int64_t jj) {
    return ((v[0][jj] + v[4][jj]) + (v[2][jj] + v[6][jj])) + ((v[1][jj] + v[5][jj]) + (v[3][jj] + v[7][jj]));
}

/* Rows [0, m) of C. a: (m, k), row stride lda; bt: (n, k), row stride ldbt; bias as in
 * bf16_gemm_rowrow; c: (m, n), row stride ldc. Returns 0, or -1 when out of memory. */
int bf16_gemm_rowcol(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda, const uint16_t *bt,
                     int64_t ldbt, const uint16_t *bias, int64_t bias_rs, int64_t bias_cs, uint16_t *c,
                     int64_t ldc) {
    const int64_t main_end = k & ~(int64_t)63, vec_end = k & ~(int64_t)15;
    float *af = malloc(sizeof(float) * (size_t)(m * k + k * JB)); /* a as floats, then a block of bt^T */
    if (af == NULL) return -1;
    float *w = af + m * k; /* w[l * JB + jj] = bt[j0 + jj][l] */
    for (int64_t i = 0; i < m; i++)
        for (int64_t l = 0; l < k; l++) af[i * k + l] = bf16_to_float(a[i * lda + l]);
    float s[8][8][JB], t[8][JB], red[JB];
    for (int64_t j0 = 0; j0 < n; j0 += JB) {
        const int64_t h = n - j0 < JB ? n - j0 : JB;
        for (int64_t l = 0; l < k; l++)
            for (int64_t jj = 0; jj < JB; jj++) w[l * JB + jj] = jj < h ? bf16_to_float(bt[(j0 + jj) * ldbt + l]) : 0.0f;
        for (int64_t i = 0; i < m; i++) {
            const float *ai = af + i * k;
            if (main_end == 64) { /* one iteration (K 64..127): products folded as they come, in registers */
                float lanes[8][JB];
                for (int l = 0; l < 8; l++) {
                    float p[8][JB];
                    for (int r = 0; r < 8; r++) {
                        const float x = ai[8 * r + l];
                        const float *wl = w + (8 * r + l) * JB;
                        for (int64_t jj = 0; jj < JB; jj++) p[r][jj] = MAC(0.0f, x, wl[jj]);
                    }
                    for (int64_t jj = 0; jj < JB; jj++)
                        lanes[l][jj] = ((p[0][jj] + p[4][jj]) + (p[2][jj] + p[6][jj])) +
                                       ((p[1][jj] + p[5][jj]) + (p[3][jj] + p[7][jj]));
                }
                for (int64_t jj = 0; jj < JB; jj++) red[jj] = lane_sum(lanes, jj);
            } else if (main_end > 64) {
                for (int r = 0; r < 8; r++)
                    for (int l = 0; l < 8; l++) {
                        const float x = ai[8 * r + l];
                        const float *wl = w + (8 * r + l) * JB;
                        for (int64_t jj = 0; jj < JB; jj++) s[r][l][jj] = MAC(0.0f, x, wl[jj]);
                    }
                for (int64_t it = 64; it < main_end; it += 64)
                    for (int r = 0; r < 8; r++)
                        for (int l = 0; l < 8; l++) {
                            const float x = ai[it + 8 * r + l];
                            const float *wl = w + (it + 8 * r + l) * JB;
                            for (int64_t jj = 0; jj < JB; jj++) s[r][l][jj] = MAC(s[r][l][jj], x, wl[jj]);
                        }
                for (int off = 4; off >= 1; off /= 2)
                    for (int r = 0; r < off; r++)
                        for (int l = 0; l < 8; l++)
                            for (int64_t jj = 0; jj < JB; jj++) s[r][l][jj] = s[r][l][jj] + s[r + off][l][jj];
                for (int64_t jj = 0; jj < JB; jj++) red[jj] = lane_sum(s[0], jj);
            } else {
                for (int64_t jj = 0; jj < JB; jj++) red[jj] = 0.0f;
            }
            if (main_end < vec_end) { /* 16 elements at a time: lane l takes element l, then 8 + l */
                memset(t, 0, sizeof t);
                for (int64_t j = main_end; j < vec_end; j += 16)
                    for (int half = 0; half < 16; half += 8)
                        for (int l = 0; l < 8; l++) {
                            const float x = ai[j + half + l];
                            const float *wl = w + (j + half + l) * JB;
                            for (int64_t jj = 0; jj < JB; jj++) t[l][jj] = MAC(t[l][jj], x, wl[jj]);
                        }
                for (int64_t jj = 0; jj < JB; jj++) red[jj] += lane_sum(t, jj);
            } else {
                for (int64_t jj = 0; jj < JB; jj++) red[jj] += 0.0f; /* torch adds the empty tail's sum: -0 -> +0 */
            }
            for (int64_t l = vec_end; l < k; l++) {
                const float x = ai[l];
                const float *wl = w + l * JB;
                for (int64_t jj = 0; jj < JB; jj++) red[jj] = MAC(red[jj], x, wl[jj]);
            }
            store_row(c + i * ldc + j0, red, h, bias ? bias + i * bias_rs + j0 * bias_cs : NULL, bias_cs);
        }
    }
    free(af);
    return 0;
}
