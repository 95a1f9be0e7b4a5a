#include "modTakeCountKernel.h"

namespace mod_export
{
namespace
{

constexpr int32_t kWarp = 32;

//! One warp walks the rows 32 at a time: a ballot of the flags, each taking lane writes at the running count plus
//! the number of taking lanes below it, so rows come out ascending (the order of compactTakingRows).
__global__ void __launch_bounds__(kWarp) takeCountKernel(uint8_t const* take, int64_t B, int32_t* rows, int32_t* count)
{
    int32_t const lane = static_cast<int32_t>(threadIdx.x);
    int32_t n = 0;
    for (int64_t base = 0; base < B; base += kWarp)
    {
        int64_t const b = base + lane;
        bool const taking = b < B && take[b] != 0;
        uint32_t const ballot = __ballot_sync(0xFFFFFFFFu, taking);
        if (taking)
        {
            rows[n + __popc(ballot & ((1u << lane) - 1u))] = static_cast<int32_t>(b);
        }
        n += __popc(ballot);
    }
    if (lane == 0)
    {
        *count = n;
    }
}

} // namespace

cudaError_t launchTakeCount(uint8_t const* take, int64_t B, int32_t* rows, int32_t* count, cudaStream_t stream)
{
    if (B < 0 || count == nullptr || (B > 0 && (take == nullptr || rows == nullptr)))
    {
        return cudaErrorInvalidValue;
    }
    if (B == 0)
    {
        return cudaMemsetAsync(count, 0, sizeof(int32_t), stream); // n = 0: no kernel, no data pointer touched
    }
    takeCountKernel<<<1, kWarp, 0, stream>>>(take, B, rows, count);
    return cudaGetLastError();
}

} // namespace mod_export
