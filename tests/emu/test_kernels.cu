/* test_kernels.cu: hand-written kernels shaped like deitc's generated ones, compiled both by
 * NVRTC (emu_nvrtc, sm_80 and sm_90) and by the host compiler against cuda_emu.h (emu_test).
 * Each kernel's comment says how it is launched. */
#include "kernel_prelude.cuh"

/* softmax over rows: y, x (rows, cols); grid (rows), block 128, fibers, dynamic shared
 * cols floats (the row is cached there between the passes). */
DC_KERNEL softmax_rows(float *__restrict__ y, const float *__restrict__ x, int cols) {
    DC_DYNAMIC_SHARED(float, row);
    const float *xr = x + (long)blockIdx.x * cols;
    float m = -DC_INF;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        row[c] = xr[c];
        m = fmaxf(m, row[c]);
    }
    m = dc_block_max(m);
    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        row[c] = dc_exp(row[c] - m);
        s += row[c];
    }
    s = dc_block_sum(s);
    float inv = 1.0f / s;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) y[(long)blockIdx.x * cols + c] = row[c] * inv;
}

/* LayerNorm over rows with an fp16 copy of the output: y, yh, x (rows, cols), g, b (cols);
 * grid (rows), block 64, fibers. */
DC_KERNEL layernorm_rows(float *__restrict__ y, dc_half *__restrict__ yh, const float *__restrict__ x,
                         const float *__restrict__ g, const float *__restrict__ b, int cols, float eps) {
    const float *xr = x + (long)blockIdx.x * cols;
    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
    float mean = dc_block_sum(s) / cols;
    float v = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) v += (xr[c] - mean) * (xr[c] - mean);
    float rstd = dc_rsqrt(dc_block_sum(v) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float o = (xr[c] - mean) * rstd * g[c] + b[c];
        y[(long)blockIdx.x * cols + c] = o;
        yh[(long)blockIdx.x * cols + c] = dc_f2h(o);
    }
}

/* Per row: sum and sum of squares in one pass: out (rows, 2), x (rows, cols); grid (rows),
 * block 96, fibers. */
DC_KERNEL row_sums2(float *__restrict__ out, const float *__restrict__ x, int cols) {
    const float *xr = x + (long)blockIdx.x * cols;
    float2 s = make_float2(0.0f, 0.0f);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s.x += xr[c], s.y += xr[c] * xr[c];
    s = dc_block_sum2(s);
    if (threadIdx.x == 0) out[2 * blockIdx.x] = s.x, out[2 * blockIdx.x + 1] = s.y;
}

/* Warp operations, 8 results per thread: out (n, 8); grid (n / 64), block 64, fibers. */
DC_KERNEL warp_ops(int *__restrict__ out, float *__restrict__ fout, const int *__restrict__ in) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, v = in[i];
    int *o = out + 8 * i;
    o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
    o[1] = __shfl_down_sync(0xffffffffu, v, 3);
    o[2] = __shfl_up_sync(0xffffffffu, v, 2);
    o[3] = __shfl_sync(0xffffffffu, v, 7, 16);
    o[4] = __shfl_down_sync(0xffffffffu, v, 1, 8);
    o[5] = (int)__ballot_sync(0xffffffffu, v & 1);
    o[6] = __all_sync(0xffffffffu, v >= 0) + 2 * __any_sync(0xffffffffu, v > 1000);
    o[7] = __shfl_xor_sync(0xffffffffu, v, 1, 2);
    fout[i] = dc_warp_sum((float)v) + dc_warp_max((float)v);
}

/* y = gelu(a * x + b) elementwise, float4 where possible: n a multiple of 4; grid-stride loop;
 * any grid, no fibers. */
DC_KERNEL axpb_gelu(float *__restrict__ y, const float *__restrict__ x, float a, float b, int n) {
    for (int i = 4 * (blockIdx.x * blockDim.x + threadIdx.x); i < n; i += 4 * blockDim.x * gridDim.x) {
        float4 v = dc_load4(x + i);
        v.x = dc_gelu_erf(a * v.x + b);
        v.y = dc_gelu_erf(a * v.y + b);
        v.z = dc_gelu_tanh(a * v.z + b);
        v.w = dc_gelu_tanh(a * v.w + b);
        dc_store4(y + i, v);
    }
}

