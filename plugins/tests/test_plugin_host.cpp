// Host side of the TensorRT glue (built only where TensorRT headers are given): output shapes through an
// IExprBuilder test double, field parsing and validation, serialization round trip, format support.
// Nothing here launches a kernel: the GPU path is not executed on a CPU-only machine.
#include "common/modRouting.h"
#include "scatterPlugin/modScatterPlugin.h"
#include "topkGatherPlugin/modTopKGatherPlugin.h"

#include <NvInferImpl.h>
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;
using namespace mod_export;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace
{

//! A dimension expression that can be evaluated for concrete (batch, seq).
class FakeDimExpr final : public IDimensionExpr, public apiv::VDimensionExpr
{
public:
    using Eval = std::function<int64_t(int64_t, int64_t)>;
    FakeDimExpr(Eval eval, bool constant, int64_t value)
        : mEval(std::move(eval))
        , mConstant(constant)
        , mValue(value)
    {
        mImpl = this;
    }
    bool isConstant() const override
    {
        return mConstant;
    }
    int64_t getConstantValue() const override
    {
        return mValue;
    }
    bool isSizeTensor() const override
    {
        return false;
    }
    int64_t eval(int64_t batch, int64_t seq) const
    {
        return mEval(batch, seq);
    }

private:
    Eval mEval;
    bool mConstant;
    int64_t mValue;
};

//! Records expressions and evaluates them; implements every DimensionOperation TensorRT defines.
class FakeExprBuilder final : public IExprBuilder, public apiv::VExprBuilder
{
public:
    FakeExprBuilder()
    {
        mImpl = this;
    }
    IDimensionExpr const* constant(int64_t value) override
    {
        return make([value](int64_t, int64_t) { return value; }, true, value);
    }
    IDimensionExpr const* symbol(bool isBatch)
    {
        return make([isBatch](int64_t b, int64_t s) { return isBatch ? b : s; }, false, 0);
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        auto const& fa = static_cast<FakeDimExpr const&>(a);
        auto const& fb = static_cast<FakeDimExpr const&>(b);
        ++mOperations;
        auto eval = [op, &fa, &fb](int64_t batch, int64_t seq) -> int64_t {
            int64_t const x = fa.eval(batch, seq);
            int64_t const y = fb.eval(batch, seq);
            switch (op)
            {
            case DimensionOperation::kSUM: return x + y;
            case DimensionOperation::kPROD: return x * y;
            case DimensionOperation::kMAX: return x > y ? x : y;
            case DimensionOperation::kMIN: return x < y ? x : y;
            case DimensionOperation::kSUB: return x - y;
            case DimensionOperation::kEQUAL: return x == y;
            case DimensionOperation::kLESS: return x < y;
            case DimensionOperation::kFLOOR_DIV: return x / y;
            case DimensionOperation::kCEIL_DIV: return (x + y - 1) / y;
            }
            return -1;
        };
        bool const both = fa.isConstant() && fb.isConstant();
        return make(eval, both, both ? eval(0, 0) : 0);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        ADD_FAILURE() << "k is a shape expression of T, never a size tensor";
        return nullptr;
    }
    int32_t operations() const
    {
        return mOperations;
    }

private:
    IDimensionExpr const* make(FakeDimExpr::Eval eval, bool constant, int64_t value)
    {
        mExprs.push_back(std::make_unique<FakeDimExpr>(std::move(eval), constant, value));
        return mExprs.back().get();
    }
    std::deque<std::unique_ptr<FakeDimExpr>> mExprs;
    int32_t mOperations{0};
};

PluginFieldCollection fields(std::vector<PluginField>& storage)
{
    PluginFieldCollection fc;
    fc.nbFields = static_cast<int32_t>(storage.size());
    fc.fields = storage.data();
    return fc;
}

template <typename Creator>
Creator* findCreator(char const* name)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    for (int32_t i = 0; i < n; ++i)
    {
        auto* c = dynamic_cast<Creator*>(creators[i]);
        if (c != nullptr && std::string(c->getPluginName()) == name)
        {
            return c;
        }
    }
    return nullptr;
}

std::unique_ptr<IPluginV3> makeTopK(int32_t num, int32_t den)
{
    std::vector<PluginField> storage = {{"capacity_num", &num, PluginFieldType::kINT32, 1},
        {"capacity_den", &den, PluginFieldType::kINT32, 1}};
    PluginFieldCollection fc = fields(storage);
    auto* creator = findCreator<MoDTopKGatherCreator>("MoDTopKGather");
    return std::unique_ptr<IPluginV3>(creator->createPlugin("t", &fc, TensorRTPhase::kBUILD));
}

