#include "modTopKGatherKernel.h"

#include "../common/modRouting.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cub/block/block_scan.cuh>

namespace mod_export
{
namespace
{

constexpr int32_t kSelectThreads = 1024;
constexpr int32_t kGatherThreads = 128;

__device__ __forceinline__ uint64_t keyAt(float const* scores, int32_t const* mask, int64_t t)
{
    return selectionKey(maskedScore(scores[t], mask == nullptr || mask[t] != 0), t);
}

//! One block per row: MSB-first radix select of the k-th largest key, then an ascending compaction.
template <int32_t kThreads>
__global__ void __launch_bounds__(kThreads)
    topKSelectKernel(float const* scores, int32_t const* mask, int64_t T, int64_t k, int32_t* idx, float* sSel)
{
    int64_t const row = blockIdx.x;
    float const* rowScores = scores + row * T;
    int32_t const* rowMask = mask == nullptr ? nullptr : mask + row * T;

    __shared__ unsigned int histogram[kRadixBins];
    __shared__ uint64_t threshold;
    __shared__ int64_t remaining;
    __shared__ int32_t finalShift;
    __shared__ int32_t done;
    if (threadIdx.x == 0)
    {
        threshold = 0;
        remaining = k;
        finalShift = passShift(0);
        done = k == 0;
    }
    __syncthreads();

    for (int32_t pass = 0; pass < kRadixPasses; ++pass)
    {
        if (done) // uniform: written by thread 0 before the last barrier
        {
            break;
        }
        int32_t const shift = passShift(pass);
        for (int32_t i = threadIdx.x; i < kRadixBins; i += kThreads)
        {
            histogram[i] = 0;
        }
        __syncthreads();
        uint64_t const prefix = threshold;
        for (int64_t t = threadIdx.x; t < T; t += kThreads)
        {
            uint64_t const key = keyAt(rowScores, rowMask, t);
            if (matchesPrefix(key, prefix, shift))
            {
                atomicAdd(&histogram[digitAt(key, shift)], 1u);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0)
        {
            int64_t counts[kRadixBins];
            for (int32_t i = 0; i < kRadixBins; ++i)
            {
                counts[i] = histogram[i];
            }
            BinChoice const choice = chooseBin(counts, remaining);
            threshold = prefix | (static_cast<uint64_t>(choice.bin) << shift);
            remaining = choice.remaining;
            finalShift = shift;
            done = choice.exact;
        }
        __syncthreads();
    }

    using BlockScan = cub::BlockScan<int32_t, kThreads>;
    __shared__ typename BlockScan::TempStorage scanStorage;
    uint64_t const thresholdKey = threshold;
    int32_t const shift = finalShift;
    int64_t written = 0;
    for (int64_t tile = 0; tile < T; tile += kThreads)
    {
        int64_t const t = tile + threadIdx.x;
        int32_t const flag = (t < T && isSelected(keyAt(rowScores, rowMask, t), thresholdKey, shift)) ? 1 : 0;
        int32_t offset = 0;
        int32_t total = 0;
        BlockScan(scanStorage).ExclusiveSum(flag, offset, total);
        if (flag)
        {
            int64_t const j = row * k + written + offset;
            idx[j] = static_cast<int32_t>(t);
            sSel[j] = maskedScore(rowScores[t], rowMask == nullptr || rowMask[t] != 0);
        }
        written += total;
        __syncthreads(); // scanStorage is reused by the next tile
    }
}

//! One block per selected row; 16-byte vectors when the row size and both pointers allow it.
template <typename TElem>
__global__ void __launch_bounds__(kGatherThreads)
    gatherRowsKernel(TElem const* x, int32_t const* idx, int64_t T, int64_t D, int64_t k, TElem* xSel)
{
    int64_t const b = blockIdx.y;
    int64_t const j = blockIdx.x;
    int64_t const t = idx[b * k + j];
    TElem const* src = x + (b * T + t) * D;
    TElem* dst = xSel + (b * k + j) * D;
    int64_t const bytes = D * static_cast<int64_t>(sizeof(TElem));
    bool const vectorOk = (bytes % 16 == 0) && (reinterpret_cast<uintptr_t>(src) % 16 == 0)
        && (reinterpret_cast<uintptr_t>(dst) % 16 == 0);
    if (vectorOk)
    {
        uint4 const* src4 = reinterpret_cast<uint4 const*>(src);
        uint4* dst4 = reinterpret_cast<uint4*>(dst);
        for (int64_t i = threadIdx.x; i < bytes / 16; i += kGatherThreads)
        {
            dst4[i] = src4[i];
        }
    }
    else
    {
        for (int64_t i = threadIdx.x; i < D; i += kGatherThreads)
        {
            dst[i] = src[i];
        }
    }
}

template <typename TElem>
cudaError_t gatherTyped(
    void const* x, int32_t const* idx, int64_t B, int64_t T, int64_t D, int64_t k, void* xSel, cudaStream_t stream)
{
    dim3 const grid(static_cast<unsigned int>(k), static_cast<unsigned int>(B));
    gatherRowsKernel<TElem>
        <<<grid, kGatherThreads, 0, stream>>>(static_cast<TElem const*>(x), idx, T, D, k, static_cast<TElem*>(xSel));
    return cudaGetLastError();
}

} // namespace

cudaError_t launchGatherRows(void const* x, ElementType type, int32_t const* idx, int64_t B, int64_t T, int64_t D,
    int64_t k, void* xSel, cudaStream_t stream)
{
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
    case ElementType::kFLOAT32: return gatherTyped<float>(x, idx, B, T, D, k, xSel, stream);
    case ElementType::kFLOAT16: return gatherTyped<__half>(x, idx, B, T, D, k, xSel, stream);
    case ElementType::kBFLOAT16: return gatherTyped<__nv_bfloat16>(x, idx, B, T, D, k, xSel, stream);
    }
    return cudaErrorInvalidValue;
}

cudaError_t launchTopKSelect(float const* scores, int32_t const* mask, int64_t B, int64_t T, int64_t k, int32_t* idx,
    float* sSel, cudaStream_t stream)
{
    if (B == 0 || k == 0)
    {
        return cudaSuccess;
    }
    if (B > 2147483647LL || T > 2147483647LL || k > T)
    {
        return cudaErrorInvalidConfiguration;
    }
    topKSelectKernel<kSelectThreads>
        <<<static_cast<unsigned int>(B), kSelectThreads, 0, stream>>>(scores, mask, T, k, idx, sSel);
    return cudaGetLastError();
}

cudaError_t launchTopKGather(void const* x, ElementType type, float const* scores, int32_t const* mask, int64_t B,
    int64_t T, int64_t D, int64_t k, void* xSel, int32_t* idx, float* sSel, cudaStream_t stream)
{
    cudaError_t const status = launchTopKSelect(scores, mask, B, T, k, idx, sSel, stream);
    if (status != cudaSuccess)
    {
        return status;
    }
    return launchGatherRows(x, type, idx, B, T, D, k, xSel, stream);
}

} // namespace mod_export
