/* SynthAU's z-buffer rasteriser, one frame per OpenMP task: the same arithmetic as the PyTorch path in
 * au_lib/data/synth/raster.py (float32, operation by operation, built with -ffp-contract=off), so both
 * paths give the same fragments. Pixel (row i, column j) has its centre at (x, y) = (j, i); larger z is
 * nearer; a pixel keeps the nearest fragment, ties to the larger triangle index; barycentrics within
 * -1e-5 of the triangle count as inside and are stored clamped to [0, 1]. */
#include <math.h>
#include <stdint.h>

#define RASTER_ABI 2

int raster_abi_version(void) { return RASTER_ABI; }

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* verts: B x V x 3 float32; faces: F x 3 int64; outputs: tri B x H x W int64 (filled with -1),
 * bary B x H x W x 3 float32 (zeros), zbuf B x H x W float32 (-inf): the caller initialises them. */
void raster_f32(const float *verts, const int64_t *faces, int64_t B, int64_t V, int64_t F, int64_t H, int64_t W,
                int64_t *tri, float *bary, float *zbuf) {
    int64_t b;
#pragma omp parallel for schedule(dynamic, 1)
    for (b = 0; b < B; ++b) {
        const float *v = verts + b * V * 3;
        int64_t *t_out = tri + b * H * W;
        float *bc_out = bary + b * H * W * 3;
        float *z_out = zbuf + b * H * W;
        for (int64_t f = 0; f < F; ++f) {
            const float *p0 = v + faces[3 * f] * 3, *p1 = v + faces[3 * f + 1] * 3, *p2 = v + faces[3 * f + 2] * 3;
            float x0 = p0[0], x1 = p1[0], x2 = p2[0], y0 = p0[1], y1 = p1[1], y2 = p2[1];
            float xmin = fminf(fminf(x0, x1), x2), xmax = fmaxf(fmaxf(x0, x1), x2);
            float ymin = fminf(fminf(y0, y1), y2), ymax = fmaxf(fmaxf(y0, y1), y2);
            float bx0 = clampf(ceilf(xmin), 0.0f, (float)W), bx1 = clampf(floorf(xmax), -1.0f, (float)(W - 1));
            float by0 = clampf(ceilf(ymin), 0.0f, (float)H), by1 = clampf(floorf(ymax), -1.0f, (float)(H - 1));
            float area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
            if (!(bx1 - bx0 + 1.0f > 0.0f) || !(by1 - by0 + 1.0f > 0.0f) || !(fabsf(area) > 1e-9f)) continue;
            float inv = 1.0f / area;
            float a0 = (y1 - y2) * inv, b0 = (x2 - x1) * inv, c0 = (x1 * y2 - x2 * y1) * inv;
            float a1 = (y2 - y0) * inv, b1 = (x0 - x2) * inv, c1 = (x2 * y0 - x0 * y2) * inv;
            float z0 = p0[2], z1 = p1[2], z2 = p2[2];
            for (int64_t py = (int64_t)by0; py <= (int64_t)by1; ++py) {
                float fy = (float)py;
                for (int64_t px = (int64_t)bx0; px <= (int64_t)bx1; ++px) {
                    float fx = (float)px;
                    float w0 = a0 * fx + b0 * fy + c0;
                    float w1 = a1 * fx + b1 * fy + c1;
                    float w2 = 1.0f - w0 - w1;
                    if (!(w0 >= -1e-5f && w1 >= -1e-5f && w2 >= -1e-5f)) continue;
                    float depth = w0 * z0 + w1 * z1 + w2 * z2;
                    int64_t k = py * W + px;
                    if (depth > z_out[k] || (depth == z_out[k] && f > t_out[k])) {
                        z_out[k] = depth;
                        t_out[k] = f;
                        bc_out[3 * k] = clampf(w0, 0.0f, 1.0f);
                        bc_out[3 * k + 1] = clampf(w1, 0.0f, 1.0f);
                        bc_out[3 * k + 2] = clampf(w2, 0.0f, 1.0f);
                    }
                }
            }
        }
    }
}

/* Barycentric interpolation of per-vertex attributes: attr B x V x C float32, faces F x 3 int64, tri and bary
 * from raster_f32; out B x C x H x W float32, filled by the caller with the background value (kept where
 * tri < 0). Same rounding as the PyTorch path: (a0 * w0 + a1 * w1) + a2 * w2. */
void interp_f32(const float *attr, const int64_t *faces, const int64_t *tri, const float *bary, int64_t B, int64_t V,
                int64_t C, int64_t H, int64_t W, float *out) {
    int64_t b;
#pragma omp parallel for schedule(static)
    for (b = 0; b < B; ++b) {
        const float *a = attr + b * V * C;
        float *o = out + b * C * H * W;
        for (int64_t k = 0; k < H * W; ++k) {
            int64_t t = tri[b * H * W + k];
            if (t < 0) continue;
            const float *w = bary + (b * H * W + k) * 3;
            const float *v0 = a + faces[3 * t] * C, *v1 = a + faces[3 * t + 1] * C, *v2 = a + faces[3 * t + 2] * C;
            for (int64_t c = 0; c < C; ++c) o[c * H * W + k] = v0[c] * w[0] + v1[c] * w[1] + v2[c] * w[2];
        }
    }
}
