// Host side of the decode-step plugins' TensorRT glue (MoDTakeCount, MoDCacheAppend): the size tensor, the alias
// declaration, shapes, types, formats, serialization round trip and every failure path that must end in an error,
// not a crash. No kernel runs here (no GPU): enqueue is only driven down its validation paths.
#include "cacheAppendPlugin/modCacheAppendPlugin.h"
#include "pluginTestUtils.h"
#include "takeCountPlugin/modTakeCountPlugin.h"

using namespace nvinfer1;
using namespace mod_export;
using namespace mod_test;

namespace
{
MoDTakeCountCreator& takeCountCreator()
{
    return *findCreator<MoDTakeCountCreator>("MoDTakeCount");
}

MoDCacheAppendCreator& cacheAppendCreator()
{
    return *findCreator<MoDCacheAppendCreator>("MoDCacheAppend");
}

template <typename Creator>
std::unique_ptr<IPluginV3> make(Creator& creator, std::vector<PluginField> storage = {})
{
    PluginFieldCollection fc = fields(storage);
    return std::unique_ptr<IPluginV3>(creator.createPlugin("d", &fc, TensorRTPhase::kBUILD));
}

template <typename Creator>
std::unique_ptr<IPluginV3> restore(Creator& creator, std::vector<uint8_t>& blob)
{
    std::vector<PluginField> storage
        = {{kStateFieldName, blob.data(), PluginFieldType::kUNKNOWN, static_cast<int32_t>(blob.size())}};
    PluginFieldCollection fc = fields(storage);
    return std::unique_ptr<IPluginV3>(creator.createPlugin("d", &fc, TensorRTPhase::kRUNTIME));
}
} // namespace

TEST(TakeCountPlugin, DeclaresTheCountAsASizeTensorBoundedByTheBatch)
{
    auto plugin = make(takeCountCreator());
    ASSERT_NE(plugin, nullptr);
    IPluginV3OneBuild* build = buildOf(*plugin);
    EXPECT_EQ(build->getNbOutputs(), 2);
    FakeExprBuilder eb;
    eb.allowSizeTensors = true;
    DimsExprs in[1] = {dimsOf({eb.symbol(true)})};
    DimsExprs out[2];
    ASSERT_EQ(build->getOutputShapes(in, 1, nullptr, 0, out, 2, eb), 0);
    EXPECT_EQ(eb.sizeTensorOutput, 1) << "the count (output 1) is the size tensor";
    EXPECT_EQ(eb.sizeTensorUpper, in[0].d[0]) << "n <= B";
    EXPECT_EQ(eb.sizeTensorOpt, in[0].d[0]) << "opt depends on no size tensor";
    ASSERT_EQ(out[0].nbDims, 1);
    EXPECT_TRUE(out[0].d[0]->isSizeTensor());
    EXPECT_EQ(static_cast<FakeDimExpr const*>(out[0].d[0])->eval(7, 0), 7) << "rows allocated at the upper bound";
    EXPECT_EQ(out[1].nbDims, 0) << "count is 0-D";

    DataType types[2];
    DataType const inTypes[1] = {DataType::kBOOL};
    ASSERT_EQ(build->getOutputDataTypes(types, 2, inTypes, 1), 0);
    EXPECT_EQ(types[0], DataType::kINT32);
    EXPECT_EQ(types[1], DataType::kINT32);

    DynamicPluginTensorDesc io[3] = {desc(DataType::kBOOL), desc(DataType::kINT32), desc(DataType::kINT32)};
    for (int32_t pos = 0; pos < 3; ++pos)
    {
        EXPECT_TRUE(build->supportsFormatCombination(pos, io, 1, 2)) << pos;
    }
    for (DataType t : allDataTypes())
    {
        io[0] = desc(t);
        EXPECT_EQ(build->supportsFormatCombination(0, io, 1, 2), t == DataType::kBOOL);
    }
    io[0] = desc(DataType::kBOOL, TensorFormat::kCHW32);
    EXPECT_FALSE(build->supportsFormatCombination(0, io, 1, 2)) << "linear only";

    PluginTensorDesc rin[1] = {tensor(DataType::kBOOL, {4})};
    PluginTensorDesc rout[2] = {tensor(DataType::kINT32, {-1}), tensor(DataType::kINT32, {})};
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(rin, 1, rout, 2), 0) << "n not known yet";
    rout[0] = tensor(DataType::kINT32, {0});
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(rin, 1, rout, 2), 0) << "n = 0";
    PluginTensorDesc empty[1] = {tensor(DataType::kBOOL, {0})};
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(empty, 1, rout, 2), 0) << "B = 0";
}

