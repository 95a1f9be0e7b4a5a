/*
 * MoD routing helpers shared by the CUDA kernels and the host tests (docs/design.md (routing semantics)).
 *
 * Selection works on a 64-bit key per position that is unique within a row:
 *     key = orderedBits(score) << 32 | (0xFFFFFFFF - position)
 * so "the k largest keys" are exactly "the k largest scores, ties to the lower position". The k-th
 * largest key is found by MSB-first radix select over 8-bit digits; the selected positions are then
 * compacted in position order, which makes idx ascending without a sort.
 */
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MOD_HD __host__ __device__ __forceinline__
#else
#define MOD_HD inline
#endif

namespace mod_export
{

constexpr int32_t kRadixBits = 8;
constexpr int32_t kRadixBins = 1 << kRadixBits;
constexpr int32_t kKeyBits = 64;
constexpr int32_t kRadixPasses = kKeyBits / kRadixBits;

enum class Gate : int32_t
{
    kIDENTITY = 0,
    kSIGMOID = 1,
};

//! k = min(T, max(1, ceil(T * num / den))) in integers; 0 for T = 0.
MOD_HD int64_t capacityK(int64_t T, int64_t num, int64_t den)
{
    if (T <= 0)
    {
        return 0;
    }
    int64_t const k = (T * num + den - 1) / den;
    return k < 1 ? 1 : (k > T ? T : k);
}

MOD_HD uint32_t floatBits(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
#endif
}

//! Score as it enters selection: -inf for padding (mask == 0); NaN is treated as -inf too.
MOD_HD float maskedScore(float score, bool valid)
{
    bool const isNan = score != score;
    return (!valid || isNan) ? -__builtin_huge_valf() : score;
}

//! Monotone map float -> uint32 (a < b  <=>  ordered(a) < ordered(b)); -0.0 and +0.0 map alike.
MOD_HD uint32_t orderedBits(float f)
{
    uint32_t u = floatBits(f == 0.0f ? 0.0f : f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

//! The unique selection key of (score, position): larger key = preferred.
MOD_HD uint64_t selectionKey(float maskedScoreValue, int64_t position)
{
    return (static_cast<uint64_t>(orderedBits(maskedScoreValue)) << 32)
        | static_cast<uint64_t>(0xFFFFFFFFu - static_cast<uint32_t>(position));
}

//! Shift of the digit examined in radix pass `pass` (0 = most significant).
MOD_HD int32_t passShift(int32_t pass)
{
    return kKeyBits - kRadixBits * (pass + 1);
}

//! Does `key` still share the prefix fixed by the passes before the one at `shift`?
MOD_HD bool matchesPrefix(uint64_t key, uint64_t prefix, int32_t shift)
{
    int32_t const high = shift + kRadixBits;
    return high >= kKeyBits ? true : ((key >> high) == (prefix >> high));
}

MOD_HD uint32_t digitAt(uint64_t key, int32_t shift)
{
    return static_cast<uint32_t>((key >> shift) & (kRadixBins - 1));
}

struct BinChoice
{
    int32_t bin;       //!< digit of the k-th largest key at this pass
    int64_t remaining; //!< how many keys inside that bin still need selecting
    bool exact;        //!< the whole bin is selected: selection is decided, stop early
};

//! Given a histogram of the digit over prefix-matching keys and how many keys remain to select,
//! find the bin holding the k-th largest key (scanning from the largest digit down).
MOD_HD BinChoice chooseBin(int64_t const* histogram, int64_t remaining)
{
    int64_t above = 0;
    for (int32_t b = kRadixBins - 1; b >= 0; --b)
    {
        int64_t const count = histogram[b];
        if (above + count >= remaining)
        {
            int64_t const inBin = remaining - above;
            return BinChoice{b, inBin, inBin == count};
        }
        above += count;
    }
    return BinChoice{0, remaining, false}; // unreachable when remaining <= number of keys
}

//! After the last pass (at `shift`): a key is selected iff its bits from `shift` up are >= the threshold's.
MOD_HD bool isSelected(uint64_t key, uint64_t threshold, int32_t shift)
{
    return (key >> shift) >= (threshold >> shift);
}

//! g(s) of docs/design.md (routing semantics, step 7); 0 for padding tokens (s = -inf) whatever the gate.
MOD_HD float gateValue(float s, Gate gate)
{
    if (s == -__builtin_huge_valf())
    {
        return 0.0f;
    }
    if (gate == Gate::kSIGMOID)
    {
#if defined(__CUDA_ARCH__)
        return 1.0f / (1.0f + expf(-s));
#else
        return 1.0f / (1.0f + std::exp(-s));
#endif
    }
    return s;
}

//! The gated residual update of one element, in float32.
MOD_HD float gatedUpdate(float xSel, float ySel, float g)
{
    return xSel + g * (ySel - xSel);
}

} // namespace mod_export
