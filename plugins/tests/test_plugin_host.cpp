// Host side of the TensorRT glue (built only where TensorRT headers are given): output shapes through an
// IExprBuilder test double, field parsing, serialization round trip, format support, the error recorder.
// Nothing here launches a kernel: the GPU path is not executed on a CPU-only machine.
// Failure paths: test_plugin_failures.cpp; the PluginConfig YAML files: test_plugin_config.cpp.
#include "pluginTestUtils.h"

using namespace nvinfer1;
using namespace mod_export;
using namespace mod_test;

TEST(Registry, GetCreatorsExposesEveryV3CreatorWithNamespaceAndVersion)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    ASSERT_EQ(n, 4);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = dynamic_cast<IPluginCreatorV3One*>(creators[i]);
        ASSERT_NE(c, nullptr);
        EXPECT_STREQ(c->getPluginNamespace(), "mod_export");
        EXPECT_STREQ(c->getPluginVersion(), "1");
        EXPECT_STREQ(creators[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE");
    }
}

TEST(TopKGatherPlugin, OutputShapesAreCeilDivOfDynamicT)
{
    for (auto [num, den] : std::vector<std::pair<int32_t, int32_t>>{{1, 8}, {1, 4}, {3, 7}, {1, 1}, {5, 16}})
    {
        auto plugin = makeTopK(num, den);
        ASSERT_NE(plugin, nullptr);
        IPluginV3OneBuild* build = buildOf(*plugin);
        FakeExprBuilder eb;
        IDimensionExpr const* B = eb.symbol(true);
        IDimensionExpr const* T = eb.symbol(false);
        DimsExprs in[3] = {dimsOf({B, T, eb.constant(512)}), dimsOf({B, T}), dimsOf({B, T})};
        DimsExprs out[3];
        ASSERT_EQ(build->getOutputShapes(in, 3, nullptr, 0, out, 3, eb), 0);
        ASSERT_EQ(out[0].nbDims, 3);
        EXPECT_EQ(static_cast<FakeDimExpr const*>(out[0].d[2])->getConstantValue(), 512);
        for (int64_t T : {1, 2, 5, 7, 8, 9, 97, 4096, 30721, 65536, 1 << 20})
        {
            int64_t const expected = capacityK(T, num, den);
            for (int32_t o = 0; o < 3; ++o)
            {
                EXPECT_EQ(static_cast<FakeDimExpr const*>(out[o].d[1])->eval(3, T), expected)
                    << num << "/" << den << " T=" << T;
                EXPECT_EQ(static_cast<FakeDimExpr const*>(out[o].d[0])->eval(3, T), 3);
            }
        }
        EXPECT_FALSE(out[0].d[1]->isConstant());
    }
}

TEST(TopKGatherPlugin, AcceptsInt64FieldsAsTheOnnxParserMayPassThem)
{
    int64_t num = 1;
    int64_t den = 8;
    std::vector<PluginField> storage = capacityFields(num, den, PluginFieldType::kINT64);
    PluginFieldCollection fc = fields(storage);
    TopKGatherParams const params = parseTopKGatherFields(&fc, TensorRTPhase::kBUILD);
    EXPECT_EQ(params.capacityNum, 1);
    EXPECT_EQ(params.capacityDen, 8);
}

TEST(TopKGatherPlugin, SerializationRoundTripsEveryFieldAndClonesAreIndependent)
{
    auto plugin = makeTopK(3, 7);
    PluginFieldCollection const* serial = runtimeOf(*plugin)->getFieldsToSerialize();
    ASSERT_NE(serial, nullptr);
    ASSERT_EQ(serial->nbFields, 1);
    EXPECT_STREQ(serial->fields[0].name, kStateFieldName);
    EXPECT_EQ(serial->fields[0].type, PluginFieldType::kUNKNOWN);
    std::unique_ptr<IPluginV3> restored(topKCreator().createPlugin("t", serial, TensorRTPhase::kRUNTIME));
    ASSERT_NE(restored, nullptr);
    auto const& params = static_cast<MoDTopKGatherPlugin*>(restored.get())->params();
    EXPECT_EQ(params.capacityNum, 3);
    EXPECT_EQ(params.capacityDen, 7);
    std::unique_ptr<IPluginV3> copy(plugin->clone());
    plugin.reset(); // the clone's field list must not point into the original
    PluginFieldCollection const* copySerial = runtimeOf(*copy)->getFieldsToSerialize();
    std::unique_ptr<IPluginV3> again(topKCreator().createPlugin("t", copySerial, TensorRTPhase::kRUNTIME));
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(static_cast<MoDTopKGatherPlugin*>(again.get())->params().capacityNum, 3);
    EXPECT_EQ(static_cast<MoDTopKGatherPlugin*>(again.get())->params().capacityDen, 7);
    auto* core = static_cast<IPluginV3OneCore*>(copy->getCapabilityInterface(PluginCapabilityType::kCORE));
    EXPECT_STREQ(core->getPluginName(), "MoDTopKGather");
    EXPECT_STREQ(core->getPluginNamespace(), "mod_export");
}

