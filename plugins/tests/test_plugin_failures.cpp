// Failure paths of the TensorRT glue: every one must produce an error (a logged message and a failure
// value), never a crash or an exception escaping a noexcept entry point (that would be std::terminate).
// Bad fields, creators given garbage, truncated or foreign serialized state, bad shapes and arguments.
#include "pluginTestUtils.h"

#include <random>

using namespace nvinfer1;
using namespace mod_export;
using namespace mod_test;

namespace
{

//! The message of the PluginError that `f` throws ("" when it does not throw).
template <typename F>
std::string errorOf(F&& f)
{
    try
    {
        f();
    }
    catch (PluginError const& e)
    {
        return e.what();
    }
    return "";
}

IPluginV3* createTopK(PluginFieldCollection const* fc, TensorRTPhase phase = TensorRTPhase::kBUILD)
{
    return topKCreator().createPlugin("t", fc, phase);
}

//! A topk state blob with one word replaced (checksum recomputed unless told otherwise).
std::vector<uint8_t> stateWith(size_t word, uint32_t value, bool fixChecksum = true)
{
    std::vector<uint8_t> blob = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    for (int32_t i = 0; i < 4; ++i)
    {
        blob[4 * word + i] = static_cast<uint8_t>(value >> (8 * i));
    }
    if (fixChecksum)
    {
        uint32_t const sum = detail::fnv1a(blob.data(), blob.size() - 4);
        for (int32_t i = 0; i < 4; ++i)
        {
            blob[blob.size() - 4 + i] = static_cast<uint8_t>(sum >> (8 * i));
        }
    }
    return blob;
}

//! Create a topk plugin from a state blob of `size` bytes; returns the logged error ("" on success).
std::string fromState(std::vector<uint8_t> const& blob, int32_t size, PluginFieldType type = PluginFieldType::kUNKNOWN)
{
    CapturingLogger& logger = testLogger();
    std::vector<PluginField> storage = {{kStateFieldName, blob.data(), type, size}};
    PluginFieldCollection fc = fields(storage);
    std::unique_ptr<IPluginV3> plugin(createTopK(&fc, TensorRTPhase::kRUNTIME));
    EXPECT_EQ(plugin == nullptr, logger.errorCount() == 1) << logger.errors();
    return logger.errors();
}

bool contains(std::string const& text, char const* needle)
{
    return text.find(needle) != std::string::npos;
}

} // namespace

TEST(FieldFailures, BadCapacitiesFailCreationWithANamedReason)
{
    struct Bad
    {
        int32_t num;
        int32_t den;
        char const* needle;
    };
    for (Bad bad : {Bad{1, 0, "capacity_den"}, Bad{1, -8, "capacity_den"}, Bad{1, 65537, "capacity_den"},
             Bad{0, 8, "capacity_num"}, Bad{-1, 8, "capacity_num"}, Bad{9, 8, "capacity_num"}})
    {
        std::vector<PluginField> storage = capacityFields(bad.num, bad.den);
        PluginFieldCollection fc = fields(storage);
        EXPECT_TRUE(contains(errorOf([&] { parseTopKGatherFields(&fc, TensorRTPhase::kBUILD); }), bad.needle));
        CapturingLogger& logger = testLogger();
        EXPECT_EQ(makeTopK(bad.num, bad.den), nullptr);
        EXPECT_TRUE(contains(logger.errors(), "MoDTopKGather::createPlugin: ")) << logger.errors();
        EXPECT_TRUE(contains(logger.errors(), bad.needle)) << logger.errors();
    }
    for (int32_t gate : {-1, 2, 7})
    {
        CapturingLogger& logger = testLogger();
        EXPECT_EQ(makeScatter(gate), nullptr);
        EXPECT_TRUE(contains(logger.errors(), "MoDScatter::createPlugin: unknown gate")) << logger.errors();
    }
}

