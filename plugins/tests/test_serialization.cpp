// The plugins' serialized state (common/modSerialization.h) without TensorRT: the encoding round trips and
// every way a blob can be wrong is told apart. The creators' use of it: test_plugin_failures.cpp.
#include "common/modSerialization.h"

#include <gtest/gtest.h>

#include <random>

using namespace mod_export;

namespace
{
void setWord(std::vector<uint8_t>& blob, size_t word, uint32_t value)
{
    for (int32_t i = 0; i < 4; ++i)
    {
        blob[4 * word + i] = static_cast<uint8_t>(value >> (8 * i));
    }
}

void fixChecksum(std::vector<uint8_t>& blob)
{
    setWord(blob, blob.size() / 4 - 1, detail::fnv1a(blob.data(), blob.size() - 4));
}

StateStatus statusOf(
    std::vector<uint8_t> const& blob, int64_t size = -2, PluginKind kind = PluginKind::kTOPK_GATHER, uint32_t count = 2)
{
    return decodeState(blob.data(), size == -2 ? static_cast<int64_t>(blob.size()) : size, kind, count).status;
}
} // namespace

TEST(StateBlob, RoundTripsValuesAndHasTheDocumentedLayout)
{
    std::vector<uint8_t> const blob = encodeState(PluginKind::kTOPK_GATHER, {3, -7});
    ASSERT_EQ(blob.size(), kStateHeaderBytes + 2 * 4 + 4);
    EXPECT_EQ(std::string(blob.begin(), blob.begin() + 4), "MODX");
    EXPECT_EQ(blob[4], kStateFormatVersion);
    EXPECT_EQ(blob[8], static_cast<uint8_t>(PluginKind::kTOPK_GATHER));
    EXPECT_EQ(blob[12], 2);
    DecodedState const state = decodeState(blob.data(), static_cast<int64_t>(blob.size()), PluginKind::kTOPK_GATHER, 2);
    ASSERT_EQ(state.status, StateStatus::kOK);
    EXPECT_EQ(state.values, (std::vector<int32_t>{3, -7}));
    EXPECT_EQ(describeState(state), "ok");
}

TEST(StateBlob, EveryTruncationIsReportedAsTruncated)
{
    std::vector<uint8_t> const blob = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    for (size_t size = 0; size < blob.size(); ++size)
    {
        EXPECT_EQ(statusOf(blob, static_cast<int64_t>(size)), StateStatus::kTRUNCATED) << size;
    }
    EXPECT_EQ(statusOf(blob, -1), StateStatus::kTRUNCATED);
    EXPECT_EQ(decodeState(nullptr, 28, PluginKind::kTOPK_GATHER, 2).status, StateStatus::kTRUNCATED);
}

TEST(StateBlob, OtherVersionsPluginsCountsAndCorruptionAreToldApart)
{
    std::vector<uint8_t> blob = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    std::vector<uint8_t> v2 = blob;
    setWord(v2, 1, 2);
    fixChecksum(v2);
    DecodedState const other = decodeState(v2.data(), 28, PluginKind::kTOPK_GATHER, 2);
    EXPECT_EQ(other.status, StateStatus::kOTHER_VERSION);
    EXPECT_EQ(other.version, 2u);
    EXPECT_NE(describeState(other).find("format version 2, this library reads version 1"), std::string::npos);
    v2.resize(10); // a version-2 blob of another length still says "other version", not "truncated"
    EXPECT_EQ(statusOf(v2), StateStatus::kOTHER_VERSION);

    std::vector<uint8_t> magic = blob;
    magic[0] = 'N';
    EXPECT_EQ(statusOf(magic), StateStatus::kBAD_MAGIC);
    EXPECT_EQ(statusOf(blob, -2, PluginKind::kSCATTER, 1), StateStatus::kOTHER_PLUGIN);
    EXPECT_EQ(statusOf(blob, -2, PluginKind::kTOPK_GATHER, 1), StateStatus::kBAD_COUNT);
    std::vector<uint8_t> longer = blob;
    longer.push_back(0);
    EXPECT_EQ(statusOf(longer), StateStatus::kTRAILING_BYTES);
    std::vector<uint8_t> hugeCount = blob;
    setWord(hugeCount, 3, 0xFFFFFFFFu);
    EXPECT_EQ(decodeState(hugeCount.data(), 28, PluginKind::kTOPK_GATHER, 0xFFFFFFFFu).status, StateStatus::kBAD_COUNT)
        << "a count beyond kStateMaxValues is never trusted";
}

TEST(StateBlob, EverySingleBitFlipIsDetected)
{
    std::vector<uint8_t> const blob = encodeState(PluginKind::kSCATTER, {1});
    for (size_t byte = 0; byte < blob.size(); ++byte)
    {
        for (int32_t bit = 0; bit < 8; ++bit)
        {
            std::vector<uint8_t> flipped = blob;
            flipped[byte] ^= static_cast<uint8_t>(1u << bit);
            EXPECT_NE(statusOf(flipped, -2, PluginKind::kSCATTER, 1), StateStatus::kOK) << byte << ":" << bit;
        }
    }
}

TEST(StateBlob, RandomBytesNeverDecode)
{
    std::mt19937 rng(3);
    for (int32_t i = 0; i < 20000; ++i)
    {
        std::vector<uint8_t> bytes(rng() % 40);
        for (uint8_t& b : bytes)
        {
            b = static_cast<uint8_t>(rng());
        }
        if (bytes.size() >= 4 && rng() % 2 == 0)
        {
            setWord(bytes, 0, kStateMagic); // get past the magic half the time
        }
        EXPECT_NE(statusOf(bytes), StateStatus::kOK);
    }
}