/* Conversions: half bits -> float -> half bits; float -> half and bf16 bits. 1-D, no fibers. */
DC_KERNEL half_roundtrip(float *__restrict__ f, unsigned short *__restrict__ h, const unsigned short *__restrict__ bits, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    dc_half in;
    in.x = bits[i];
    f[i] = dc_h2f(in);
    h[i] = dc_f2h(f[i]).x;
}
DC_KERNEL float_to_16(unsigned short *__restrict__ h, unsigned short *__restrict__ b, float *__restrict__ bf, const float *__restrict__ x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    h[i] = dc_f2h(x[i]).x;
    dc_bf16 t = dc_f2b(x[i]);
    b[i] = t.x;
    bf[i] = dc_b2f(t);
}

/* Histogram with atomics: bins[idx[i]] += w[i], count[idx[i]] += 1; 1-D, no fibers. */
DC_KERNEL atomic_hist(float *__restrict__ bins, int *__restrict__ count, const int *__restrict__ idx, const float *__restrict__ w, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    dc_atomic_add(&bins[idx[i]], w[i]);
    atomicAdd(&count[idx[i]], 1);
}

/* The prelude's reductions against the same algorithms spelled out with shuffles and barriers
 * (the GPU code of kernel_prelude.cuh, which the emu replaces by one rendezvous each): the emu
 * must give the same bits. out (n, 12): per thread 6 pairs (fast, reference); grid (n / block),
 * block any multiple of 32; fibers. */
DC_DEV float ref_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
DC_DEV float ref_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
DC_DEV float2 ref_block_red2(float2 v, bool max) { /* max: .x only */
    __shared__ float2 part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v.x = max ? ref_warp_max(v.x) : ref_warp_sum(v.x);
    v.y = ref_warp_sum(v.y);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float2 p = lane < nwarps ? part[lane] : make_float2(max ? -DC_INF : 0.0f, 0.0f);
    return make_float2(max ? ref_warp_max(p.x) : ref_warp_sum(p.x), ref_warp_sum(p.y));
}
DC_KERNEL reductions(float *__restrict__ out, const float *__restrict__ in) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = in[2 * i], u = in[2 * i + 1];
    float *o = out + 12 * i;
    o[0] = dc_warp_sum(v), o[1] = ref_warp_sum(v);
    o[2] = dc_warp_max(v), o[3] = ref_warp_max(v);
    o[4] = dc_block_sum(v), o[5] = ref_block_red2(make_float2(v, 0.0f), false).x;
    o[6] = dc_block_max(u), o[7] = ref_block_red2(make_float2(u, 0.0f), true).x;
    const float2 a = dc_block_sum2(make_float2(v, u)), b = ref_block_red2(make_float2(v, u), false);
    o[8] = a.x, o[9] = b.x, o[10] = a.y, o[11] = b.y;
}

/* Bench: iters rounds of a shared-memory exchange between barriers; out (grid, block);
 * 1-D, fibers. */
DC_KERNEL barrier_loop(float *__restrict__ out, int iters) {
    __shared__ float buf[1024];
    float acc = threadIdx.x;
    for (int k = 0; k < iters; k++) {
        buf[threadIdx.x] = acc;
        __syncthreads();
        acc += buf[(threadIdx.x + 1) % blockDim.x];
        __syncthreads();
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

/* Planted bugs (the emu must diagnose them): thread 5 leaves before the barrier; the last
 * thread writes one element past the end of out (n = grid * block). Both 1-D, fibers. */
DC_KERNEL bad_barrier(float *__restrict__ out) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
DC_KERNEL bad_oob(float *__restrict__ out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    __syncthreads();
    out[i + (i == n - 1)] = 2.0f;
}