TEST(FieldFailures, MalformedFieldsFail)
{
    int32_t one = 1;
    int32_t eight = 8;
    int32_t pair[2] = {1, 8};
    float notInt = 1.0f;
    struct Case
    {
        std::vector<PluginField> fields;
        char const* needle;
    };
    std::vector<Case> cases = {
        {{{"capacity_num", &one, PluginFieldType::kINT32, 1}}, "missing field capacity_den"},
        {{{"capacity_den", &eight, PluginFieldType::kINT32, 1}}, "missing field capacity_num"},
        {{{"capacity_num", &notInt, PluginFieldType::kFLOAT32, 1},
             {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "must be an integer field"},
        {{{"capacity_num", &one, PluginFieldType::kCHAR, 1}, {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "must be an integer field"},
        {{{"capacity_num", &one, static_cast<PluginFieldType>(99), 1},
             {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "must be an integer field"},
        {{{"capacity_num", pair, PluginFieldType::kINT32, 2}, {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "exactly one integer"},
        {{{"capacity_num", &one, PluginFieldType::kINT32, 0}, {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "exactly one integer"},
        {{{"capacity_num", &one, PluginFieldType::kINT32, -1}, {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "exactly one integer"},
        {{{"capacity_num", nullptr, PluginFieldType::kINT32, 1}, {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "no data"},
        {{{"capacity_num", &one, PluginFieldType::kINT32, 1}, {"capacity_num", &one, PluginFieldType::kINT32, 1},
             {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "given twice"},
        {{{nullptr, &one, PluginFieldType::kINT32, 1}, {"capacity_den", &eight, PluginFieldType::kINT32, 1}},
            "has no name"},
    };
    for (Case& c : cases)
    {
        PluginFieldCollection fc = fields(c.fields);
        CapturingLogger& logger = testLogger();
        EXPECT_EQ(createTopK(&fc), nullptr) << c.needle;
        EXPECT_TRUE(contains(logger.errors(), c.needle)) << c.needle << " vs " << logger.errors();
    }
    int32_t gate = 1;
    std::vector<PluginField> twice
        = {{"gate", &gate, PluginFieldType::kINT32, 1}, {"gate", &gate, PluginFieldType::kINT32, 1}};
    PluginFieldCollection fc = fields(twice);
    EXPECT_TRUE(contains(errorOf([&] { parseScatterFields(&fc, TensorRTPhase::kBUILD); }), "given twice"));
    std::vector<PluginField> none = {{"gat", &gate, PluginFieldType::kINT32, 1}};
    fc = fields(none);
    EXPECT_TRUE(contains(errorOf([&] { parseScatterFields(&fc, TensorRTPhase::kBUILD); }), "missing field gate"));
}

TEST(FieldFailures, GarbageCollectionsAreRejectedBeforeAnyFieldIsRead)
{
    int32_t one = 1;
    std::vector<PluginField> two = capacityFields(one, one);
    struct Case
    {
        PluginFieldCollection const* fc;
        char const* needle;
    };
    PluginFieldCollection negative{-1, two.data()};
    PluginFieldCollection huge{1 << 30, two.data()}; // reading them all would run far past the array
    PluginFieldCollection noArray{2, nullptr};
    for (Case c : {Case{nullptr, "no plugin fields"}, Case{&negative, "implausible field count"},
             Case{&huge, "implausible field count"}, Case{&noArray, "no field array"}})
    {
        for (TensorRTPhase phase : {TensorRTPhase::kBUILD, TensorRTPhase::kRUNTIME})
        {
            CapturingLogger& logger = testLogger();
            EXPECT_EQ(createTopK(c.fc, phase), nullptr);
            EXPECT_EQ(scatterCreator().createPlugin("s", c.fc, phase), nullptr);
            EXPECT_EQ(logger.errorCount(), 2) << logger.errors();
            EXPECT_TRUE(contains(logger.errors(), c.needle)) << logger.errors();
        }
    }
}

TEST(FieldFailures, RandomGarbageNeverCrashesAndNeverYieldsAnInvalidPlugin)
{
    std::mt19937 rng(17);
    char const* names[] = {"capacity_num", "capacity_den", "gate", kStateFieldName, "plugin_version", "x", ""};
    alignas(8) uint8_t pool[64];
    std::vector<uint8_t> goodState = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    int32_t created = 0;
    testLogger(); // quiet: errors go to the capturing logger
    for (int32_t iteration = 0; iteration < 20000; ++iteration)
    {
        for (uint8_t& b : pool)
        {
            b = static_cast<uint8_t>(rng() % 4 == 0 ? rng() : rng() % 3); // many small integers
        }
        int32_t const n = static_cast<int32_t>(rng() % 4);
        std::vector<PluginField> storage;
        for (int32_t i = 0; i < n; ++i)
        {
            PluginFieldType const type = static_cast<PluginFieldType>(rng() % 15);
            bool const state = rng() % 6 == 0;
            void const* data = state ? static_cast<void const*>(goodState.data()) : pool;
            int32_t const maxLength = state ? static_cast<int32_t>(goodState.size()) : 8;
            int32_t const length = static_cast<int32_t>(rng() % (maxLength + 2)) - 1;
            storage.emplace_back(state ? kStateFieldName : names[rng() % 7], rng() % 10 == 0 ? nullptr : data,
                state ? PluginFieldType::kUNKNOWN : type, length);
        }
        PluginFieldCollection fc = fields(storage);
        TensorRTPhase const phase = rng() % 2 == 0 ? TensorRTPhase::kBUILD : TensorRTPhase::kRUNTIME;
        std::unique_ptr<IPluginV3> topk(createTopK(&fc, phase));
        if (topk != nullptr)
        {
            auto const& p = static_cast<MoDTopKGatherPlugin*>(topk.get())->params();
            ASSERT_TRUE(p.capacityNum >= 1 && p.capacityNum <= p.capacityDen && p.capacityDen <= 65536);
            ++created;
        }
        std::unique_ptr<IPluginV3> scatter(scatterCreator().createPlugin("s", &fc, phase));
        if (scatter != nullptr)
        {
            int32_t const gate = static_cast<int32_t>(static_cast<MoDScatterPlugin*>(scatter.get())->gate());
            ASSERT_TRUE(gate == 0 || gate == 1);
        }
    }
    EXPECT_GT(created, 0) << "the generator should sometimes produce a valid collection";
}

TEST(SerializationFailures, TruncatedStatesFailAtEveryLength)
{
    std::vector<uint8_t> const blob = encodeState(PluginKind::kTOPK_GATHER, {3, 7});
    EXPECT_EQ(fromState(blob, static_cast<int32_t>(blob.size())), "");
    for (size_t size = 0; size < blob.size(); ++size)
    {
        std::string const error = fromState(blob, static_cast<int32_t>(size));
        EXPECT_TRUE(contains(error, "MoDTopKGather::createPlugin: serialized state is truncated"))
            << size << ": " << error;
    }
    EXPECT_TRUE(contains(fromState(blob, -1), "truncated"));
}

TEST(SerializationFailures, StatesFromAnotherVersionPluginOrCorruptionFail)
{
    EXPECT_TRUE(contains(fromState(stateWith(1, 2), 28), "format version 2, this library reads version 1"));
    EXPECT_TRUE(contains(fromState(stateWith(1, 0), 28), "format version 0"));
    EXPECT_TRUE(contains(fromState(stateWith(0, 0x12345678u), 28), "bad magic"));
    EXPECT_TRUE(contains(fromState(stateWith(2, 2), 28), "different plugin"));
    EXPECT_TRUE(contains(fromState(stateWith(3, 3), 28), "unexpected number of values"));
    EXPECT_TRUE(contains(fromState(stateWith(4, 2, false), 28), "checksum"));
    EXPECT_TRUE(contains(fromState(stateWith(5, 0), 28), "capacity_den must be in [1, 65536]"))
        << "a well-formed state with a bad value is still validated";
    std::vector<uint8_t> longer = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    longer.push_back(0);
    EXPECT_TRUE(contains(fromState(longer, static_cast<int32_t>(longer.size())), "trailing bytes"));
    std::vector<uint8_t> const good = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    EXPECT_TRUE(contains(fromState(good, 28, PluginFieldType::kINT32), "must be raw bytes"));
    std::vector<uint8_t> const scatterState = encodeState(PluginKind::kSCATTER, {1});
    EXPECT_TRUE(contains(fromState(scatterState, static_cast<int32_t>(scatterState.size())), "different plugin"));
}

TEST(SerializationFailures, RuntimePhaseNeedsAStateAndStatesDoNotMixWithAttributes)
{
    int32_t num = 1;
    int32_t den = 8;
    std::vector<PluginField> attributes = capacityFields(num, den);
    PluginFieldCollection fc = fields(attributes);
    EXPECT_TRUE(contains(errorOf([&] { parseTopKGatherFields(&fc, TensorRTPhase::kRUNTIME); }),
        "deserializing, but no field mod_export_state"));
    std::vector<uint8_t> const state = encodeState(PluginKind::kTOPK_GATHER, {1, 8});
    attributes.emplace_back(
        kStateFieldName, state.data(), PluginFieldType::kUNKNOWN, static_cast<int32_t>(state.size()));
    fc = fields(attributes);
    EXPECT_TRUE(contains(errorOf([&] { parseTopKGatherFields(&fc, TensorRTPhase::kRUNTIME); }), "cannot be mixed"));
    std::vector<PluginField> twice = {{kStateFieldName, state.data(), PluginFieldType::kUNKNOWN, 28},
        {kStateFieldName, state.data(), PluginFieldType::kUNKNOWN, 28}};
    fc = fields(twice);
    EXPECT_TRUE(contains(errorOf([&] { parseTopKGatherFields(&fc, TensorRTPhase::kRUNTIME); }), "given twice"));
    std::vector<PluginField> one = {{kStateFieldName, state.data(), PluginFieldType::kUNKNOWN, 28}};
    fc = fields(one);
    EXPECT_EQ(parseTopKGatherFields(&fc, TensorRTPhase::kBUILD).capacityDen, 8) << "a state is accepted when building";
}

TEST(EntryPointFailures, TopKGatherBuildCallsFailWithAnErrorNotACrash)
{
    auto plugin = makeTopK(1, 8);
    IPluginV3OneBuild* build = buildOf(*plugin);
    CapturingLogger& logger = testLogger();
    FakeExprBuilder eb;
    IDimensionExpr const* B = eb.symbol(true);
    IDimensionExpr const* T = eb.symbol(false);
    DimsExprs in[3] = {dimsOf({B, T, eb.constant(8)}), dimsOf({B, T}), dimsOf({B, T})};
    DimsExprs out[3];
    int32_t expectedErrors = 0;
    auto failsWith = [&](int32_t result, char const* needle) {
        ++expectedErrors;
        EXPECT_EQ(result, -1) << needle;
        EXPECT_EQ(logger.errorCount(), expectedErrors) << logger.errors();
        EXPECT_TRUE(contains(logger.errors(), needle)) << needle << " vs " << logger.errors();
    };
    failsWith(build->getOutputShapes(nullptr, 3, nullptr, 0, out, 3, eb), "getOutputShapes: no shape arrays");
    failsWith(build->getOutputShapes(in, 1, nullptr, 0, out, 3, eb), "got 1 inputs");
    failsWith(build->getOutputShapes(in, 3, nullptr, 0, out, 2, eb), "and 2 outputs");
    DimsExprs wrongRank[3] = {in[1], in[1], in[1]};
    failsWith(build->getOutputShapes(wrongRank, 3, nullptr, 0, out, 3, eb), "x must have rank 3, got 2");
    DimsExprs mismatch[3] = {in[0], in[1], in[2]};
    mismatch[1].d[1] = eb.constant(5);
    mismatch[0].d[1] = eb.constant(6);
    failsWith(build->getOutputShapes(mismatch, 3, nullptr, 0, out, 3, eb), "scores must be [B,T] like x");
    DimsExprs nullDim[3] = {in[0], in[1], in[2]};
    nullDim[0].d[1] = nullptr;
    failsWith(build->getOutputShapes(nullDim, 3, nullptr, 0, out, 3, eb), "null dimension");
    FakeExprBuilder broken(0);
    failsWith(build->getOutputShapes(in, 3, nullptr, 0, out, 3, broken), "IExprBuilder::constant failed");

    DataType types[3];
    DataType const good[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kINT32};
    DataType const int64Mask[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kINT64};
    DataType const halfScores[3] = {DataType::kHALF, DataType::kHALF, DataType::kINT32};
    failsWith(build->getOutputDataTypes(nullptr, 3, good, 3), "no type arrays");
    failsWith(build->getOutputDataTypes(types, 3, good, 4), "got 4 inputs");
    failsWith(build->getOutputDataTypes(types, 3, int64Mask, 3), "mask must be int32");
    failsWith(build->getOutputDataTypes(types, 3, halfScores, 3), "scores must be float32");

    DynamicPluginTensorDesc io[6] = {desc(DataType::kHALF), desc(DataType::kFLOAT), desc(DataType::kINT32),
        desc(DataType::kHALF), desc(DataType::kINT32), desc(DataType::kFLOAT)};
    EXPECT_FALSE(build->supportsFormatCombination(0, nullptr, 3, 3));
    EXPECT_FALSE(build->supportsFormatCombination(6, io, 3, 3));
    EXPECT_FALSE(build->supportsFormatCombination(-1, io, 3, 3));
    EXPECT_FALSE(build->supportsFormatCombination(0, io, 4, 3));
    expectedErrors += 4;
    EXPECT_EQ(logger.errorCount(), expectedErrors) << logger.errors();
    failsWith(build->configurePlugin(nullptr, 3, nullptr, 3), "configurePlugin: no tensor descriptions");
    failsWith(build->configurePlugin(io, 5, io, 1), "got 5 inputs");
    EXPECT_EQ(plugin->getCapabilityInterface(static_cast<PluginCapabilityType>(7)), nullptr);
    EXPECT_TRUE(contains(logger.errors(), "unknown PluginCapabilityType 7"));
    ++expectedErrors;
    failsWith(runtimeOf(*plugin)->attachToContext(nullptr) == nullptr ? -1 : 0, "no resource context");
}

TEST(EntryPointFailures, TopKGatherRuntimeCallsValidateBeforeAnyKernelLaunch)
{
    auto plugin = makeTopK(1, 8);
    IPluginV3OneRuntime* runtime = runtimeOf(*plugin);
    CapturingLogger& logger = testLogger();
    PluginTensorDesc in[3] = {
        tensor(DataType::kHALF, {2, 100, 16}), tensor(DataType::kFLOAT, {2, 100}), tensor(DataType::kINT32, {2, 100})};
    PluginTensorDesc out[3]
        = {tensor(DataType::kHALF, {2, 13, 16}), tensor(DataType::kINT32, {2, 13}), tensor(DataType::kFLOAT, {2, 13})};
    ASSERT_EQ(runtime->onShapeChange(in, 3, out, 3), 0);
    void const* nullInputs[3] = {nullptr, nullptr, nullptr};
    void* nullOutputs[3] = {nullptr, nullptr, nullptr};
    struct Case
    {
        std::function<void(PluginTensorDesc*, PluginTensorDesc*)> edit;
        char const* needle;
    };
    std::vector<Case> cases = {
        {[](PluginTensorDesc*, PluginTensorDesc*) {}, "x is null"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[0].dims.nbDims = 2; }, "x must have rank 3, got 2"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[0].dims.d[1] = -1; }, "x must be [B,T,D]"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[0].dims.d[1] = 1LL << 32; }, "does not fit the int32 idx"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[2].dims.d[1] = 99; }, "mask must be [B,T]"},
        {[](PluginTensorDesc*, PluginTensorDesc* o) { o[1].dims.d[1] = 12; }, "idx must be [B,k] with k = 13"},
        {[](PluginTensorDesc*, PluginTensorDesc* o) { o[0].dims.d[2] = 8; }, "x_sel must be [B,k,D]"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[0].type = DataType::kINT8; }, "unsupported activation type"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[2].type = DataType::kINT64; }, "mask int32"},
    };
    int32_t errors = 0;
    for (Case const& c : cases)
    {
        PluginTensorDesc i[3] = {in[0], in[1], in[2]};
        PluginTensorDesc o[3] = {out[0], out[1], out[2]};
        c.edit(i, o);
        EXPECT_EQ(runtime->enqueue(i, o, nullInputs, nullOutputs, nullptr, nullptr), -1) << c.needle;
        EXPECT_EQ(logger.errorCount(), ++errors) << logger.errors();
        EXPECT_TRUE(contains(logger.errors(), c.needle)) << c.needle << " vs " << logger.errors();
    }
    EXPECT_EQ(runtime->enqueue(nullptr, out, nullInputs, nullOutputs, nullptr, nullptr), -1);
    EXPECT_EQ(runtime->onShapeChange(in, 3, nullptr, 3), -1);
    EXPECT_EQ(runtime->onShapeChange(nullptr, 3, out, 3), -1);
    EXPECT_EQ(logger.errorCount(), errors + 3);
    PluginTensorDesc empty[3] = {
        tensor(DataType::kHALF, {0, 100, 16}), tensor(DataType::kFLOAT, {0, 100}), tensor(DataType::kINT32, {0, 100})};
    PluginTensorDesc emptyOut[3]
        = {tensor(DataType::kHALF, {0, 13, 16}), tensor(DataType::kINT32, {0, 13}), tensor(DataType::kFLOAT, {0, 13})};
    EXPECT_EQ(runtime->enqueue(empty, emptyOut, nullInputs, nullOutputs, nullptr, nullptr), 0)
        << "an empty batch is valid and launches nothing";
}

TEST(EntryPointFailures, ScatterCallsFailWithAnErrorNotACrash)
{
    auto plugin = makeScatter(1);
    IPluginV3OneBuild* build = buildOf(*plugin);
    IPluginV3OneRuntime* runtime = runtimeOf(*plugin);
    CapturingLogger& logger = testLogger();
    DataType types[1];
    DataType const mixed[5] = {DataType::kHALF, DataType::kINT32, DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
    DataType const int64Idx[5]
        = {DataType::kHALF, DataType::kINT64, DataType::kHALF, DataType::kHALF, DataType::kFLOAT};
    EXPECT_EQ(build->getOutputDataTypes(types, 1, mixed, 5), -1);
    EXPECT_EQ(build->getOutputDataTypes(types, 1, int64Idx, 5), -1);
    EXPECT_EQ(build->getOutputDataTypes(types, 1, mixed, 4), -1);
    FakeExprBuilder eb;
    EXPECT_EQ(build->getOutputShapes(nullptr, 5, nullptr, 0, nullptr, 1, eb), -1);
    EXPECT_EQ(logger.errorCount(), 4) << logger.errors();
    EXPECT_TRUE(contains(logger.errors(), "MoDScatter::getOutputDataTypes: y_sel must have x's type"));
    EXPECT_TRUE(contains(logger.errors(), "idx must be int32"));

    PluginTensorDesc in[5] = {tensor(DataType::kHALF, {2, 100, 16}), tensor(DataType::kINT32, {2, 13}),
        tensor(DataType::kHALF, {2, 13, 16}), tensor(DataType::kHALF, {2, 13, 16}), tensor(DataType::kFLOAT, {2, 13})};
    PluginTensorDesc out[1] = {tensor(DataType::kHALF, {2, 100, 16})};
    void const* nullInputs[5] = {};
    void* nullOutputs[1] = {};
    struct Case
    {
        std::function<void(PluginTensorDesc*, PluginTensorDesc*)> edit;
        char const* needle;
    };
    std::vector<Case> cases = {
        {[](PluginTensorDesc*, PluginTensorDesc*) {}, "x or out is null"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[1].dims.d[1] = 101; }, "0 <= k <= T"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[3].dims.d[1] = 12; }, "y_sel does not match"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[4].dims.nbDims = 3; }, "s_sel must have rank 2"},
        {[](PluginTensorDesc*, PluginTensorDesc* o) { o[0].dims.d[1] = 13; }, "out must be [B,T,D]"},
        {[](PluginTensorDesc* i, PluginTensorDesc*) { i[1].type = DataType::kINT64; }, "idx must be int32"},
    };
    for (Case const& c : cases)
    {
        logger.clear();
        PluginTensorDesc i[5] = {in[0], in[1], in[2], in[3], in[4]};
        PluginTensorDesc o[1] = {out[0]};
        c.edit(i, o);
        EXPECT_EQ(runtime->enqueue(i, o, nullInputs, nullOutputs, nullptr, nullptr), -1) << c.needle;
        EXPECT_EQ(runtime->onShapeChange(i, 5, o, 1) == 0,
            std::string(c.needle) == "x or out is null" || std::string(c.needle) == "idx must be int32")
            << c.needle;
        EXPECT_TRUE(contains(logger.errors(), c.needle)) << c.needle << " vs " << logger.errors();
    }
}