TEST(TakeCountPlugin, RoundTripsThroughItsStateAndRejectsOthers)
{
    auto plugin = make(takeCountCreator(), {{"plugin_version", "1", PluginFieldType::kCHAR, 1}});
    ASSERT_NE(plugin, nullptr);
    PluginFieldCollection const* state = runtimeOf(*plugin)->getFieldsToSerialize();
    ASSERT_NE(state, nullptr);
    std::unique_ptr<IPluginV3> restored(takeCountCreator().createPlugin("d", state, TensorRTPhase::kRUNTIME));
    EXPECT_NE(restored, nullptr);
    std::unique_ptr<IPluginV3> cloned(plugin->clone());
    EXPECT_NE(cloned, nullptr);
    EXPECT_STREQ(
        static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE))->getPluginName(),
        "MoDTakeCount");

    CapturingLogger& logger = testLogger();
    std::vector<uint8_t> good = encodeState(PluginKind::kTAKE_COUNT, {});
    for (size_t cut = 0; cut < good.size(); ++cut)
    {
        std::vector<uint8_t> truncated(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
        EXPECT_EQ(restore(takeCountCreator(), truncated), nullptr) << "truncated at " << cut;
    }
    std::vector<uint8_t> other = encodeState(PluginKind::kCACHE_APPEND, {});
    EXPECT_EQ(restore(takeCountCreator(), other), nullptr);
    EXPECT_NE(logger.errors().find("different plugin"), std::string::npos) << logger.errors();
    std::vector<uint8_t> withValue = encodeState(PluginKind::kTAKE_COUNT, {1});
    EXPECT_EQ(restore(takeCountCreator(), withValue), nullptr);
    std::vector<uint8_t> newer = good;
    newer[4] = 2; // format version 2
    logger.clear();
    EXPECT_EQ(restore(takeCountCreator(), newer), nullptr);
    EXPECT_NE(logger.errors().find("format version 2"), std::string::npos) << logger.errors();
    PluginFieldCollection none{};
    EXPECT_EQ(takeCountCreator().createPlugin("d", &none, TensorRTPhase::kRUNTIME), nullptr) << "runtime needs a state";
    EXPECT_EQ(takeCountCreator().createPlugin("d", nullptr, TensorRTPhase::kBUILD), nullptr);
    logger.clear();
    auto unknown = make(takeCountCreator(), {{"capacity_num", "x", PluginFieldType::kCHAR, 1}});
    EXPECT_NE(unknown, nullptr) << "an unknown attribute is logged and ignored";
}

