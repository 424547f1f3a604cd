/* Fused bilinear displacement warp for the CPU: forward, and the hand-written backward.
 *
 * Built on first use by au_lib/ops/warp_cpu.py (C compiler, -O3 -march=native -fopenmp) and called
 * through ctypes (which releases the GIL). Same operator and conventions as
 * au_lib/ops/warp.py:
 *
 *   output(n, c, y, x) = S(n, c, y - dy, x - dx)       (pixels; dx = channel 0, dy = channel 1)
 *
 * bilinear with pixel centres at integer coordinates (grid_sample's align_corners=True). Corners
 * are chosen by floor, so at an integer sample position the derivative is the right-sided one,
 * as in grid_sample. padding: 0 = zeros (an out-of-image corner reads 0 and receives no gradient),
 * 1 = border (the sample position is clamped into the image; its coordinate gradient is 0 where
 * the clamp is active, i.e. unless 0 < x - dx < W - 1).
 *
 * Layout: contiguous N x C x H x W (source, output, grad_output, grad_source) and N x 2 x H x W
 * (displacement, grad_displacement), all of one dtype (float32 or float64). The exported
 * warp_fwd_* / warp_bwd_* take the whole batch and split it over OpenMP threads; built with
 * -fopenmp and linked against libgomp.so.1, they run in the OpenMP pool torch has already loaded
 * (same soname), so torch.set_num_threads governs them and no second pool competes for cores.
 *
 * The kernels are written so that GCC vectorises them (with -fno-trapping-math for floor): a tile
 * of one row's geometry (clamped corner indices, 0/1 in-image factors, fractions) is computed
 * first, then branch-free per-channel loops gather the four corners.
 */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
static int warp_max_threads(void) { return omp_get_max_threads(); }
#else
static int warp_max_threads(void) { return 1; }
#endif

#define WARP_TILE 128
#define WARP_CAT_(a, b) a##_##b
#define WARP_CAT(a, b) WARP_CAT_(a, b)

#define T float
#define SUF f32
#define FLOOR floorf
#include "warp_cpu_impl.h"
#undef T
#undef SUF
#undef FLOOR

#define T double
#define SUF f64
#define FLOOR floor
#include "warp_cpu_impl.h"
#undef T
#undef SUF
#undef FLOOR

/* ABI version the Python loader checks (bump when a signature changes). */
int warp_cpu_abi_version(void) { return 2; }

/* 1 if built with OpenMP (the batch is split over threads), else 0. */
int warp_cpu_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
