// A tiny C ABI over the host reference (routing and decode-step ops) and the radix-select emulation, for Python
// (ctypes) tests.
#include "../common/modRadixSelect.h"
#include "modDecodeReference.h"
#include "modReference.h"

#include <cstdint>
#include <vector>

#define MOD_C_API extern "C" __attribute__((visibility("default")))

MOD_C_API int64_t mod_capacity_k(int64_t T, int64_t num, int64_t den)
{
    return mod_export::capacityK(T, num, den);
}

MOD_C_API void mod_reference_topk_gather(float const* x, float const* scores, int32_t const* mask, int64_t B, int64_t T,
    int64_t D, int64_t num, int64_t den, float* xSel, int32_t* idx, float* sSel)
{
    mod_export::reference::topKGather(x, scores, mask, B, T, D, num, den, xSel, idx, sSel);
}

MOD_C_API void mod_reference_scatter(float const* x, int32_t const* idx, float const* xSel, float const* ySel,
    float const* sSel, int64_t B, int64_t T, int64_t D, int64_t k, int32_t gate, float* out)
{
    mod_export::reference::scatter(x, idx, xSel, ySel, sSel, B, T, D, k, gate, out);
}

//! The kernel's selection algorithm (shared __host__ __device__ helpers), one row at a time.
MOD_C_API void mod_radix_select(
    float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx, float* sSel)
{
    for (int64_t b = 0; b < B; ++b)
    {
        mod_export::radixSelectRowHost(
            scores + b * T, mask == nullptr ? nullptr : mask + b * T, T, k, idx + b * k, sSel + b * k);
    }
}

//! MoDTakeCount reference: rows[0..n) (rows must hold B entries); returns n.
MOD_C_API int64_t mod_reference_take_count(uint8_t const* take, int64_t B, int32_t* rows)
{
    std::vector<int32_t> const found = mod_export::reference::takeCount(take, B);
    for (size_t i = 0; i < found.size(); ++i)
    {
        rows[i] = found[i];
    }
    return static_cast<int64_t>(found.size());
}

//! MoDCacheAppend reference, in place on cache[B,H,S,Dh] (float32).
MOD_C_API void mod_reference_cache_append(float* cache, float const* entry, int64_t const* length, int32_t const* rows,
    int64_t n, int64_t B, int64_t H, int64_t S, int64_t Dh)
{
    mod_export::reference::cacheAppend(cache, entry, length, rows, n, B, H, S, Dh);
}
