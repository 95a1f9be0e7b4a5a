// The decode-step ops' index logic (shared MOD_HD helpers, and the count kernel's warp-ballot order emulated on the
// host) against the plain host reference, on random batches with n = 0, n = B and odd sizes. No TensorRT, no GPU.
#include "common/modDecode.h"
#include "reference/modDecodeReference.h"

#include <gtest/gtest.h>

#include <bitset>
#include <random>
#include <vector>

using namespace mod_export;

namespace
{
//! The count kernel's algorithm, lane by lane: 32-row ballots, each taking lane at base + popc(lanes below).
std::vector<int32_t> warpBallotCount(std::vector<uint8_t> const& take)
{
    int64_t const B = static_cast<int64_t>(take.size());
    std::vector<int32_t> rows(static_cast<size_t>(B), -7);
    int32_t n = 0;
    for (int64_t base = 0; base < B; base += 32)
    {
        uint32_t ballot = 0;
        for (int32_t lane = 0; lane < 32; ++lane)
        {
            if (base + lane < B && take[static_cast<size_t>(base + lane)] != 0)
            {
                ballot |= 1u << lane;
            }
        }
        for (int32_t lane = 0; lane < 32; ++lane)
        {
            if ((ballot >> lane) & 1u)
            {
                uint32_t const below = lane == 0 ? 0u : ballot & ((1u << lane) - 1u);
                rows[static_cast<size_t>(n + static_cast<int32_t>(std::bitset<32>(below).count()))]
                    = static_cast<int32_t>(base + lane);
            }
        }
        n += static_cast<int32_t>(std::bitset<32>(ballot).count());
    }
    rows.resize(static_cast<size_t>(n));
    return rows;
}
} // namespace

TEST(TakeCount, HelperAndWarpBallotOrderMatchTheReference)
{
    std::mt19937 rng(18);
    for (int64_t B : {0, 1, 2, 31, 32, 33, 64, 100, 1000, 4096})
    {
        for (double p : {0.0, 0.1, 0.5, 1.0})
        {
            std::bernoulli_distribution coin(p);
            std::vector<uint8_t> take(static_cast<size_t>(B));
            for (auto& t : take)
            {
                t = coin(rng) ? 1 : 0;
            }
            std::vector<int32_t> const expected = reference::takeCount(take.data(), B);
            std::vector<int32_t> rows(static_cast<size_t>(B) + 1, -1);
            int32_t const n = compactTakingRows(take.data(), B, rows.data());
            ASSERT_EQ(n, static_cast<int32_t>(expected.size())) << "B=" << B << " p=" << p;
            rows.resize(static_cast<size_t>(n));
            EXPECT_EQ(rows, expected);
            EXPECT_EQ(warpBallotCount(take), expected) << "B=" << B << " p=" << p;
            if (p == 0.0)
            {
                EXPECT_EQ(n, 0) << "n = 0 when no row takes";
            }
            if (p == 1.0)
            {
                EXPECT_EQ(n, B);
            }
        }
    }
}

TEST(CacheAppend, WritesOnlyListedRowsAtTheirLengths)
{
    int64_t const B = 5, H = 3, S = 6, Dh = 4;
    std::vector<float> cache(static_cast<size_t>(B * H * S * Dh));
    for (size_t i = 0; i < cache.size(); ++i)
    {
        cache[i] = static_cast<float>(i);
    }
    std::vector<float> entry(static_cast<size_t>(B * H * Dh));
    for (size_t i = 0; i < entry.size(); ++i)
    {
        entry[i] = -1.0f - static_cast<float>(i);
    }
    std::vector<int64_t> length = {0, 2, 5, 6, -1}; // row 3 full, row 4 negative: skipped
    std::vector<int32_t> rows = {0, 2, 3, 4, 9};    // row 9 out of range: skipped; row 1 not listed
    std::vector<float> out = cache;
    reference::cacheAppend(out.data(), entry.data(), length.data(), rows.data(), 5, B, H, S, Dh);
    for (int64_t r = 0; r < B; ++r)
    {
        for (int64_t h = 0; h < H; ++h)
        {
            for (int64_t s = 0; s < S; ++s)
            {
                for (int64_t d = 0; d < Dh; ++d)
                {
                    size_t const i = static_cast<size_t>(((r * H + h) * S + s) * Dh + d);
                    bool const written = (r == 0 && s == 0) || (r == 2 && s == 5);
                    float const want = written ? entry[static_cast<size_t>((r * H + h) * Dh + d)] : cache[i];
                    ASSERT_EQ(out[i], want) << r << "," << h << "," << s << "," << d;
                }
            }
        }
    }
    // The kernel's offsets agree with the reference's indexing, and refuse the same writes.
    EXPECT_EQ(appendOffset(2, 1, 5, B, H, S, Dh), ((2 * H + 1) * S + 5) * Dh);
    EXPECT_EQ(appendOffset(3, 0, 6, B, H, S, Dh), -1);
    EXPECT_EQ(appendOffset(4, 0, -1, B, H, S, Dh), -1);
    EXPECT_EQ(appendOffset(9, 0, 0, B, H, S, Dh), -1);
    EXPECT_EQ(entryOffset(2, 1, H, Dh), (2 * H + 1) * Dh);
}

TEST(CacheAppend, NoRowsLeavesTheCacheUntouched)
{
    std::vector<float> cache(2 * 2 * 3 * 2, 1.5f);
    std::vector<float> const before = cache;
    std::vector<float> entry(2 * 2 * 2, 9.0f);
    std::vector<int64_t> length = {0, 1};
    reference::cacheAppend(cache.data(), entry.data(), length.data(), nullptr, 0, 2, 2, 3, 2);
    EXPECT_EQ(cache, before);
}

TEST(CacheAppend, BytesMovedCountTheEntriesAndTheCopyWhenNotAliased)
{
    // Orin-like step: B = 1, 8 heads, S = 4096, Dh = 64, fp16, one taking row.
    int64_t const inPlace = cacheAppendBytes(1, 8, 4096, 64, 1, 2, true);
    EXPECT_EQ(inPlace, 2 * 8 * 64 * 2 + 12);
    EXPECT_EQ(cacheAppendBytes(1, 8, 4096, 64, 1, 2, false) - inPlace, 2 * 8 * 4096 * 64 * 2);
    EXPECT_EQ(cacheAppendBytes(4, 8, 4096, 64, 0, 2, true), 0) << "n = 0 moves nothing";
}
