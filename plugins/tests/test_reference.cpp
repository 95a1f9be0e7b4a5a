// The host reference against hand-computed cases: ties, padding, odd capacities, both gates.
#include "reference/modReference.h"

#include "common/modRouting.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

using mod_export::capacityK;
namespace ref = mod_export::reference;

namespace
{
float const kNegInf = -std::numeric_limits<float>::infinity();

struct Selection
{
    std::vector<float> xSel;
    std::vector<int32_t> idx;
    std::vector<float> sSel;
};

Selection select(std::vector<float> const& x, std::vector<float> const& scores, std::vector<int32_t> const* mask,
    int64_t B, int64_t T, int64_t D, int64_t num, int64_t den)
{
    int64_t const k = capacityK(T, num, den);
    Selection s{std::vector<float>(B * k * D), std::vector<int32_t>(B * k), std::vector<float>(B * k)};
    ref::topKGather(x.data(), scores.data(), mask ? mask->data() : nullptr, B, T, D, num, den, s.xSel.data(),
        s.idx.data(), s.sSel.data());
    return s;
}
} // namespace

TEST(CapacityK, CeilDivClampedToOneAndT)
{
    EXPECT_EQ(capacityK(8, 1, 8), 1);
    EXPECT_EQ(capacityK(9, 1, 8), 2); // ceil(9/8)
    EXPECT_EQ(capacityK(5, 1, 8), 1); // T shorter than the denominator
    EXPECT_EQ(capacityK(1, 1, 8), 1);
    EXPECT_EQ(capacityK(0, 1, 8), 0);
    EXPECT_EQ(capacityK(97, 1, 8), 13); // 12.125 -> 13
    EXPECT_EQ(capacityK(10, 3, 7), 5);  // 30/7 = 4.29 -> 5
    EXPECT_EQ(capacityK(7, 7, 7), 7);
    EXPECT_EQ(capacityK(65536, 1, 8), 8192);
}

TEST(Reference, TiesGoToTheLowerPositionAndIdxIsAscending)
{
    // T=6, k = ceil(6*1/2) = 3; scores 1 at positions 1,3,4,5 -> the lowest three of them: 1,3,4.
    std::vector<float> scores = {0, 1, 0, 1, 1, 1};
    std::vector<float> x = {10, 11, 12, 13, 14, 15};
    Selection s = select(x, scores, nullptr, 1, 6, 1, 1, 2);
    EXPECT_EQ(s.idx, (std::vector<int32_t>{1, 3, 4}));
    EXPECT_EQ(s.xSel, (std::vector<float>{11, 13, 14}));
}

TEST(Reference, AllEqualScoresSelectTheFirstK)
{
    std::vector<float> scores(16, 0.5f);
    std::vector<float> x(16, 0.0f);
    Selection s = select(x, scores, nullptr, 1, 16, 1, 1, 4);
    EXPECT_EQ(s.idx, (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(Reference, PaddingIsChosenLastWithMinusInfinity)
{
    // Row 0: positions 0,1 padding with the highest raw scores; k = ceil(6*5/6) = 5 > 4 valid tokens.
    std::vector<float> scores = {9, 8, 3, 2, 1, 0};
    std::vector<int32_t> mask = {0, 0, 1, 1, 1, 1};
    std::vector<float> x(6, 1.0f);
    Selection s = select(x, scores, &mask, 1, 6, 1, 5, 6);
    EXPECT_EQ(s.idx, (std::vector<int32_t>{0, 2, 3, 4, 5}));
    EXPECT_EQ(s.sSel[0], kNegInf);
    EXPECT_EQ(s.sSel[1], 3.0f);
}

TEST(Reference, BatchRowsAreIndependent)
{
    std::vector<float> scores = {1, 2, 3, 4, 4, 3, 2, 1};
    std::vector<float> x = {0, 1, 2, 3, 4, 5, 6, 7};
    Selection s = select(x, scores, nullptr, 2, 4, 1, 1, 2);
    EXPECT_EQ(s.idx, (std::vector<int32_t>{2, 3, 0, 1}));
    EXPECT_EQ(s.xSel, (std::vector<float>{2, 3, 4, 5}));
}

TEST(Reference, ScatterSigmoidAndIdentityGates)
{
    // B=1, T=3, D=2, k=1 at position 1, x_sel = [1, 2], y_sel = [3, 6], s = 0.
    std::vector<float> x = {0, 0, 1, 2, 0, 0};
    std::vector<int32_t> idx = {1};
    std::vector<float> xSel = {1, 2};
    std::vector<float> ySel = {3, 6};
    std::vector<float> out(6);
    std::vector<float> s = {0.0f};
    ref::scatter(x.data(), idx.data(), xSel.data(), ySel.data(), s.data(), 1, 3, 2, 1, 1, out.data());
    EXPECT_EQ(out, (std::vector<float>{0, 0, 2, 4, 0, 0})); // sigmoid(0) = 0.5: 1 + 0.5*2, 2 + 0.5*4
    s[0] = 2.0f;
    ref::scatter(x.data(), idx.data(), xSel.data(), ySel.data(), s.data(), 1, 3, 2, 1, 0, out.data());
    EXPECT_EQ(out, (std::vector<float>{0, 0, 5, 10, 0, 0})); // identity: 1 + 2*2, 2 + 2*4
}

TEST(Reference, ScatterNeverUpdatesPaddingTokens)
{
    std::vector<float> x = {7, 8};
    std::vector<int32_t> idx = {0};
    std::vector<float> xSel = {7};
    std::vector<float> ySel = {100};
    std::vector<float> s = {kNegInf};
    std::vector<float> out(2);
    for (int32_t gate : {0, 1})
    {
        ref::scatter(x.data(), idx.data(), xSel.data(), ySel.data(), s.data(), 1, 2, 1, 1, gate, out.data());
        EXPECT_EQ(out, (std::vector<float>{7, 8})) << "gate " << gate;
    }
}