TEST(TopKGatherPlugin, FormatSupport)
{
    auto plugin = makeTopK(1, 8);
    IPluginV3OneBuild* build = buildOf(*plugin);
    for (DataType xType : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8})
    {
        bool const ok = xType != DataType::kINT8;
        DynamicPluginTensorDesc io[6] = {desc(xType), desc(DataType::kFLOAT), desc(DataType::kINT32), desc(xType),
            desc(DataType::kINT32), desc(DataType::kFLOAT)};
        EXPECT_EQ(build->supportsFormatCombination(0, io, 3, 3), ok);
        EXPECT_TRUE(build->supportsFormatCombination(1, io, 3, 3));
        EXPECT_TRUE(build->supportsFormatCombination(2, io, 3, 3));
        EXPECT_EQ(build->supportsFormatCombination(3, io, 3, 3), ok);
        EXPECT_TRUE(build->supportsFormatCombination(4, io, 3, 3));
        EXPECT_TRUE(build->supportsFormatCombination(5, io, 3, 3));
        DataType types[3];
        DataType inTypes[3] = {xType, DataType::kFLOAT, DataType::kINT32};
        testLogger();
        EXPECT_EQ(build->getOutputDataTypes(types, 3, inTypes, 3) == 0, ok);
        if (ok)
        {
            EXPECT_EQ(types[0], xType);
            EXPECT_EQ(types[1], DataType::kINT32);
            EXPECT_EQ(types[2], DataType::kFLOAT);
        }
    }
    DynamicPluginTensorDesc bad[6] = {desc(DataType::kFLOAT), desc(DataType::kHALF), desc(DataType::kINT32),
        desc(DataType::kHALF), desc(DataType::kINT32), desc(DataType::kFLOAT)};
    EXPECT_FALSE(build->supportsFormatCombination(1, bad, 3, 3)) << "scores must be float32";
    EXPECT_FALSE(build->supportsFormatCombination(3, bad, 3, 3)) << "x_sel must have x's type";
    for (DataType maskType : {DataType::kINT64, DataType::kBOOL, DataType::kINT8, DataType::kFLOAT})
    {
        DynamicPluginTensorDesc io[6] = {desc(DataType::kHALF), desc(DataType::kFLOAT), desc(maskType),
            desc(DataType::kHALF), desc(DataType::kINT32), desc(DataType::kFLOAT)};
        EXPECT_FALSE(build->supportsFormatCombination(2, io, 3, 3)) << "mask is int32 only";
    }
    DynamicPluginTensorDesc chw[6] = {desc(DataType::kFLOAT, TensorFormat::kCHW32), desc(DataType::kFLOAT),
        desc(DataType::kINT32), desc(DataType::kFLOAT), desc(DataType::kINT32), desc(DataType::kFLOAT)};
    EXPECT_FALSE(build->supportsFormatCombination(0, chw, 3, 3)) << "linear format only";
    DynamicPluginTensorDesc noMask[5] = {desc(DataType::kHALF), desc(DataType::kFLOAT), desc(DataType::kHALF),
        desc(DataType::kINT32), desc(DataType::kFLOAT)};
    for (int32_t pos = 0; pos < 5; ++pos)
    {
        EXPECT_TRUE(build->supportsFormatCombination(pos, noMask, 2, 3)) << "mask is optional, pos " << pos;
    }
}

TEST(TopKGatherPlugin, RuntimeShapesAreCheckedOnShapeChange)
{
    auto plugin = makeTopK(1, 8);
    PluginTensorDesc in[3] = {
        tensor(DataType::kHALF, {2, 100, 16}), tensor(DataType::kFLOAT, {2, 100}), tensor(DataType::kINT32, {2, 100})};
    PluginTensorDesc out[3]
        = {tensor(DataType::kHALF, {2, 13, 16}), tensor(DataType::kINT32, {2, 13}), tensor(DataType::kFLOAT, {2, 13})};
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(in, 3, out, 3), 0);
    EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(in, 2, out, 3), 0) << "without the optional mask";
}

