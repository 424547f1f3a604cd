/* Kernels for one floating-point type; included by warp_cpu.c with T (type), SUF (name suffix)
 * and FLOOR (floor function) defined. No include guard on purpose. */

typedef struct {
    int32_t i00[WARP_TILE], i01[WARP_TILE], i10[WARP_TILE], i11[WARP_TILE]; /* flat corner indices, clamped into the image */
    T f00[WARP_TILE], f01[WARP_TILE], f10[WARP_TILE], f11[WARP_TILE];       /* 1 if the corner is inside the image, else 0 */
    T u[WARP_TILE], v[WARP_TILE];                                           /* fractional parts of x - dx, y - dy */
    T mx[WARP_TILE], my[WARP_TILE];                                         /* 1, or 0 where the border clamp is active */
} WARP_CAT(warp_geom, SUF);

static inline int32_t WARP_CAT(warp_clampi, SUF)(int32_t a, int32_t hi) {
    a = a < 0 ? 0 : a;
    return a > hi ? hi : a;
}

/* Geometry of the output pixels (y, xa .. xa + nx - 1). Zeros padding clamps the sample position
 * to [-2, W] x [-2, H]: beyond that every corner is outside anyway, so value and gradients are
 * unchanged, and the float -> int conversion stays in range. NaN displacements give NaN outputs
 * (indices are clamped, so memory access stays in bounds). */
static inline void WARP_CAT(warp_geometry, SUF)(const T *restrict DX, const T *restrict DY,
                                                int64_t y, int64_t xa, int64_t nx, int64_t H,
                                                int64_t W, int border,
                                                WARP_CAT(warp_geom, SUF) *restrict g) {
    const T lox = border ? 0 : -2, hix = border ? (T)(W - 1) : (T)W;
    const T loy = border ? 0 : -2, hiy = border ? (T)(H - 1) : (T)H;
    const T Wm1 = (T)(W - 1), Hm1 = (T)(H - 1), yf = (T)y;
    const int32_t Wi = (int32_t)W, Hi = (int32_t)H;
    const T *restrict dx = DX + y * W + xa, *restrict dy = DY + y * W + xa;
    T *restrict gu = g->u, *restrict gv = g->v, *restrict gmx = g->mx, *restrict gmy = g->my;
    T *restrict f00 = g->f00, *restrict f01 = g->f01, *restrict f10 = g->f10, *restrict f11 = g->f11;
    int32_t *restrict i00 = g->i00, *restrict i01 = g->i01, *restrict i10 = g->i10, *restrict i11 = g->i11;
    _Pragma("omp simd")
    for (int64_t k = 0; k < nx; ++k) {
        T xs = (T)(xa + k) - dx[k], ys = yf - dy[k];
        gmx[k] = (T)((xs > 0) & (xs < Wm1));
        gmy[k] = (T)((ys > 0) & (ys < Hm1));
        xs = xs < lox ? lox : xs;
        xs = xs > hix ? hix : xs;
        ys = ys < loy ? loy : ys;
        ys = ys > hiy ? hiy : ys;
        const T x0f = FLOOR(xs), y0f = FLOOR(ys);
        gu[k] = xs - x0f;
        gv[k] = ys - y0f;
        const int32_t x0 = (int32_t)x0f, y0 = (int32_t)y0f;
        const T fx0 = (T)((x0 >= 0) & (x0 < Wi)), fx1 = (T)((x0 >= -1) & (x0 < Wi - 1));
        const T fy0 = (T)((y0 >= 0) & (y0 < Hi)), fy1 = (T)((y0 >= -1) & (y0 < Hi - 1));
        const int32_t c0 = WARP_CAT(warp_clampi, SUF)(x0, Wi - 1);
        const int32_t c1 = WARP_CAT(warp_clampi, SUF)(x0 + 1, Wi - 1);
        const int32_t r0 = WARP_CAT(warp_clampi, SUF)(y0, Hi - 1) * Wi;
        const int32_t r1 = WARP_CAT(warp_clampi, SUF)(y0 + 1, Hi - 1) * Wi;
        i00[k] = r0 + c0; i01[k] = r0 + c1; i10[k] = r1 + c0; i11[k] = r1 + c1;
        f00[k] = fy0 * fx0; f01[k] = fy0 * fx1; f10[k] = fy1 * fx0; f11[k] = fy1 * fx1;
    }
    if (!border)
        for (int64_t k = 0; k < nx; ++k) { gmx[k] = 1; gmy[k] = 1; }
}

