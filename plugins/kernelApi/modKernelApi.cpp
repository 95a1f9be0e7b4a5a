// The C ABI of libmod_export_kernels.so (modKernelApi.h): argument checks, then the plugins' host launchers.
#include "modKernelApi.h"

#include "../cacheAppendPlugin/modCacheAppendKernel.h"
#include "../common/modDecode.h"
#include "../common/modRouting.h"
#include "../scatterPlugin/modScatterKernel.h"
#include "../takeCountPlugin/modTakeCountKernel.h"
#include "../topkGatherPlugin/modTopKGatherKernel.h"

#include <cstdint>
#include <limits>

#define MOD_C_API extern "C" __attribute__((visibility("default")))

using mod_export::ElementType;

namespace
{
thread_local int32_t gLastCudaError = 0;

constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxCapacityDen = 1 << 16;

//! a * b for sizes; false on a negative operand or int64 overflow.
bool multiply(int64_t a, int64_t b, int64_t& out) noexcept
{
    if (a < 0 || b < 0 || (a != 0 && b > std::numeric_limits<int64_t>::max() / a))
    {
        return false;
    }
    out = a * b;
    return true;
}

//! B, T, D, k >= 0, k <= T < 2^31, B*T*D*4 bytes representable; B <= 65535 where a grid's y is B.
bool sizesOk(int64_t B, int64_t T, int64_t D, int64_t k, bool batchOnGridY) noexcept
{
    if (B < 0 || T < 0 || D < 0 || k < 0 || k > T || T > std::numeric_limits<int32_t>::max())
    {
        return false;
    }
    if (batchOnGridY && B > kMaxGridY)
    {
        return false;
    }
    int64_t bt = 0;
    int64_t btd = 0;
    int64_t bytes = 0;
    return multiply(B, T, bt) && multiply(bt, D, btd) && multiply(btd, 4, bytes);
}

bool dtypeOk(int32_t dtype, ElementType& type) noexcept
{
    switch (dtype)
    {
    case MOD_DTYPE_FLOAT32: type = ElementType::kFLOAT32; return true;
    case MOD_DTYPE_FLOAT16: type = ElementType::kFLOAT16; return true;
    case MOD_DTYPE_BFLOAT16: type = ElementType::kBFLOAT16; return true;
    default: return false;
    }
}

//! A pointer may be null only when its tensor has no elements.
bool present(void const* p, int64_t elements) noexcept
{
    return p != nullptr || elements == 0;
}

int32_t fromCuda(cudaError_t status) noexcept
{
    if (status == cudaSuccess)
    {
        return MOD_STATUS_OK;
    }
    gLastCudaError = static_cast<int32_t>(status);
    return MOD_STATUS_CUDA_ERROR;
}

cudaStream_t asStream(void* stream) noexcept
{
    return static_cast<cudaStream_t>(stream);
}
} // namespace

MOD_C_API int32_t mod_kernels_abi_version(void)
{
    return MOD_KERNELS_ABI_VERSION;
}

MOD_C_API char const* mod_kernels_status_string(int32_t status)
{
    switch (status)
    {
    case MOD_STATUS_OK: return "ok";
    case MOD_STATUS_NULL_POINTER: return "a required pointer is null";
    case MOD_STATUS_BAD_SIZE: return "bad size (negative, k > T, T >= 2^31, B > 65535 or overflow)";
    case MOD_STATUS_BAD_DTYPE: return "unknown dtype code (0 float32, 1 float16, 2 bfloat16)";
    case MOD_STATUS_BAD_ATTRIBUTE: return "bad attribute (gate 0/1, capacity 0 < num <= den <= 65536)";
    case MOD_STATUS_CUDA_ERROR: return "a CUDA call failed";
    default: return "unknown status";
    }
}

MOD_C_API int32_t mod_kernels_last_cuda_error(void)
{
    return gLastCudaError;
}

MOD_C_API int64_t mod_kernels_capacity_k(int64_t T, int64_t num, int64_t den)
{
    if (T < 0 || den < 1 || den > kMaxCapacityDen || num < 1 || num > den)
    {
        return -1;
    }
    return mod_export::capacityK(T, num, den);
}

MOD_C_API int32_t mod_kernels_topk_select(
    float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx, float* s_sel, void* stream)
{
    if (!sizesOk(B, T, 1, k, false))
    {
        return MOD_STATUS_BAD_SIZE;
    }
    if (!present(scores, B * T) || !present(idx, B * k) || !present(s_sel, B * k))
    {
        return MOD_STATUS_NULL_POINTER;
    }
    return fromCuda(mod_export::launchTopKSelect(scores, mask, B, T, k, idx, s_sel, asStream(stream)));
}

