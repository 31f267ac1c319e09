// Block-FP8 (128 x 128) quantization of a contiguous (M, K) weight whose rows are not 16-element aligned
// (K % 16 != 0), so that row starts fall anywhere inside a 16-byte group of the fp8 output.
//
// Compiled at run time by NVRTC for the GPU at hand (compat/fp8/_cuda.py); no headers are included.
// Numerics are those of compat.fp8.quantize.quantize_reference_core, bit for bit:
//   amax over the block (|x| exact), amax_eff = 448 if amax == 0 else max(amax, 1e-30),
//   scale_inv = amax_eff / 448 and qscale = 448 / amax_eff (IEEE round-to-nearest divisions),
//   q = e4m3(satfinite(x * qscale)) with round-to-nearest-even; NaN/Inf in a block -> amax = +inf.
//
// Layout of the work: one CTA per 128 x 128 block. The fp8 output is written in whole, aligned 16-byte groups
// only: a group belongs to the block that holds its first element. The last group a block owns in a row may run
// into the next block of that row or into the first block of the next row; those elements are scaled with that
// block's scale, which this CTA computes itself (an extra read of that block, served from L2 because the CTA
// that owns it reads it at about the same time). No CTA waits on another, so there is no ordering to get wrong.
// Each thread keeps the groups it loaded for the amax in registers and quantizes them from there: the weight is
// read once from HBM and q written once.

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef long long i64;

#define BM 128
#define BN 128
#define NT 256                      // threads per CTA
#define GROUP 16                    // elements per output group: 16 bytes of e4m3

#define SLOTS 9                     // groups a 128-wide row segment touches at most: ceil((15 + 128) / 16)
#define ITEMS 5                     // ceil(BM * SLOTS / NT): groups per thread
#define FP8_MAX 448.0f
#define AMAX_FLOOR 1e-30f

// KIND 0: bfloat16, 1: float16, 2: float32. WORDS: 32-bit words per group of 16 elements.
template <int KIND> struct Kind { enum { WORDS = 8, BYTES = 2 }; };
template <> struct Kind<2> { enum { WORDS = 16, BYTES = 4 }; };

__device__ __forceinline__ float inf_f32() { return __int_as_float(0x7f800000); }

// Running max of |x| over one word, on the raw bits: non-negative floats order like their bits. The 16-bit kinds
// use the NaN-propagating packed max (sm_80+); NaN is folded into +inf when the word maximum becomes a float.
template <int KIND> __device__ __forceinline__ u32 amax_word(u32 acc, u32 v);
template <> __device__ __forceinline__ u32 amax_word<0>(u32 acc, u32 v) {
    u32 d;
    asm("max.NaN.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(acc), "r"(v & 0x7fff7fffu));
    return d;
}
template <> __device__ __forceinline__ u32 amax_word<1>(u32 acc, u32 v) {
    u32 d;
    asm("max.NaN.f16x2 %0, %1, %2;" : "=r"(d) : "r"(acc), "r"(v & 0x7fff7fffu));
    return d;
}
template <> __device__ __forceinline__ u32 amax_word<2>(u32 acc, u32 v) { return max(acc, v & 0x7fffffffu); }

__device__ __forceinline__ float half_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ float nan_to_inf(float x) { return x != x ? inf_f32() : x; }

template <int KIND> __device__ __forceinline__ float word_amax(u32 acc);
template <> __device__ __forceinline__ float word_amax<0>(u32 acc) {
    return fmaxf(nan_to_inf(__uint_as_float(acc << 16)), nan_to_inf(__uint_as_float(acc & 0xffff0000u)));
}
template <> __device__ __forceinline__ float word_amax<1>(u32 acc) {
    return fmaxf(nan_to_inf(half_to_f32((u16)(acc & 0xffffu))), nan_to_inf(half_to_f32((u16)(acc >> 16))));
}
template <> __device__ __forceinline__ float word_amax<2>(u32 acc) { return nan_to_inf(__uint_as_float(acc)); }

// Element j (0..15) of a group held in words, as float32.
template <int KIND> __device__ __forceinline__ float elem(const u32 (&w)[Kind<KIND>::WORDS], int j);
template <> __device__ __forceinline__ float elem<0>(const u32 (&w)[8], int j) {
    u32 v = w[j >> 1];
    return __uint_as_float((j & 1) ? (v & 0xffff0000u) : (v << 16));
}
template <> __device__ __forceinline__ float elem<1>(const u32 (&w)[8], int j) {
    u32 v = w[j >> 1];
    return half_to_f32((u16)((j & 1) ? (v >> 16) : (v & 0xffffu)));
}
template <> __device__ __forceinline__ float elem<2>(const u32 (&w)[16], int j) { return __uint_as_float(w[j]); }

// Two float32 -> two e4m3 bytes (lo in the low byte), round-to-nearest-even, saturating to +-448 (sm_89+).
__device__ __forceinline__ u32 e4m3x2(float lo, float hi) {
    u16 d;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(d) : "f"(hi), "f"(lo));
    return (u32)d;
}