TEST(TakeCountPlugin, BadCallsFailWithAnErrorNotACrash)
{
    auto plugin = make(takeCountCreator());
    IPluginV3OneBuild* build = buildOf(*plugin);
    IPluginV3OneRuntime* runtime = runtimeOf(*plugin);
    CapturingLogger& logger = testLogger();
    FakeExprBuilder eb;
    eb.allowSizeTensors = true;
    DimsExprs in[1] = {dimsOf({eb.symbol(true), eb.constant(1)})};
    DimsExprs out[2];
    EXPECT_EQ(build->getOutputShapes(in, 1, nullptr, 0, out, 2, eb), -1) << "take must be [B]";
    EXPECT_EQ(build->getOutputShapes(in, 1, nullptr, 0, out, 1, eb), -1) << "two outputs";
    DataType types[2];
    DataType const floats[1] = {DataType::kFLOAT};
    EXPECT_EQ(build->getOutputDataTypes(types, 2, floats, 1), -1);
    PluginTensorDesc rin[1] = {tensor(DataType::kBOOL, {4})};
    PluginTensorDesc tooMany[2] = {tensor(DataType::kINT32, {5}), tensor(DataType::kINT32, {})};
    EXPECT_EQ(runtime->onShapeChange(rin, 1, tooMany, 2), -1) << "n > B";
    PluginTensorDesc countRank1[2] = {tensor(DataType::kINT32, {4}), tensor(DataType::kINT32, {1})};
    EXPECT_EQ(runtime->onShapeChange(rin, 1, countRank1, 2), -1) << "count must be 0-D";
    PluginTensorDesc rout[2] = {tensor(DataType::kINT32, {4}), tensor(DataType::kINT32, {})};
    void const* inputs[1] = {nullptr};
    void* outputs[2] = {nullptr, nullptr};
    EXPECT_EQ(runtime->enqueue(rin, rout, inputs, outputs, nullptr, nullptr), -1) << "null pointers, no launch";
    EXPECT_EQ(runtime->enqueue(nullptr, rout, inputs, outputs, nullptr, nullptr), -1);
    EXPECT_GE(logger.errorCount(), 7);
    EXPECT_NE(logger.errors().find("MoDTakeCount::enqueue: count is null"), std::string::npos) << logger.errors();
}

TEST(CacheAppendPlugin, AliasesTheCacheAndKeepsItsShape)
{
    auto plugin = make(cacheAppendCreator());
    ASSERT_NE(plugin, nullptr);
    auto* build = static_cast<IPluginV3OneBuildV2*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    ASSERT_NE(build, nullptr);
    InterfaceInfo const info = build->getInterfaceInfo();
    EXPECT_STREQ(info.kind, "PLUGIN_V3ONE_BUILD");
    EXPECT_EQ(info.major, 2) << "IPluginV3OneBuildV2: getAliasedInput is visible to TensorRT";
    EXPECT_EQ(build->getAliasedInput(0), 0) << "out aliases cache";
    EXPECT_EQ(build->getAliasedInput(1), -1);

    FakeExprBuilder eb;
    IDimensionExpr const* B = eb.symbol(true);
    IDimensionExpr const* H = eb.constant(8);
    IDimensionExpr const* Dh = eb.constant(64);
    DimsExprs in[4]
        = {dimsOf({B, H, eb.symbol(false), Dh}), dimsOf({B, H, eb.constant(1), Dh}), dimsOf({B}), dimsOf({B})};
    DimsExprs out[1];
    ASSERT_EQ(build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb), 0);
    ASSERT_EQ(out[0].nbDims, 4);
    EXPECT_EQ(static_cast<FakeDimExpr const*>(out[0].d[2])->eval(3, 4096), 4096);
    EXPECT_EQ(static_cast<FakeDimExpr const*>(out[0].d[0])->eval(3, 4096), 3);

    for (DataType cacheType : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        for (DataType lengthType : {DataType::kINT32, DataType::kINT64})
        {
            DataType types[1];
            DataType const inTypes[4] = {cacheType, cacheType, lengthType, DataType::kINT32};
            ASSERT_EQ(build->getOutputDataTypes(types, 1, inTypes, 4), 0);
            EXPECT_EQ(types[0], cacheType);
            DynamicPluginTensorDesc io[5]
                = {desc(cacheType), desc(cacheType), desc(lengthType), desc(DataType::kINT32), desc(cacheType)};
            for (int32_t pos = 0; pos < 5; ++pos)
            {
                EXPECT_TRUE(build->supportsFormatCombination(pos, io, 4, 1)) << pos;
            }
        }
    }
    DynamicPluginTensorDesc io[5] = {desc(DataType::kHALF), desc(DataType::kFLOAT), desc(DataType::kINT64),
        desc(DataType::kINT32), desc(DataType::kHALF)};
    EXPECT_FALSE(build->supportsFormatCombination(1, io, 4, 1)) << "entry must have cache's type";
    io[3] = desc(DataType::kINT64);
    EXPECT_FALSE(build->supportsFormatCombination(3, io, 4, 1)) << "rows are int32";

    PluginTensorDesc rin[4] = {tensor(DataType::kHALF, {3, 8, 4096, 64}), tensor(DataType::kHALF, {3, 8, 1, 64}),
        tensor(DataType::kINT64, {3}), tensor(DataType::kINT32, {2})};
    PluginTensorDesc rout[1] = {tensor(DataType::kHALF, {3, 8, 4096, 64})};
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(rin, 4, rout, 1), 0);
    rin[3] = tensor(DataType::kINT32, {0});
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(rin, 4, rout, 1), 0) << "n = 0";
}