MOD_C_API int32_t mod_kernels_gather_rows(void const* x, int32_t dtype, int32_t const* idx, int64_t B, int64_t T,
    int64_t D, int64_t k, void* x_sel, void* stream)
{
    ElementType type{};
    if (!dtypeOk(dtype, type))
    {
        return MOD_STATUS_BAD_DTYPE;
    }
    if (!sizesOk(B, T, D, k, true))
    {
        return MOD_STATUS_BAD_SIZE;
    }
    if (!present(x, B * k * D) || !present(idx, B * k) || !present(x_sel, B * k * D))
    {
        return MOD_STATUS_NULL_POINTER;
    }
    return fromCuda(mod_export::launchGatherRows(x, type, idx, B, T, D, k, x_sel, asStream(stream)));
}

MOD_C_API int32_t mod_kernels_topk_gather(void const* x, int32_t dtype, float const* scores, int32_t const* mask,
    int64_t B, int64_t T, int64_t D, int64_t k, void* x_sel, int32_t* idx, float* s_sel, void* stream)
{
    ElementType type{};
    if (!dtypeOk(dtype, type))
    {
        return MOD_STATUS_BAD_DTYPE;
    }
    if (!sizesOk(B, T, D, k, true))
    {
        return MOD_STATUS_BAD_SIZE;
    }
    if (!present(x, B * k * D) || !present(scores, B * T) || !present(x_sel, B * k * D) || !present(idx, B * k)
        || !present(s_sel, B * k))
    {
        return MOD_STATUS_NULL_POINTER;
    }
    return fromCuda(
        mod_export::launchTopKGather(x, type, scores, mask, B, T, D, k, x_sel, idx, s_sel, asStream(stream)));
}

MOD_C_API int32_t mod_kernels_scatter(void const* x, int32_t dtype, int32_t const* idx, void const* x_sel,
    void const* y_sel, float const* s_sel, int64_t B, int64_t T, int64_t D, int64_t k, int32_t gate, void* out,
    void* stream)
{
    ElementType type{};
    if (!dtypeOk(dtype, type))
    {
        return MOD_STATUS_BAD_DTYPE;
    }
    if (gate != static_cast<int32_t>(mod_export::Gate::kIDENTITY)
        && gate != static_cast<int32_t>(mod_export::Gate::kSIGMOID))
    {
        return MOD_STATUS_BAD_ATTRIBUTE;
    }
    if (!sizesOk(B, T, D, k, true))
    {
        return MOD_STATUS_BAD_SIZE;
    }
    if (!present(x, B * T * D) || !present(out, B * T * D) || !present(idx, B * k) || !present(s_sel, B * k)
        || !present(x_sel, B * k * D) || !present(y_sel, B * k * D))
    {
        return MOD_STATUS_NULL_POINTER;
    }
    return fromCuda(mod_export::launchScatter(
        x, type, idx, x_sel, y_sel, s_sel, B, T, D, k, static_cast<mod_export::Gate>(gate), out, asStream(stream)));
}

MOD_C_API int32_t mod_kernels_take_count(uint8_t const* take, int64_t B, int32_t* rows, int32_t* count, void* stream)
{
    if (B < 0 || B > mod_export::kMaxDecodeBatch)
    {
        return MOD_STATUS_BAD_SIZE;
    }
    if (count == nullptr || !present(take, B) || !present(rows, B))
    {
        return MOD_STATUS_NULL_POINTER;
    }
    return fromCuda(mod_export::launchTakeCount(take, B, rows, count, asStream(stream)));
}

MOD_C_API int32_t mod_kernels_cache_append(void const* cache, int32_t dtype, void const* entry, int64_t const* length,
    int32_t const* rows, int64_t n, int64_t B, int64_t H, int64_t S, int64_t Dh, void* out, void* stream)
{
    ElementType type{};
    if (!dtypeOk(dtype, type))
    {
        return MOD_STATUS_BAD_DTYPE;
    }
    int64_t bh = 0;
    int64_t bhs = 0;
    int64_t total = 0;
    int64_t bytes = 0;
    if (B < 0 || H < 0 || S < 0 || Dh < 0 || n < 0 || n > B || B > mod_export::kMaxDecodeBatch || !multiply(B, H, bh)
        || !multiply(bh, S, bhs) || !multiply(bhs, Dh, total) || !multiply(total, 4, bytes))
    {
        return MOD_STATUS_BAD_SIZE;
    }
    int64_t const written = n * H * Dh;
    if (!present(cache, total) || !present(out, total) || !present(entry, written) || !present(length, written)
        || !present(rows, written))
    {
        return MOD_STATUS_NULL_POINTER;
    }
    return fromCuda(
        mod_export::launchCacheAppend(cache, type, entry, length, true, rows, n, B, H, S, Dh, out, asStream(stream)));
}