// Load the 16 elements of the group starting at flat index g0 (a multiple of 16, so 32/64-byte aligned).
// The tensor's last group may be cut short by its end: element-wise, zero beyond.
template <int KIND>
__device__ __forceinline__ void load_group(const u8* x, i64 g0, i64 total, u32 (&w)[Kind<KIND>::WORDS]) {
    const int WORDS = Kind<KIND>::WORDS;
    if (g0 + GROUP <= total) {
        const uint4* p = reinterpret_cast<const uint4*>(x + g0 * Kind<KIND>::BYTES);
#pragma unroll
        for (int v = 0; v < WORDS / 4; ++v) {
            uint4 t = p[v];
            w[4 * v] = t.x; w[4 * v + 1] = t.y; w[4 * v + 2] = t.z; w[4 * v + 3] = t.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < WORDS; ++k) w[k] = 0u;
#pragma unroll
        for (int j = 0; j < GROUP; ++j) {      // unrolled: constant indices keep w in registers
            if (g0 + j >= total) break;
            if (Kind<KIND>::BYTES == 4) {
                w[j] = reinterpret_cast<const u32*>(x)[g0 + j];
            } else {
                u32 h = reinterpret_cast<const u16*>(x)[g0 + j];
                w[j >> 1] |= (j & 1) ? (h << 16) : h;
            }
        }
    }
}

// max |x| over the elements j in [lo, hi) of one group, as raw-bits accumulator words.
template <int KIND>
__device__ __forceinline__ u32 group_amax(u32 acc, const u32 (&w)[Kind<KIND>::WORDS], int lo, int hi) {
    const int WORDS = Kind<KIND>::WORDS;
    if (lo <= 0 && hi >= GROUP) {
#pragma unroll
        for (int k = 0; k < WORDS; ++k) acc = amax_word<KIND>(acc, w[k]);
    } else {
#pragma unroll
        for (int k = 0; k < WORDS; ++k) {
            u32 m;
            if (Kind<KIND>::BYTES == 4) {
                m = (k >= lo && k < hi) ? 0xffffffffu : 0u;
            } else {
                int j = 2 * k;
                m = ((j >= lo && j < hi) ? 0x0000ffffu : 0u) | ((j + 1 >= lo && j + 1 < hi) ? 0xffff0000u : 0u);
            }
            acc = amax_word<KIND>(acc, w[k] & m);
        }
    }
    return acc;
}

// The row segment of block column bc in row r: flat [f, f + width).
struct Segment { i64 f; int width; };
__device__ __forceinline__ Segment segment(int r, int bc, int K) {
    Segment s;
    s.f = (i64)r * K + (i64)bc * BN;
    s.width = min(BN, K - bc * BN);
    return s;
}