DynamicPluginTensorDesc desc(DataType type, TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = format;
    return d;
}

} // namespace

TEST(Registry, GetCreatorsExposesBothV3CreatorsWithNamespaceAndVersion)
{
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    ASSERT_EQ(n, 2);
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
        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        FakeExprBuilder eb;
        DimsExprs in[3];
        in[0].nbDims = 3;
        in[0].d[0] = eb.symbol(true);
        in[0].d[1] = eb.symbol(false);
        in[0].d[2] = eb.constant(512);
        in[1].nbDims = 2;
        in[1].d[0] = in[0].d[0];
        in[1].d[1] = in[0].d[1];
        in[2] = in[1];
        DimsExprs out[3];
        ASSERT_EQ(build->getOutputShapes(in, 3, nullptr, 0, out, 3, eb), 0);
        ASSERT_EQ(out[0].nbDims, 3);
        EXPECT_EQ(static_cast<FakeDimExpr const*>(out[0].d[2])->getConstantValue(), 512);
        for (int64_t T : {1, 2, 5, 7, 8, 9, 97, 4096, 30721, 65536, 1 << 20})
        {
            int64_t const expected = capacityK(T, num, den);
            for (int32_t o = 0; o < 3; ++o)
            {
                EXPECT_EQ(static_cast<FakeDimExpr const*>(out[o].d[1])->eval(3, T), expected) << num << "/" << den << " T=" << T;
                EXPECT_EQ(static_cast<FakeDimExpr const*>(out[o].d[0])->eval(3, T), 3);
            }
        }
        EXPECT_FALSE(out[0].d[1]->isConstant());
    }
}

TEST(TopKGatherPlugin, CreationRejectsBadFieldsWithAMessage)
{
    struct Bad
    {
        int32_t num;
        int32_t den;
        char const* needle;
    };
    for (Bad bad : {Bad{1, 0, "capacity_den"}, Bad{1, -8, "capacity_den"}, Bad{0, 8, "capacity_num"},
             Bad{-1, 8, "capacity_num"}, Bad{9, 8, "capacity_num"}})
    {
        TopKGatherParams params;
        std::string error;
        std::vector<PluginField> storage = {{"capacity_num", &bad.num, PluginFieldType::kINT32, 1},
            {"capacity_den", &bad.den, PluginFieldType::kINT32, 1}};
        PluginFieldCollection fc = fields(storage);
        EXPECT_FALSE(parseTopKGatherFields(&fc, params, error));
        EXPECT_NE(error.find(bad.needle), std::string::npos) << error;
        EXPECT_EQ(makeTopK(bad.num, bad.den), nullptr);
    }
    TopKGatherParams params;
    std::string error;
    int32_t num = 1;
    std::vector<PluginField> missing = {{"capacity_num", &num, PluginFieldType::kINT32, 1}};
    PluginFieldCollection fc = fields(missing);
    EXPECT_FALSE(parseTopKGatherFields(&fc, params, error));
    EXPECT_NE(error.find("missing field capacity_den"), std::string::npos);
    float notInt = 1.0f;
    std::vector<PluginField> wrongType = {{"capacity_num", &notInt, PluginFieldType::kFLOAT32, 1}};
    fc = fields(wrongType);
    EXPECT_FALSE(parseTopKGatherFields(&fc, params, error));
    EXPECT_NE(error.find("integer"), std::string::npos);
}

TEST(TopKGatherPlugin, AcceptsInt64FieldsAsTheOnnxParserMayPassThem)
{
    int64_t num = 1;
    int64_t den = 8;
    std::vector<PluginField> storage = {{"capacity_num", &num, PluginFieldType::kINT64, 1},
        {"capacity_den", &den, PluginFieldType::kINT64, 1}};
    PluginFieldCollection fc = fields(storage);
    TopKGatherParams params;
    std::string error;
    ASSERT_TRUE(parseTopKGatherFields(&fc, params, error)) << error;
    EXPECT_EQ(params.capacityNum, 1);
    EXPECT_EQ(params.capacityDen, 8);
}