TEST(ScatterPlugin, FieldsShapesFormatsAndRoundTrip)
{
    for (int32_t gate : {0, 1})
    {
        auto plugin = makeScatter(gate);
        ASSERT_NE(plugin, nullptr);
        std::unique_ptr<IPluginV3> restored(
            scatterCreator().createPlugin("s", runtimeOf(*plugin)->getFieldsToSerialize(), TensorRTPhase::kRUNTIME));
        ASSERT_NE(restored, nullptr);
        EXPECT_EQ(static_cast<int32_t>(static_cast<MoDScatterPlugin*>(restored.get())->gate()), gate);

        IPluginV3OneBuild* build = buildOf(*plugin);
        FakeExprBuilder eb;
        IDimensionExpr const* B = eb.symbol(true);
        IDimensionExpr const* T = eb.symbol(false);
        IDimensionExpr const* D = eb.constant(64);
        IDimensionExpr const* k = eb.operation(DimensionOperation::kCEIL_DIV, *T, *eb.constant(8));
        DimsExprs in[5] = {dimsOf({B, T, D}), dimsOf({B, k}), dimsOf({B, k, D}), dimsOf({B, k, D}), dimsOf({B, k})};
        DimsExprs out[1];
        ASSERT_EQ(build->getOutputShapes(in, 5, nullptr, 0, out, 1, eb), 0);
        EXPECT_EQ(static_cast<FakeDimExpr const*>(out[0].d[1])->eval(2, 1000), 1000);
        DynamicPluginTensorDesc io[6] = {desc(DataType::kBF16), desc(DataType::kINT32), desc(DataType::kBF16),
            desc(DataType::kBF16), desc(DataType::kFLOAT), desc(DataType::kBF16)};
        for (int32_t pos = 0; pos < 6; ++pos)
        {
            EXPECT_TRUE(build->supportsFormatCombination(pos, io, 5, 1)) << pos;
        }
        io[3] = desc(DataType::kFLOAT);
        EXPECT_FALSE(build->supportsFormatCombination(3, io, 5, 1)) << "y_sel must have x's type";

        PluginTensorDesc rin[5] = {tensor(DataType::kBF16, {2, 100, 64}), tensor(DataType::kINT32, {2, 13}),
            tensor(DataType::kBF16, {2, 13, 64}), tensor(DataType::kBF16, {2, 13, 64}),
            tensor(DataType::kFLOAT, {2, 13})};
        PluginTensorDesc rout[1] = {tensor(DataType::kBF16, {2, 100, 64})};
        EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(rin, 5, rout, 1), 0);
    }
}

TEST(ErrorRecorder, AttachedClonesReportToTheContextsRecorderAndReleaseIt)
{
    FakeErrorRecorder recorder;
    FakeResourceContext context(&recorder);
    auto plugin = makeTopK(1, 8);
    {
        std::unique_ptr<IPluginV3> attached(runtimeOf(*plugin)->attachToContext(&context));
        ASSERT_NE(attached, nullptr);
        EXPECT_EQ(recorder.refs(), 1);
        std::unique_ptr<IPluginV3> cloned(attached->clone());
        EXPECT_EQ(recorder.refs(), 2) << "a clone of an attached plugin holds the recorder too";
        CapturingLogger& logger = testLogger();
        PluginTensorDesc in[3] = {tensor(DataType::kHALF, {2, 100, 16}), tensor(DataType::kFLOAT, {2, 99}),
            tensor(DataType::kINT32, {2, 100})};
        PluginTensorDesc out[3] = {
            tensor(DataType::kHALF, {2, 13, 16}), tensor(DataType::kINT32, {2, 13}), tensor(DataType::kFLOAT, {2, 13})};
        EXPECT_EQ(runtimeOf(*attached)->onShapeChange(in, 3, out, 3), -1);
        ASSERT_EQ(recorder.getNbErrors(), 1);
        EXPECT_EQ(recorder.getErrorCode(0), ErrorCode::kINVALID_ARGUMENT);
        std::string const desc = recorder.getErrorDesc(0);
        EXPECT_NE(desc.find("MoDTopKGather::onShapeChange: scores must be [B,T]"), std::string::npos) << desc;
        EXPECT_LE(desc.size(), IErrorRecorder::kMAX_DESC_LENGTH);
        EXPECT_EQ(logger.errorCount(), 1) << "the logger hears it too";
        EXPECT_EQ(runtimeOf(*plugin)->onShapeChange(in, 3, out, 3), -1);
        EXPECT_EQ(recorder.getNbErrors(), 1) << "the build-time plugin has no recorder";
    }
    EXPECT_EQ(recorder.refs(), 0) << "every reference released";
}