// Block (br, bc)'s amax read by one thread, element by element: the fallback of `neighbour` only.
template <int KIND>
__device__ __noinline__ float serial_amax(const u8* x, int br, int bc, int M, int K) {
    u32 m = 0u;
    for (int r = br * BM; r < min(M, br * BM + BM); ++r) {
        Segment s = segment(r, bc, K);
        for (int j = 0; j < s.width; ++j) {
            u32 bits = Kind<KIND>::BYTES == 4 ? (reinterpret_cast<const u32*>(x)[s.f + j] & 0x7fffffffu)
                                              : (u32)(reinterpret_cast<const u16*>(x)[s.f + j] & 0x7fffu);
            m = max(m, bits);        // non-negative floats order like their bits; NaN bits sort above inf
        }
    }
    if (KIND == 0) return nan_to_inf(__uint_as_float(m << 16));
    if (KIND == 1) return nan_to_inf(half_to_f32((u16)m));
    return nan_to_inf(__uint_as_float(m));
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// amax -> (qscale, scale_inv), exactly as the reference.
__device__ __forceinline__ float2 scales(float amax) {
    float eff = amax == 0.0f ? FP8_MAX : fmaxf(amax, AMAX_FLOOR);
    return make_float2(__fdiv_rn(FP8_MAX, eff), __fdiv_rn(eff, FP8_MAX));
}

// COMPAT_STAGE=1: the groups go global -> shared memory by cp.async (sm_80+), so a thread has all its loads in
// flight without holding them in registers (more CTAs per SM); 16-bit inputs only (fp32 would need 72 KiB).
#ifndef COMPAT_STAGE
#define COMPAT_STAGE 0
#endif
template <int KIND> struct Stage { enum { ON = COMPAT_STAGE && Kind<KIND>::WORDS == 8 }; };

__device__ __forceinline__ void cp_async16(const void* smem, const void* gmem) {
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((u32)a), "l"(gmem) : "memory");
}

// Where group `slot` of row `row` of block (br, bc) lies, and whether it is there at all.
struct Item {
    i64 g0;        // flat index of the group's first element (a multiple of GROUP)
    i64 f;         // the block's segment of this row: [f, own_end)
    i64 own_end;
    int r;         // the row
    bool valid;    // the group touches the segment
};
__device__ __forceinline__ Item item(int i, int br, int bc, int M, int K) {
    Item t;
    int row = i / SLOTS, slot = i - row * SLOTS;
    t.r = br * BM + row;
    t.valid = i < BM * SLOTS && t.r < M;
    Segment s = segment(t.r, bc, K);
    t.f = s.f;
    t.own_end = s.f + s.width;
    t.g0 = (s.f & ~(i64)(GROUP - 1)) + (i64)slot * GROUP;
    t.valid = t.valid && t.g0 < t.own_end;
    return t;
}

// amax over the whole CTA: every thread gets the result. `red` is reused, hence the second barrier.
__device__ __forceinline__ float cta_max(float v, float* red) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float a = red[0];
#pragma unroll
    for (int w = 1; w < NT / 32; ++w) a = fmaxf(a, red[w]);
    __syncthreads();
    return a;
}

// Block `nb`'s amax as its own CTA published it (a 64-bit word: 1 in the high half, the amax bits in the low
// half; zero until published). The CTA that owns it runs before or alongside this one (CTAs start in index
// order), so it is normally there at once; after SPIN polls one thread reads the block itself, so no CTA can wait
// forever on one that is not scheduled.
#define SPIN 20000
template <int KIND>
__device__ float neighbour(const unsigned long long* pub, int nb, int nbk, const u8* x, int M, int K) {
    __shared__ float value;
    if (threadIdx.x == 0) {
        unsigned long long v = 0ull;
        for (int k = 0; k < SPIN && !(v >> 32); ++k) {
            v = *(volatile const unsigned long long*)(pub + nb);
            if (!(v >> 32)) __nanosleep(32);
        }
        value = (v >> 32) ? __uint_as_float((u32)v) : serial_amax<KIND>(x, nb / nbk, nb % nbk, M, K);
    }
    __syncthreads();
    const float a = value;
    __syncthreads();
    return a;
}

