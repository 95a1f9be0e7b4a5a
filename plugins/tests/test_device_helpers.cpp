// The kernel's selection algorithm (shared __host__ __device__ helpers, run serially) against the
// reference on thousands of random rows with deliberate ties, padding and odd capacities.
#include "common/modRadixSelect.h"
#include "reference/modReference.h"

#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <vector>

using namespace mod_export;

TEST(OrderedBits, IsMonotoneAndZeroSignAgnostic)
{
    std::vector<float> values = {-std::numeric_limits<float>::infinity(), -1e30f, -2.0f, -1.0f, -1e-30f, 0.0f, 1e-30f,
        1.0f, 2.0f, 1e30f, std::numeric_limits<float>::infinity()};
    for (size_t i = 1; i < values.size(); ++i)
    {
        EXPECT_LT(orderedBits(values[i - 1]), orderedBits(values[i])) << values[i - 1] << " vs " << values[i];
    }
    EXPECT_EQ(orderedBits(-0.0f), orderedBits(0.0f));
}

TEST(SelectionKey, PrefersHigherScoreThenLowerPosition)
{
    EXPECT_GT(selectionKey(1.0f, 10), selectionKey(0.5f, 0));
    EXPECT_GT(selectionKey(1.0f, 3), selectionKey(1.0f, 4));
    EXPECT_GT(selectionKey(-1.0f, 65535), selectionKey(maskedScore(5.0f, false), 0));
}

TEST(ChooseBin, FindsTheBinOfTheKthLargest)
{
    int64_t hist[kRadixBins] = {};
    hist[255] = 2;
    hist[100] = 5;
    hist[3] = 10;
    BinChoice c = chooseBin(hist, 4); // 2 above, 2 more needed from bin 100
    EXPECT_EQ(c.bin, 100);
    EXPECT_EQ(c.remaining, 2);
    EXPECT_FALSE(c.exact);
    c = chooseBin(hist, 7); // 2 + 5 exactly
    EXPECT_EQ(c.bin, 100);
    EXPECT_TRUE(c.exact);
}

TEST(RadixSelect, MatchesReferenceOnRandomRowsWithTiesAndPadding)
{
    std::mt19937 rng(1234);
    int64_t cases = 0;
    int64_t earlyExits = 0;
    for (int32_t iter = 0; iter < 4000; ++iter)
    {
        int64_t const T = 1 + static_cast<int64_t>(rng() % (iter < 3800 ? 300 : 5000));
        int64_t const den = 1 + rng() % 16;
        int64_t const num = 1 + rng() % den;
        int32_t const levels = 1 + rng() % 5; // few distinct scores -> many exact ties
        bool const wide = rng() % 3 == 0;
        double const padRate = (rng() % 3) * 0.35;
        std::uniform_real_distribution<float> uni(-4.0f, 4.0f);
        std::vector<float> scores(T);
        std::vector<int32_t> mask(T);
        for (int64_t t = 0; t < T; ++t)
        {
            scores[t] = wide ? uni(rng) : static_cast<float>(rng() % levels) * 0.5f - 1.0f;
            mask[t] = (rng() % 1000) >= padRate * 1000 ? 1 : 0;
        }
        int64_t const k = capacityK(T, num, den);
        std::vector<float> x(T, 0.0f);
        std::vector<float> xSel(k);
        std::vector<int32_t> refIdx(k);
        std::vector<float> refS(k);
        reference::topKGather(
            x.data(), scores.data(), mask.data(), 1, T, 1, num, den, xSel.data(), refIdx.data(), refS.data());
        std::vector<int32_t> idx(k, -1);
        std::vector<float> sSel(k);
        int32_t const passes = radixSelectRowHost(scores.data(), mask.data(), T, k, idx.data(), sSel.data());
        ASSERT_EQ(idx, refIdx) << "T=" << T << " k=" << k << " iter " << iter;
        for (int64_t j = 0; j < k; ++j)
        {
            ASSERT_EQ(orderedBits(sSel[j]), orderedBits(refS[j]));
        }
        earlyExits += passes < kRadixPasses;
        ++cases;
    }
    EXPECT_EQ(cases, 4000);
    EXPECT_GT(earlyExits, 0) << "the early exit path was never exercised";
}

TEST(RadixSelect, HandlesLongRowsBeyondTensorRTTopKLimit)
{
    int64_t const T = 65536;
    int64_t const k = capacityK(T, 1, 8); // 8192 > 3840
    std::vector<float> scores(T);
    for (int64_t t = 0; t < T; ++t)
    {
        scores[t] = static_cast<float>((t * 7919) % 1000); // many ties
    }
    std::vector<float> x(T, 0.0f);
    std::vector<float> xSel(k);
    std::vector<int32_t> refIdx(k);
    std::vector<float> refS(k);
    reference::topKGather(x.data(), scores.data(), nullptr, 1, T, 1, 1, 8, xSel.data(), refIdx.data(), refS.data());
    std::vector<int32_t> idx(k);
    std::vector<float> sSel(k);
    radixSelectRowHost(scores.data(), nullptr, T, k, idx.data(), sSel.data());
    EXPECT_EQ(idx, refIdx);
}

TEST(GateValue, MatchesDefinition)
{
    EXPECT_FLOAT_EQ(gateValue(0.0f, Gate::kSIGMOID), 0.5f);
    EXPECT_FLOAT_EQ(gateValue(2.0f, Gate::kIDENTITY), 2.0f);
    EXPECT_EQ(gateValue(-std::numeric_limits<float>::infinity(), Gate::kSIGMOID), 0.0f);
    EXPECT_EQ(gateValue(-std::numeric_limits<float>::infinity(), Gate::kIDENTITY), 0.0f);
    EXPECT_FLOAT_EQ(gatedUpdate(1.0f, 3.0f, 0.25f), 1.5f);
}
