#include "modCacheAppendKernel.h"

#include "../common/modDecode.h"

namespace mod_export
{
namespace
{

constexpr int32_t kAppendThreads = 128;
constexpr int64_t kMaxGridY = 65535;

//! One block per (listed row j, head h): copies the Dh-element entry into the row's next free slot. Words are 16
//! bytes when the row width and both addresses allow it, else the element's own width.
template <typename TWord, typename TLen>
__global__ void __launch_bounds__(kAppendThreads) cacheAppendKernel(TWord const* entry, TLen const* length,
    int32_t const* rows, int64_t B, int64_t H, int64_t S, int64_t words, TWord* out)
{
    int64_t const j = blockIdx.x;
    int64_t const r = rows[j];
    if (r < 0 || r >= B)
    {
        return;
    }
    for (int64_t h = blockIdx.y; h < H; h += gridDim.y)
    {
        int64_t const dst = appendOffset(r, h, static_cast<int64_t>(length[r]), B, H, S, words);
        if (dst < 0)
        {
            return;
        }
        int64_t const src = entryOffset(r, h, H, words);
        for (int64_t i = threadIdx.x; i < words; i += kAppendThreads)
        {
            out[dst + i] = entry[src + i];
        }
    }
}

template <typename TWord>
void launchWords(void const* entry, void const* length, bool lengthIs64, int32_t const* rows, int64_t n, int64_t B,
    int64_t H, int64_t S, int64_t words, void* out, cudaStream_t stream)
{
    dim3 const grid(static_cast<uint32_t>(n), static_cast<uint32_t>(H < kMaxGridY ? H : kMaxGridY));
    if (lengthIs64)
    {
        cacheAppendKernel<TWord, int64_t><<<grid, kAppendThreads, 0, stream>>>(static_cast<TWord const*>(entry),
            static_cast<int64_t const*>(length), rows, B, H, S, words, static_cast<TWord*>(out));
    }
    else
    {
        cacheAppendKernel<TWord, int32_t><<<grid, kAppendThreads, 0, stream>>>(static_cast<TWord const*>(entry),
            static_cast<int32_t const*>(length), rows, B, H, S, words, static_cast<TWord*>(out));
    }
}

bool aligned16(void const* p)
{
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

} // namespace

cudaError_t launchCacheAppend(void const* cache, ElementType type, void const* entry, void const* length,
    bool lengthIs64, int32_t const* rows, int64_t n, int64_t B, int64_t H, int64_t S, int64_t Dh, void* out,
    cudaStream_t stream)
{
    if (B < 0 || H < 0 || S < 0 || Dh < 0 || n < 0 || n > B || n > INT32_MAX)
    {
        return cudaErrorInvalidValue;
    }
    int64_t const total = B * H * S * Dh;
    size_t const esize = elementSize(type);
    if (total > 0 && (cache == nullptr || out == nullptr))
    {
        return cudaErrorInvalidValue;
    }
    if (total > 0 && out != cache)
    {
        cudaError_t const copied
            = cudaMemcpyAsync(out, cache, static_cast<size_t>(total) * esize, cudaMemcpyDeviceToDevice, stream);
        if (copied != cudaSuccess)
        {
            return copied;
        }
    }
    if (n == 0 || H == 0 || S == 0 || Dh == 0)
    {
        return cudaSuccess; // nothing to write: no kernel, no pointer read
    }
    if (entry == nullptr || length == nullptr || rows == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    int64_t const rowBytes = Dh * static_cast<int64_t>(esize);
    bool const vector = rowBytes % 16 == 0 && aligned16(entry) && aligned16(out);
    if (vector)
    {
        launchWords<uint4>(entry, length, lengthIs64, rows, n, B, H, S, rowBytes / 16, out, stream);
    }
    else if (esize == 4)
    {
        launchWords<uint32_t>(entry, length, lengthIs64, rows, n, B, H, S, Dh, out, stream);
    }
    else
    {
        launchWords<uint16_t>(entry, length, lengthIs64, rows, n, B, H, S, Dh, out, stream);
    }
    return cudaGetLastError();
}

} // namespace mod_export
