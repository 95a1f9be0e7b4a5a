/*
 * The selection algorithm of the MoDTopKGather kernel, run serially on the host with the same
 * __host__ __device__ helpers. Host tests compare it with the reference; the kernel performs the
 * same steps with a block-wide histogram and a block-wide scan.
 */
#pragma once

#include "modRouting.h"

#include <vector>

namespace mod_export
{

//! Select k positions of one row: idxOut[k] ascending, sSelOut[k] the masked scores there.
//! mask may be null (all valid). Returns the number of radix passes used (<= kRadixPasses).
inline int32_t radixSelectRowHost(
    float const* scores, int32_t const* mask, int64_t T, int64_t k, int32_t* idxOut, float* sSelOut)
{
    std::vector<uint64_t> keys(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t)
    {
        keys[t] = selectionKey(maskedScore(scores[t], mask == nullptr || mask[t] != 0), t);
    }
    uint64_t threshold = 0;
    int64_t remaining = k;
    int32_t shift = passShift(0);
    int32_t passes = 0;
    for (int32_t pass = 0; pass < kRadixPasses && k > 0; ++pass)
    {
        shift = passShift(pass);
        int64_t histogram[kRadixBins] = {};
        for (int64_t t = 0; t < T; ++t)
        {
            if (matchesPrefix(keys[t], threshold, shift))
            {
                ++histogram[digitAt(keys[t], shift)];
            }
        }
        BinChoice const choice = chooseBin(histogram, remaining);
        threshold |= static_cast<uint64_t>(choice.bin) << shift;
        remaining = choice.remaining;
        ++passes;
        if (choice.exact)
        {
            break;
        }
    }
    int64_t out = 0;
    for (int64_t t = 0; t < T && out < k; ++t) // compaction in position order: ascending idx
    {
        if (isSelected(keys[t], threshold, shift))
        {
            idxOut[out] = static_cast<int32_t>(t);
            sSelOut[out] = maskedScore(scores[t], mask == nullptr || mask[t] != 0);
            ++out;
        }
    }
    return passes;
}

} // namespace mod_export