/* Bilinear weights of the four corners, 0 for corners outside the image. */
static inline void WARP_CAT(warp_weights, SUF)(const WARP_CAT(warp_geom, SUF) *restrict g, int64_t nx,
                                               T *restrict w00, T *restrict w01, T *restrict w10,
                                               T *restrict w11) {
    for (int64_t k = 0; k < nx; ++k) {
        const T u = g->u[k], v = g->v[k];
        w00[k] = (1 - u) * (1 - v) * g->f00[k];
        w01[k] = u * (1 - v) * g->f01[k];
        w10[k] = (1 - u) * v * g->f10[k];
        w11[k] = u * v * g->f11[k];
    }
}

/* out = bilinear sample of src at (x - dx, y - dy), for item n, rows [y_lo, y_hi), all channels. */
static void WARP_CAT(warp_fwd_rows, SUF)(const T *src, const T *disp, T *out, int64_t C, int64_t H, int64_t W,
                             int border, int64_t n, int64_t y_lo, int64_t y_hi) {
    const int64_t HW = H * W;
    const T *S = src + n * C * HW, *DX = disp + n * 2 * HW, *DY = DX + HW;
    T *O = out + n * C * HW;
    WARP_CAT(warp_geom, SUF) g;
    T w00[WARP_TILE], w01[WARP_TILE], w10[WARP_TILE], w11[WARP_TILE];
    for (int64_t y = y_lo; y < y_hi; ++y)
        for (int64_t xa = 0; xa < W; xa += WARP_TILE) {
            const int64_t nx = W - xa < WARP_TILE ? W - xa : WARP_TILE;
            WARP_CAT(warp_geometry, SUF)(DX, DY, y, xa, nx, H, W, border, &g);
            WARP_CAT(warp_weights, SUF)(&g, nx, w00, w01, w10, w11);
            for (int64_t c = 0; c < C; ++c) {
                const T *restrict Sc = S + c * HW;
                T *restrict Oc = O + c * HW + y * W + xa;
                _Pragma("omp simd")
                for (int64_t k = 0; k < nx; ++k)
                    Oc[k] = w00[k] * Sc[g.i00[k]] + w01[k] * Sc[g.i01[k]]
                          + w10[k] * Sc[g.i10[k]] + w11[k] * Sc[g.i11[k]];
            }
        }
}

/* Backward for item n, rows [y_lo, y_hi), channels [c_lo, c_hi).
 * gdisp (may be NULL; then c range must be all channels): set to
 *     dL/ddx = -sum_c g_c * dI_c/dx̂,   dI/dx̂ = (1-v)(S01 - S00) + v(S11 - S10)   (and y alike),
 *     times the border-clamp mask.
 * gsrc (may be NULL): the bilinear weights times g are ADDED into it (the caller zeroes it and
 *     must not let two threads scatter into the same (n, c) plane at once). */