TEST(TopKGatherPlugin, SerializationRoundTripsEveryFieldAndClonesAreIndependent)
{
    auto plugin = makeTopK(3, 7);
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* serial = runtime->getFieldsToSerialize();
    ASSERT_EQ(serial->nbFields, 2);
    auto* creator = findCreator<MoDTopKGatherCreator>("MoDTopKGather");
    std::unique_ptr<IPluginV3> restored(creator->createPlugin("t", serial, TensorRTPhase::kRUNTIME));
    ASSERT_NE(restored, nullptr);
    auto const& params = static_cast<MoDTopKGatherPlugin*>(restored.get())->params();
    EXPECT_EQ(params.capacityNum, 3);
    EXPECT_EQ(params.capacityDen, 7);
    std::unique_ptr<IPluginV3> copy(plugin->clone());
    plugin.reset(); // the clone's field list must not point into the original
    auto* copyRuntime = static_cast<IPluginV3OneRuntime*>(copy->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* copySerial = copyRuntime->getFieldsToSerialize();
    EXPECT_EQ(*static_cast<int32_t const*>(copySerial->fields[0].data), 3);
    EXPECT_EQ(*static_cast<int32_t const*>(copySerial->fields[1].data), 7);
    auto* core = static_cast<IPluginV3OneCore*>(copy->getCapabilityInterface(PluginCapabilityType::kCORE));
    EXPECT_STREQ(core->getPluginName(), "MoDTopKGather");
    EXPECT_STREQ(core->getPluginNamespace(), "mod_export");
}

TEST(TopKGatherPlugin, FormatSupport)
{
    auto plugin = makeTopK(1, 8);
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    for (DataType xType : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8})
    {
        bool const ok = xType != DataType::kINT8;
        DynamicPluginTensorDesc io[6] = {desc(xType), desc(DataType::kFLOAT), desc(DataType::kINT32), desc(xType),
            desc(DataType::kINT32), desc(DataType::kFLOAT)};
        EXPECT_EQ(build->supportsFormatCombination(0, io, 3, 3), ok);
        EXPECT_TRUE(build->supportsFormatCombination(1, io, 3, 3));
        EXPECT_TRUE(build->supportsFormatCombination(2, io, 3, 3));
        EXPECT_TRUE(build->supportsFormatCombination(3, io, 3, 3));
        EXPECT_TRUE(build->supportsFormatCombination(4, io, 3, 3));
        EXPECT_TRUE(build->supportsFormatCombination(5, io, 3, 3));
        DataType types[3];
        DataType inTypes[3] = {xType, DataType::kFLOAT, DataType::kINT32};
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

TEST(ScatterPlugin, FieldsShapesFormatsAndRoundTrip)
{
    auto* creator = findCreator<MoDScatterCreator>("MoDScatter");
    ASSERT_NE(creator, nullptr);
    for (int32_t gate : {0, 1})
    {
        std::vector<PluginField> storage = {{"gate", &gate, PluginFieldType::kINT32, 1}};
        PluginFieldCollection fc = fields(storage);
        std::unique_ptr<IPluginV3> plugin(creator->createPlugin("s", &fc, TensorRTPhase::kBUILD));
        ASSERT_NE(plugin, nullptr);
        auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        std::unique_ptr<IPluginV3> restored(
            creator->createPlugin("s", runtime->getFieldsToSerialize(), TensorRTPhase::kRUNTIME));
        EXPECT_EQ(static_cast<int32_t>(static_cast<MoDScatterPlugin*>(restored.get())->gate()), gate);

        auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
        FakeExprBuilder eb;
        DimsExprs in[5];
        in[0].nbDims = 3;
        in[0].d[0] = eb.symbol(true);
        in[0].d[1] = eb.symbol(false);
        in[0].d[2] = eb.constant(64);
        IDimensionExpr const* k = eb.operation(DimensionOperation::kCEIL_DIV, *in[0].d[1], *eb.constant(8));
        in[1].nbDims = 2;
        in[1].d[0] = in[0].d[0];
        in[1].d[1] = k;
        in[2] = in[0];
        in[2].d[1] = k;
        in[3] = in[2];
        in[4] = in[1];
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
    }
    for (int32_t bad : {-1, 2, 7})
    {
        std::vector<PluginField> storage = {{"gate", &bad, PluginFieldType::kINT32, 1}};
        PluginFieldCollection fc = fields(storage);
        Gate gate{};
        std::string error;
        EXPECT_FALSE(parseScatterFields(&fc, gate, error));
        EXPECT_NE(error.find("unknown gate"), std::string::npos) << error;
        EXPECT_EQ(creator->createPlugin("s", &fc, TensorRTPhase::kBUILD), nullptr);
    }
}
