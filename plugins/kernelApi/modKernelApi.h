/*
 * A small C ABI over the MoD kernels' host launchers, without TensorRT: libmod_export_kernels.so.
 * For testing and timing the kernels from Python (ctypes) with PyTorch CUDA tensors on a machine that has
 * CUDA but no TensorRT. Pointers are device pointers; `stream` is a cudaStream_t (NULL: default stream).
 *
 * Every function checks its arguments before any CUDA call and returns a status code; nothing throws,
 * aborts or synchronises. A pointer may be NULL only when its tensor has no elements (mask: always).
 * Index contents (idx in range and unique per row) are the caller's contract, as in the plugins.
 */
#ifndef MOD_KERNEL_API_H
#define MOD_KERNEL_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOD_KERNELS_ABI_VERSION 2 /* 2: the decode-step kernels (take_count, cache_append) */

/* Status codes. */
#define MOD_STATUS_OK 0
#define MOD_STATUS_NULL_POINTER 1  /* a required pointer is NULL */
#define MOD_STATUS_BAD_SIZE 2      /* negative size, k > T, T >= 2^31, B > 65535 (gather/scatter), overflow */
#define MOD_STATUS_BAD_DTYPE 3     /* unknown dtype code */
#define MOD_STATUS_BAD_ATTRIBUTE 4 /* gate not 0/1, capacity not 0 < num <= den <= 65536 */
#define MOD_STATUS_CUDA_ERROR 5    /* a CUDA call failed: mod_kernels_last_cuda_error() says which */

/* dtype codes of x / x_sel / y_sel / out. */
#define MOD_DTYPE_FLOAT32 0
#define MOD_DTYPE_FLOAT16 1
#define MOD_DTYPE_BFLOAT16 2

int32_t mod_kernels_abi_version(void);
char const* mod_kernels_status_string(int32_t status);
/* The cudaError_t behind the calling thread's last MOD_STATUS_CUDA_ERROR (0 if none). */
int32_t mod_kernels_last_cuda_error(void);

/* k = min(T, max(1, ceil(T*num/den))) (0 for T = 0); -1 for T < 0 or a bad capacity. */
int64_t mod_kernels_capacity_k(int64_t T, int64_t num, int64_t den);

/* Selection: per row of scores[B,T] (f32; mask[B,T] int32, NULL = no padding) the k best positions,
 * ties to the lower position, into idx[B,k] (int32, ascending) and s_sel[B,k] (f32, -inf at padding). */
int32_t mod_kernels_topk_select(float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx,
    float* s_sel, void* stream);

/* x_sel[B,k,D] = x[b, idx[b,j], :]. */
int32_t mod_kernels_gather_rows(void const* x, int32_t dtype, int32_t const* idx, int64_t B, int64_t T, int64_t D,
    int64_t k, void* x_sel, void* stream);

/* MoDTopKGather: selection, then gather (what the plugin's enqueue runs). */
int32_t mod_kernels_topk_gather(void const* x, int32_t dtype, float const* scores, int32_t const* mask, int64_t B,
    int64_t T, int64_t D, int64_t k, void* x_sel, int32_t* idx, float* s_sel, void* stream);

/* MoDScatter: out = x (skipped when out == x), out[b, idx[b,j]] = x_sel + g(s_sel) * (y_sel - x_sel);
 * gate 0 identity, 1 sigmoid; g = 0 at padding (s = -inf). */
int32_t mod_kernels_scatter(void const* x, int32_t dtype, int32_t const* idx, void const* x_sel, void const* y_sel,
    float const* s_sel, int64_t B, int64_t T, int64_t D, int64_t k, int32_t gate, void* out, void* stream);

/* MoDTakeCount: rows[0..n) = the b with take[b] != 0, ascending (int32; rows holds B entries), *count = n
 * (int32, device). take is bool bytes [B]; B = 0 writes count = 0 only. B <= 2^20. */
int32_t mod_kernels_take_count(uint8_t const* take, int64_t B, int32_t* rows, int32_t* count, void* stream);

/* MoDCacheAppend: out = cache (skipped when out == cache: in place), then out[r, :, length[r], :] = entry[r, :, 0, :]
 * for r in rows[0..n). cache/out [B,H,S,Dh], entry [B,H,1,Dh] of dtype; length [B] int64; rows [n] int32,
 * n <= B. A listed row out of [0,B) or a length out of [0,S) writes nothing; n = 0 launches no kernel. */
int32_t mod_kernels_cache_append(void const* cache, int32_t dtype, void const* entry, int64_t const* length,
    int32_t const* rows, int64_t n, int64_t B, int64_t H, int64_t S, int64_t Dh, void* out, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* MOD_KERNEL_API_H */