template <int KIND>
__device__ void quantize_block(const u8* __restrict__ x, u8* __restrict__ q, float* __restrict__ s_out,
                               unsigned long long* pub, int M, int K, int nbm, int nbk) {
    const int WORDS = Kind<KIND>::WORDS;
    const int bid = blockIdx.x;
    const int br = bid / nbk, bc = bid - br * nbk;
    const i64 total = (i64)M * K;
    __shared__ float red[NT / 32];

    // 1. Load every group this block's rows touch (into registers, or shared memory with COMPAT_STAGE), all loads
    //    issued before any is used (the tensor's cut-short last group, if any, element-wise afterwards).
    constexpr bool STAGE = Stage<KIND>::ON;
    __shared__ uint4 stage[STAGE ? BM * SLOTS * WORDS / 4 : 1];
    u32 cache[STAGE ? 1 : ITEMS][WORDS];
    if constexpr (STAGE) {
        // 16-byte chunks, consecutive threads on consecutive chunks (a group is two chunks): every 32-byte sector
        // is fetched by one instruction. Chunk c is half c % 2 of item c / 2, and lands at stage[c].
#pragma unroll
        for (int it = 0; it < 2 * ITEMS; ++it) {
            const int c = threadIdx.x + it * NT;
            Item t = item(c >> 1, br, bc, M, K);
            if (c < 2 * BM * SLOTS && t.valid && t.g0 + GROUP <= total)
                cp_async16(&stage[c], x + t.g0 * Kind<KIND>::BYTES + 16 * (c & 1));
        }
        asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
        __syncthreads();   // a thread reads groups that other threads staged
    } else {
#pragma unroll
        for (int it = 0; it < ITEMS; ++it) {
            Item t = item(threadIdx.x + it * NT, br, bc, M, K);
            if (t.valid && t.g0 + GROUP <= total) {
                const uint4* p = reinterpret_cast<const uint4*>(x + t.g0 * Kind<KIND>::BYTES);
#pragma unroll
                for (int v = 0; v < WORDS / 4; ++v) {
                    uint4 u = p[v];
                    cache[it][4 * v] = u.x; cache[it][4 * v + 1] = u.y; cache[it][4 * v + 2] = u.z;
                    cache[it][4 * v + 3] = u.w;
                }
            }
        }
    }
    auto get = [&](int it, u32 (&w)[WORDS]) {
        if constexpr (STAGE) {
#pragma unroll
            for (int v = 0; v < WORDS / 4; ++v) {
                uint4 u = stage[(threadIdx.x + it * NT) * (WORDS / 4) + v];
                w[4 * v] = u.x; w[4 * v + 1] = u.y; w[4 * v + 2] = u.z; w[4 * v + 3] = u.w;
            }
        } else {
#pragma unroll
            for (int k = 0; k < WORDS; ++k) w[k] = cache[it][k];
        }
    };
    auto put = [&](int it, const u32 (&w)[WORDS]) {
        if constexpr (STAGE) {
#pragma unroll
            for (int v = 0; v < WORDS / 4; ++v)
                stage[(threadIdx.x + it * NT) * (WORDS / 4) + v] = make_uint4(w[4 * v], w[4 * v + 1], w[4 * v + 2],
                                                                              w[4 * v + 3]);
        } else {
#pragma unroll
            for (int k = 0; k < WORDS; ++k) cache[it][k] = w[k];
        }
    };
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        Item t = item(threadIdx.x + it * NT, br, bc, M, K);
        if (t.valid && t.g0 + GROUP > total) {
            u32 w[WORDS];
            load_group<KIND>(x, t.g0, total, w);
            put(it, w);
        }
    }
    u32 acc = 0u;
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        Item t = item(threadIdx.x + it * NT, br, bc, M, K);
        if (t.valid) {
            u32 w[WORDS];
            get(it, w);
            acc = group_amax<KIND>(acc, w, (int)(t.f - t.g0), (int)(t.own_end - t.g0));
        }
    }
    const float own = cta_max(word_amax<KIND>(acc), red);
    const float2 s_own = scales(own);
    if (threadIdx.x == 0) {
        s_out[bid] = s_own.y;
        atomicExch(pub + bid, (1ull << 32) | (unsigned long long)__float_as_uint(own));
    }
    const float q_own = s_own.x;

    // 2. The groups this block owns (first element inside it) that hold only its own elements: store them now.
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        Item t = item(threadIdx.x + it * NT, br, bc, M, K);
        if (!(t.valid && t.g0 >= t.f && t.g0 + GROUP <= t.own_end)) continue;
        u32 w[WORDS];
        get(it, w);
        u32 out[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            u32 b0 = e4m3x2(__fmul_rn(elem<KIND>(w, 4 * k), q_own),
                            __fmul_rn(elem<KIND>(w, 4 * k + 1), q_own));
            u32 b1 = e4m3x2(__fmul_rn(elem<KIND>(w, 4 * k + 2), q_own),
                            __fmul_rn(elem<KIND>(w, 4 * k + 3), q_own));
            out[k] = b0 | (b1 << 16);
        }
        *reinterpret_cast<uint4*>(q + t.g0) = make_uint4(out[0], out[1], out[2], out[3]);
    }

    // 3. The scales of the blocks whose elements share this block's last group in a row: the next block of the
    //    row, and where a row's last group crosses the row end, the first block of the next row (this stripe's,
    //    or the next stripe's for the stripe's last row). Each was published by its own CTA.
    const int last_width = K - (nbk - 1) * BN;
    const bool wraps = bc == nbk - 1 || (bc == nbk - 2 && last_width < GROUP);
    float right = 0.0f, down0 = own, down1 = 0.0f;
    if (bc + 1 < nbk) right = neighbour<KIND>(pub, bid + 1, nbk, x, M, K);
    if (wraps && bc != 0) down0 = neighbour<KIND>(pub, br * nbk, nbk, x, M, K);
    if (wraps && br + 1 < nbm) down1 = neighbour<KIND>(pub, (br + 1) * nbk, nbk, x, M, K);
    const float q_right = scales(right).x, q_down0 = scales(down0).x, q_down1 = scales(down1).x;

    // 4. Each row's last owned group, which runs past this block: per-element scales, one whole store (the
    //    tensor's cut-short last group element-wise).
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
        Item t = item(threadIdx.x + it * NT, br, bc, M, K);
        if (!(t.valid && t.g0 >= t.f && t.g0 + GROUP > t.own_end)) continue;
        const int n_own = (int)(t.own_end - t.g0);                   // elements of this block
        const int n_row = (int)((i64)(t.r + 1) * K - t.g0);          // ... and of the rest of this row
        const float q_next = (t.r + 1) / BM == br ? q_down0 : q_down1;
        u32 w[WORDS];
        get(it, w);
        float v[GROUP];