static void WARP_CAT(warp_bwd_rows, SUF)(const T *src, const T *disp, const T *gout, T *gsrc, T *gdisp,
                             int64_t C, int64_t H, int64_t W, int border, int64_t n, int64_t y_lo,
                             int64_t y_hi, int64_t c_lo, int64_t c_hi) {
    const int64_t HW = H * W;
    const T *S = src + n * C * HW, *DX = disp + n * 2 * HW, *DY = DX + HW;
    const T *G = gout + n * C * HW;
    T *GS = gsrc ? gsrc + n * C * HW : 0;
    T *GDX = gdisp ? gdisp + n * 2 * HW : 0, *GDY = gdisp ? GDX + HW : 0;
    WARP_CAT(warp_geom, SUF) g;
    T gx[WARP_TILE], gy[WARP_TILE];
    for (int64_t y = y_lo; y < y_hi; ++y)
        for (int64_t xa = 0; xa < W; xa += WARP_TILE) {
            const int64_t nx = W - xa < WARP_TILE ? W - xa : WARP_TILE;
            WARP_CAT(warp_geometry, SUF)(DX, DY, y, xa, nx, H, W, border, &g);
            if (GDX) {
                for (int64_t k = 0; k < nx; ++k) { gx[k] = 0; gy[k] = 0; }
                for (int64_t c = c_lo; c < c_hi; ++c) {
                    const T *restrict Sc = S + c * HW;
                    const T *restrict Gc = G + c * HW + y * W + xa;
                    _Pragma("omp simd")
                    for (int64_t k = 0; k < nx; ++k) {
                        const T u = g.u[k], v = g.v[k];
                        const T s00 = g.f00[k] * Sc[g.i00[k]], s01 = g.f01[k] * Sc[g.i01[k]];
                        const T s10 = g.f10[k] * Sc[g.i10[k]], s11 = g.f11[k] * Sc[g.i11[k]];
                        gx[k] += Gc[k] * ((1 - v) * (s01 - s00) + v * (s11 - s10));
                        gy[k] += Gc[k] * ((1 - u) * (s10 - s00) + u * (s11 - s01));
                    }
                }
                for (int64_t k = 0; k < nx; ++k) {   /* x̂ = x - dx, so dL/ddx = -dL/dx̂ */
                    GDX[y * W + xa + k] = -gx[k] * g.mx[k];
                    GDY[y * W + xa + k] = -gy[k] * g.my[k];
                }
            }
            if (GS) {
                /* the scatter, one corner at a time: neighbouring pixels mostly hit neighbouring
                   addresses, so the read-modify-writes of one loop do not wait on each other
                   (interleaving the four corners made each add wait on the previous store) */
                T w00[WARP_TILE], w01[WARP_TILE], w10[WARP_TILE], w11[WARP_TILE];
                WARP_CAT(warp_weights, SUF)(&g, nx, w00, w01, w10, w11);
                for (int64_t c = c_lo; c < c_hi; ++c) {
                    T *Sg = GS + c * HW;
                    const T *Gc = G + c * HW + y * W + xa;
                    for (int64_t k = 0; k < nx; ++k) Sg[g.i00[k]] += w00[k] * Gc[k];
                    for (int64_t k = 0; k < nx; ++k) Sg[g.i01[k]] += w01[k] * Gc[k];
                    for (int64_t k = 0; k < nx; ++k) Sg[g.i10[k]] += w10[k] * Gc[k];
                    for (int64_t k = 0; k < nx; ++k) Sg[g.i11[k]] += w11[k] * Gc[k];
                }
            }
        }
}

/* ---- entry points: the whole batch, split over OpenMP threads (torch's own pool: see warp_cpu.py) */

void WARP_CAT(warp_fwd, SUF)(const T *src, const T *disp, T *out, int64_t N, int64_t C, int64_t H,
                             int64_t W, int border) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t y = 0; y < H; ++y)
            WARP_CAT(warp_fwd_rows, SUF)(src, disp, out, C, H, W, border, n, y, y + 1);
}

/* gdisp (may be NULL) is set; gsrc (may be NULL) must be zeroed by the caller. */
void WARP_CAT(warp_bwd, SUF)(const T *src, const T *disp, const T *gout, T *gsrc, T *gdisp,
                             int64_t N, int64_t C, int64_t H, int64_t W, int border) {
    if (gdisp) {
        #pragma omp parallel for collapse(2) schedule(static)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t y = 0; y < H; ++y)
                WARP_CAT(warp_bwd_rows, SUF)(src, disp, gout, 0, gdisp, C, H, W, border, n, y, y + 1, 0, C);
    }
    if (gsrc) {  /* a scatter: each (n, c) plane is written by one thread only */
        if (N >= warp_max_threads()) {
            #pragma omp parallel for schedule(static)
            for (int64_t n = 0; n < N; ++n)
                WARP_CAT(warp_bwd_rows, SUF)(src, disp, gout, gsrc, 0, C, H, W, border, n, 0, H, 0, C);
        } else {
            #pragma omp parallel for collapse(2) schedule(static)
            for (int64_t n = 0; n < N; ++n)
                for (int64_t c = 0; c < C; ++c)
                    WARP_CAT(warp_bwd_rows, SUF)(src, disp, gout, gsrc, 0, C, H, W, border, n, 0, H, c, c + 1);
        }
    }
}