TEST(CacheAppendPlugin, BadShapesStatesAndPointersFailWithAnError)
{
    auto plugin = make(cacheAppendCreator());
    IPluginV3OneRuntime* runtime = runtimeOf(*plugin);
    CapturingLogger& logger = testLogger();
    PluginTensorDesc rout[1] = {tensor(DataType::kHALF, {3, 8, 16, 64})};
    auto inputs = [](std::vector<int64_t> entry, int64_t lengthB, int64_t n) {
        return std::vector<PluginTensorDesc>{tensor(DataType::kHALF, {3, 8, 16, 64}), tensor(DataType::kHALF, entry),
            tensor(DataType::kINT64, {lengthB}), tensor(DataType::kINT32, {n})};
    };
    EXPECT_EQ(runtime->onShapeChange(inputs({3, 8, 2, 64}, 3, 1).data(), 4, rout, 1), -1) << "entry is one token";
    EXPECT_EQ(runtime->onShapeChange(inputs({3, 8, 1, 64}, 2, 1).data(), 4, rout, 1), -1) << "length is [B]";
    EXPECT_EQ(runtime->onShapeChange(inputs({3, 8, 1, 64}, 3, 4).data(), 4, rout, 1), -1) << "n <= B";
    PluginTensorDesc otherOut[1] = {tensor(DataType::kHALF, {3, 8, 17, 64})};
    EXPECT_EQ(runtime->onShapeChange(inputs({3, 8, 1, 64}, 3, 1).data(), 4, otherOut, 1), -1) << "out like cache";
    EXPECT_EQ(runtime->onShapeChange(inputs({3, 8, 1, 64}, 3, 1).data(), 3, rout, 1), -1) << "four inputs";
    std::vector<PluginTensorDesc> good = inputs({3, 8, 1, 64}, 3, 2);
    void const* ptrs[4] = {nullptr, nullptr, nullptr, nullptr};
    void* outs[1] = {nullptr};
    EXPECT_EQ(runtime->enqueue(good.data(), rout, ptrs, outs, nullptr, nullptr), -1) << "null pointers, no launch";
    EXPECT_NE(logger.errors().find("MoDCacheAppend::enqueue: cache or out is null"), std::string::npos)
        << logger.errors();
    DataType types[1];
    DataType const bad[4] = {DataType::kINT8, DataType::kINT8, DataType::kINT64, DataType::kINT32};
    EXPECT_EQ(buildOf(*plugin)->getOutputDataTypes(types, 1, bad, 4), -1);

    std::vector<uint8_t> good_state = encodeState(PluginKind::kCACHE_APPEND, {});
    EXPECT_NE(restore(cacheAppendCreator(), good_state), nullptr);
    for (size_t cut = 0; cut < good_state.size(); ++cut)
    {
        std::vector<uint8_t> truncated(good_state.begin(), good_state.begin() + static_cast<std::ptrdiff_t>(cut));
        EXPECT_EQ(restore(cacheAppendCreator(), truncated), nullptr) << "truncated at " << cut;
    }
    std::vector<uint8_t> corrupt = good_state;
    corrupt.back() ^= 0xFF;
    EXPECT_EQ(restore(cacheAppendCreator(), corrupt), nullptr);
    std::vector<uint8_t> scatterState = encodeState(PluginKind::kSCATTER, {1});
    EXPECT_EQ(restore(cacheAppendCreator(), scatterState), nullptr);
    std::vector<uint8_t> trailing = good_state;
    trailing.push_back(0);
    EXPECT_EQ(restore(cacheAppendCreator(), trailing), nullptr);
}
