// Host logic of the C++ generate loop: the manifest's generation entry (and the one-line failures), greedy and
// top-k sampling, the cache bookkeeping (prefill compaction plan, lengths, a full cache). No TensorRT, no GPU.
#include "generateLoop.h"

#include <gtest/gtest.h>

#include <map>

using namespace mod_example;

namespace
{
std::string const kManifest = R"({"format": "mod_export.manifest/1", "files": {"model.onnx": {"sha256": "x"}},
  "generation": {"mode": "causal routing", "step": "model.step.onnx", "plugin_prefill": "model.plugin.prefill.onnx",
    "plugin_decode": "model.plugin.decode.onnx", "decode_ops": ["MoDTakeCount", "MoDCacheAppend"],
    "layers": 4, "routed_layers": [1, 3], "heads": 4, "head_dim": 32, "max_context": 4096, "precision": "fp32",
    "prefill_engine": "p.engine", "decode_engine": "d.engine"},
  "parity": "passed"})";
} // namespace

TEST(Manifest, ReadsTheGenerationEntry)
{
    GenerationInfo const info = parseGenerationInfo(kManifest);
    EXPECT_EQ(info.layers, 4);
    EXPECT_EQ(info.routedLayers, (std::vector<int32_t>{1, 3}));
    EXPECT_EQ(info.heads, 4);
    EXPECT_EQ(info.headDim, 32);
    EXPECT_EQ(info.maxContext, 4096);
    EXPECT_EQ(info.prefillEngine, "p.engine");
    EXPECT_EQ(info.decodeEngine, "d.engine");
}

TEST(Manifest, DefaultsTheEngineNamesAndRejectsWhatItCannotUse)
{
    std::string const noEngines
        = R"({"generation": {"layers": 2, "routed_layers": [1], "heads": 2, "head_dim": 8, "max_context": 64}})";
    EXPECT_EQ(parseGenerationInfo(noEngines).decodeEngine, "model.decode.engine");
    EXPECT_EQ(parseGenerationInfo(noEngines).prefillEngine, "model.prefill.engine");
    std::map<std::string, std::string> bad = {
        {R"({"generation": null})", "no generation entry"},
        {R"({"files": {}})", "no generation entry"},
        {R"({"generation": {"layers": 4, "heads": 4, "head_dim": 32, "max_context": 64}})", "routed_layers"},
        {R"({"generation": {"layers": 4, "routed_layers": [1, 9], "heads": 4, "head_dim": 32, "max_context": 64}})",
            "names block 9"},
        {R"({"generation": {"layers": 2.5, "routed_layers": [], "heads": 4, "head_dim": 32, "max_context": 64}})",
            "integer"},
        {R"({"generation": {"layers": 4, "routed_layers": [], "heads": 0, "head_dim": 32, "max_context": 64}})",
            "out of range"},
        {R"({"generation": {"layers": 4, "routed_layers": [], "heads": 4, "max_context": 64}})", "head_dim is missing"},
        {R"({"generation": {"layers": 4)", "not closed"},
    };
    for (auto const& [text, reason] : bad)
    {
        try
        {
            parseGenerationInfo(text);
            ADD_FAILURE() << "accepted: " << text;
        }
        catch (ManifestError const& e)
        {
            EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
        }
    }
}

TEST(Sampling, GreedyTakesTheFirstMaximumAndTopKStaysInTheTopK)
{
    std::vector<float> const logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, -5.0f};
    EXPECT_EQ(greedyToken(logits.data(), 6), 1);
    std::mt19937_64 rng(0);
    EXPECT_EQ(topKToken(logits.data(), 6, 3, 0.0f, rng), 1) << "temperature 0 is greedy";
    std::map<int64_t, int> seen;
    for (int i = 0; i < 2000; ++i)
    {
        ++seen[topKToken(logits.data(), 6, 3, 1.0f, rng)];
    }
    EXPECT_EQ(seen.size(), 3u);
    for (auto const& [id, count] : seen)
    {
        EXPECT_TRUE(id == 1 || id == 3 || id == 4) << id;
        EXPECT_GT(count, 400) << "near-equal logits are drawn about equally";
    }
    EXPECT_EQ(topKToken(logits.data(), 6, 1, 5.0f, rng), 1) << "k = 1 is greedy";
    std::mt19937_64 a(7), b(7);
    EXPECT_EQ(topKToken(logits.data(), 6, 0, 1.0f, a), topKToken(logits.data(), 6, 0, 1.0f, b)) << "seeded";
}

TEST(CacheBook, CompactsPrefillAdvancesTakingRowsAndRefusesAFullCache)
{
    CacheBook book(2, 3, 4);
    uint8_t const take[3 * 5] = {1, 0, 1, 0, 0, /**/ 0, 0, 0, 0, 0, /**/ 1, 1, 1, 1, 0};
    auto const plan = book.compactPrefill(1, take, 5);
    EXPECT_EQ(plan[0], (std::vector<int64_t>{0, 2}));
    EXPECT_TRUE(plan[1].empty()) << "a row that took nothing keeps an empty cache";
    EXPECT_EQ(plan[2], (std::vector<int64_t>{0, 1, 2, 3}));
    EXPECT_EQ(book.lengths(1), (std::vector<int64_t>{2, 0, 4}));
    EXPECT_EQ(book.lengths(0), (std::vector<int64_t>{0, 0, 0}));
    uint8_t const step[3] = {1, 1, 0};
    book.advance(1, step);
    EXPECT_EQ(book.lengths(1), (std::vector<int64_t>{3, 1, 4}));
    uint8_t const none[3] = {0, 0, 0};
    book.advance(1, none);
    EXPECT_EQ(book.lengths(1), (std::vector<int64_t>{3, 1, 4})) << "n = 0: nothing changes";
    uint8_t const full[3] = {0, 0, 1};
    EXPECT_THROW(book.advance(1, full), std::length_error);
    uint8_t const tooLong[3 * 5] = {1, 1, 1, 1, 1};
    EXPECT_THROW(book.compactPrefill(0, tooLong, 5), std::length_error);
    EXPECT_EQ(CacheBook(4, 1, 4096).deviceBytes(4, 32, 2), 4 * (2 * 4 * 4096 * 32 * 2 + 8));
    EXPECT_THROW(CacheBook(0, 1, 1), std::invalid_argument);
}
