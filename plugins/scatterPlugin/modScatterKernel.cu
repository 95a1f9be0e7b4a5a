#include "modScatterKernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace mod_export
{
namespace
{

constexpr int32_t kScatterThreads = 128;

template <typename TElem>
__device__ __forceinline__ float toFloat(TElem v)
{
    return static_cast<float>(v);
}

template <typename TElem>
__device__ __forceinline__ TElem fromFloat(float v)
{
    return static_cast<TElem>(v);
}

template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

//! One block per selected row: the gated residual update fused with the write-back.
template <typename TElem>
__global__ void __launch_bounds__(kScatterThreads) scatterUpdateKernel(int32_t const* idx, TElem const* xSel,
    TElem const* ySel, float const* sSel, int64_t T, int64_t D, int64_t k, Gate gate, TElem* out)
{
    constexpr int32_t kVec = 16 / sizeof(TElem);
    union Vec
    {
        uint4 raw;
        TElem e[kVec];
    };
    int64_t const b = blockIdx.y;
    int64_t const j = blockIdx.x;
    int64_t const row = b * k + j;
    float const g = gateValue(sSel[row], gate);
    TElem const* xs = xSel + row * D;
    TElem const* ys = ySel + row * D;
    TElem* dst = out + (b * T + idx[row]) * D;
    bool const vectorOk = (D % kVec == 0) && (reinterpret_cast<uintptr_t>(xs) % 16 == 0)
        && (reinterpret_cast<uintptr_t>(ys) % 16 == 0) && (reinterpret_cast<uintptr_t>(dst) % 16 == 0);
    if (vectorOk)
    {
        for (int64_t i = threadIdx.x; i < D / kVec; i += kScatterThreads)
        {
            Vec a;
            Vec c;
            Vec r;
            a.raw = reinterpret_cast<uint4 const*>(xs)[i];
            c.raw = reinterpret_cast<uint4 const*>(ys)[i];
#pragma unroll
            for (int32_t v = 0; v < kVec; ++v)
            {
                r.e[v] = fromFloat<TElem>(gatedUpdate(toFloat(a.e[v]), toFloat(c.e[v]), g));
            }
            reinterpret_cast<uint4*>(dst)[i] = r.raw;
        }
    }
    else
    {
        for (int64_t i = threadIdx.x; i < D; i += kScatterThreads)
        {
            dst[i] = fromFloat<TElem>(gatedUpdate(toFloat(xs[i]), toFloat(ys[i]), g));
        }
    }
}

template <typename TElem>
cudaError_t scatterTyped(int32_t const* idx, void const* xSel, void const* ySel, float const* sSel, int64_t B,
    int64_t T, int64_t D, int64_t k, Gate gate, void* out, cudaStream_t stream)
{
    dim3 const grid(static_cast<unsigned int>(k), static_cast<unsigned int>(B));
    scatterUpdateKernel<TElem><<<grid, kScatterThreads, 0, stream>>>(idx, static_cast<TElem const*>(xSel),
        static_cast<TElem const*>(ySel), sSel, T, D, k, gate, static_cast<TElem*>(out));
    return cudaGetLastError();
}

} // namespace

cudaError_t launchScatter(void const* x, ElementType type, int32_t const* idx, void const* xSel, void const* ySel,
    float const* sSel, int64_t B, int64_t T, int64_t D, int64_t k, Gate gate, void* out, cudaStream_t stream)
{
    size_t const bytes = static_cast<size_t>(B * T * D) * elementSize(type);
    if (out != x && bytes > 0)
    {
        cudaError_t const copied = cudaMemcpyAsync(out, x, bytes, cudaMemcpyDeviceToDevice, stream);
        if (copied != cudaSuccess)
        {
            return copied;
        }
    }
    if (B == 0 || k == 0 || D == 0)
    {
        return cudaSuccess;
    }
    if (B > 65535)
    {
        return cudaErrorInvalidConfiguration;
    }
    switch (type)
    {
    case ElementType::kFLOAT32: return scatterTyped<float>(idx, xSel, ySel, sSel, B, T, D, k, gate, out, stream);
    case ElementType::kFLOAT16: return scatterTyped<__half>(idx, xSel, ySel, sSel, B, T, D, k, gate, out, stream);
    case ElementType::kBFLOAT16:
        return scatterTyped<__nv_bfloat16>(idx, xSel, ySel, sSel, B, T, D, k, gate, out, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace mod_export