#pragma unroll
        for (int j = 0; j < GROUP; ++j) {
            float sc = j < n_own ? q_own : (j < n_row ? q_right : q_next);
            v[j] = __fmul_rn(elem<KIND>(w, j), sc);
        }
        u32 out[4];
#pragma unroll
        for (int k = 0; k < 4; ++k)
            out[k] = e4m3x2(v[4 * k], v[4 * k + 1]) | (e4m3x2(v[4 * k + 2], v[4 * k + 3]) << 16);
        if (t.g0 + GROUP <= total) {
            *reinterpret_cast<uint4*>(q + t.g0) = make_uint4(out[0], out[1], out[2], out[3]);
        } else {
#pragma unroll
            for (int j = 0; j < GROUP; ++j) {
                if (t.g0 + j >= total) break;
                q[t.g0 + j] = (u8)(out[j >> 2] >> (8 * (j & 3)));
            }
        }
    }
}

// One kernel per compile: COMPAT_KIND (0 bf16, 1 fp16, 2 fp32) is set by the compiler options, so a process
// compiles only the input dtypes it quantizes. `pub`: nbm * nbk zeroed 64-bit words (the published amaxes).
#ifndef COMPAT_KIND
#define COMPAT_KIND 0
#endif
// CTAs per SM the register budget must allow (launch bounds): staged 16-bit inputs fit 4 in 64 registers and
// 37 KiB of shared memory each; held in registers they need ~128 (2 per SM); fp32 holds twice as much.
#ifndef MIN_CTAS
#define MIN_CTAS (COMPAT_KIND == 2 ? 1 : (COMPAT_STAGE ? 4 : 2))
#endif
extern "C" __global__ void __launch_bounds__(NT, MIN_CTAS) block_fp8_ragged(const u8* x, u8* q, float* s,
                                                                  unsigned long long* pub, int M, int K, int nbm,
                                                                  int nbk) {
    quantize_block<COMPAT_KIND>(x, q, s, pub, M, K, nbm, nbk);
}
