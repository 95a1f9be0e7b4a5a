// The *_PluginConfig.yaml files against the plugins: name, namespace and version; the creator's field list
// (names, order, types, lengths, required); the attribute ranges; and the declared formats
// (supportsFormatCombination and getOutputDataTypes) against the listed type combinations, completely: for
// every position and every DataType the plugin accepts exactly what some listed combination allows.
// tests/unit/test_plugin_config.py checks the same files against the ONNX schemas.
#include "cacheAppendPlugin/modCacheAppendPlugin.h"
#include "pluginTestUtils.h"
#include "takeCountPlugin/modTakeCountPlugin.h"
#include "yamlSubset.h"

#include <map>
#include <set>

using namespace nvinfer1;
using namespace mod_export;
using namespace mod_test;

namespace
{

std::string configPath(char const* folder, char const* name)
{
    return std::string(MOD_PLUGINS_SOURCE_DIR) + "/" + folder + "/" + name + "_PluginConfig.yaml";
}

DataType dataType(std::string const& name)
{
    static std::map<std::string, DataType> const types = {{"float32", DataType::kFLOAT}, {"float16", DataType::kHALF},
        {"bfloat16", DataType::kBF16}, {"int32", DataType::kINT32}, {"int64", DataType::kINT64},
        {"int8", DataType::kINT8}, {"bool", DataType::kBOOL}, {"uint8", DataType::kUINT8}};
    auto it = types.find(name);
    if (it == types.end())
    {
        throw std::runtime_error("unknown type name in yaml: " + name);
    }
    return it->second;
}

PluginFieldType fieldType(std::string const& name)
{
    static std::map<std::string, PluginFieldType> const types = {{"int32", PluginFieldType::kINT32},
        {"int64", PluginFieldType::kINT64}, {"float32", PluginFieldType::kFLOAT32}, {"char", PluginFieldType::kCHAR}};
    return types.at(name);
}

struct Combination
{
    std::vector<DataType> types; // inputs then outputs, in the yaml's order
    std::map<std::string, int32_t> attributes;
};

struct Config
{
    YamlNode root;
    YamlNode version;
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    std::vector<Combination> combinations;
};

Config load(char const* folder, char const* name)
{
    Config c;
    c.root = YamlSubsetReader::parseFile(configPath(folder, name));
    c.version = c.root.at("versions").at(kPluginVersion);
    c.inputs = c.version.at("inputs").strings();
    c.outputs = c.version.at("outputs").strings();
    YamlNode const& configs = c.version.at("configs");
    for (YamlNode const& item : c.version.at("supported_input_types").seq)
    {
        YamlNode const& inputTypes = item.map.at(0).second;
        bool matched = false;
        for (auto const& kv : configs.map)
        {
            YamlNode const& cfg = kv.second;
            bool same = true;
            for (std::string const& in : c.inputs)
            {
                same = same && cfg.at("input_types").at(in).scalar == inputTypes.at(in).scalar;
            }
            if (!same)
            {
                continue;
            }
            Combination combo;
            for (std::string const& in : c.inputs)
            {
                combo.types.push_back(dataType(inputTypes.at(in).scalar));
            }
            for (std::string const& out : c.outputs)
            {
                combo.types.push_back(dataType(cfg.at("output_types").at(out).scalar));
            }
            for (auto const& attr : cfg.at("attribute_options").map)
            {
                combo.attributes[attr.first] = std::stoi(attr.second.at("value").scalar);
            }
            c.combinations.push_back(combo);
            matched = true;
            break;
        }
        EXPECT_TRUE(matched) << name << ": a supported_input_types entry has no config with its output types";
    }
    return c;
}

//! Creator fields == the yaml's attributes, in order, with their types and lengths; all required ones.
void expectFieldsMatch(IPluginCreatorV3One& creator, Config const& c)
{
    EXPECT_EQ(c.root.at("name").scalar, creator.getPluginName());
    EXPECT_EQ(c.root.at("namespace").scalar, creator.getPluginNamespace());
    EXPECT_EQ(c.root.at("interface").scalar, "IPluginV3");
    ASSERT_EQ(c.root.at("versions").keys(), std::vector<std::string>{creator.getPluginVersion()});
    PluginFieldCollection const* fc = creator.getFieldNames();
    ASSERT_NE(fc, nullptr);
    std::vector<std::string> const attributes = c.version.at("attributes").strings();
    ASSERT_EQ(fc->nbFields, static_cast<int32_t>(attributes.size()));
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        std::string const name = fc->fields[i].name;
        EXPECT_EQ(name, attributes[i]);
        EXPECT_EQ(fc->fields[i].type, fieldType(c.version.at("attribute_types").at(name).scalar)) << name;
        EXPECT_EQ(fc->fields[i].length, std::stoi(c.version.at("attribute_length").at(name).scalar)) << name;
    }
    EXPECT_EQ(c.version.at("attributes_required").strings(), attributes) << "every attribute is required";
}

//! The plugin built from `combo`'s attributes, or nullptr.
std::unique_ptr<IPluginV3> create(IPluginCreatorV3One& creator, std::map<std::string, int32_t> attributes)
{
    std::vector<int32_t> values;
    for (auto const& kv : attributes)
    {
        values.push_back(kv.second);
    }
    std::vector<PluginField> storage;
    size_t i = 0;
    for (auto const& kv : attributes)
    {
        storage.emplace_back(kv.first.c_str(), &values[i++], PluginFieldType::kINT32, 1);
    }
    PluginFieldCollection fc = fields(storage);
    return std::unique_ptr<IPluginV3>(creator.createPlugin("cfg", &fc, TensorRTPhase::kBUILD));
}

//! Formats: for every position p and DataType t, with the positions before p taken from a combination,
//! the plugin accepts t at p iff some listed combination agrees on those positions and has t at p.
void expectFormatsMatch(IPluginCreatorV3One& creator, Config const& c, bool dropOptionalInput)
{
    ASSERT_FALSE(c.combinations.empty());
    std::vector<std::string> const optional = c.version.at("optional_inputs").strings();
    int32_t const nbOutputs = static_cast<int32_t>(c.outputs.size());
    // Which positions take part: the optional input (last input) may be dropped.
    std::vector<size_t> keep;
    for (size_t i = 0; i < c.inputs.size() + c.outputs.size(); ++i)
    {
        bool const isOptional
            = i < c.inputs.size() && std::find(optional.begin(), optional.end(), c.inputs[i]) != optional.end();
        if (!(dropOptionalInput && isOptional))
        {
            keep.push_back(i);
        }
    }
    int32_t const nbInputs = static_cast<int32_t>(keep.size()) - nbOutputs;
    for (Combination const& combo : c.combinations)
    {
        auto plugin = create(creator, combo.attributes);
        ASSERT_NE(plugin, nullptr);
        IPluginV3OneBuild* build = buildOf(*plugin);
        std::vector<DataType> types;
        for (size_t i : keep)
        {
            types.push_back(combo.types[i]);
        }
        std::vector<DataType> outTypes(static_cast<size_t>(nbOutputs));
        ASSERT_EQ(build->getOutputDataTypes(outTypes.data(), nbOutputs, types.data(), nbInputs), 0);
        for (int32_t o = 0; o < nbOutputs; ++o)
        {
            EXPECT_EQ(outTypes[o], types[nbInputs + o]) << c.outputs[o];
        }
        for (size_t p = 0; p < types.size(); ++p)
        {
            for (DataType t : allDataTypes())
            {
                bool allowed = false;
                for (Combination const& other : c.combinations)
                {
                    bool agrees = other.types[keep[p]] == t;
                    for (size_t q = 0; q < p && agrees; ++q)
                    {
                        agrees = other.types[keep[q]] == types[q];
                    }
                    allowed = allowed || agrees;
                }
                std::vector<DynamicPluginTensorDesc> io;
                for (size_t q = 0; q < types.size(); ++q)
                {
                    io.push_back(desc(q == p ? t : types[q]));
                }
                testLogger();
                EXPECT_EQ(
                    build->supportsFormatCombination(static_cast<int32_t>(p), io.data(), nbInputs, nbOutputs), allowed)
                    << "position " << p << " DataType " << static_cast<int32_t>(t);
            }
        }
    }
}

//! The plugin's I/O table (ModPluginBase derives counts, types and formats from it) names the yaml's inputs,
//! outputs and optional inputs, in order.
template <typename Plugin>
void expectTablesMatch(Config const& c)
{
    std::vector<std::string> inputs;
    std::vector<std::string> optional;
    std::vector<std::string> outputs;
    for (TensorSpec const& spec : Plugin::kInputs)
    {
        inputs.push_back(spec.name);
        if (spec.optional)
        {
            optional.push_back(spec.name);
        }
    }
    for (TensorSpec const& spec : Plugin::kOutputs)
    {
        outputs.push_back(spec.name);
    }
    EXPECT_EQ(inputs, c.inputs);
    EXPECT_EQ(outputs, c.outputs);
    EXPECT_EQ(optional, c.version.at("optional_inputs").strings());
}

} // namespace

TEST(PluginConfig, TopKGatherYamlMatchesTheCreatorAndTheFormats)
{
    Config const c = load("topkGatherPlugin", "MoDTopKGather");
    EXPECT_EQ(c.inputs, (std::vector<std::string>{"x", "scores", "mask"}));
    expectTablesMatch<MoDTopKGatherPlugin>(c);
    expectFieldsMatch(topKCreator(), c);
    expectFormatsMatch(topKCreator(), c, false);
    expectFormatsMatch(topKCreator(), c, true);
    EXPECT_EQ(c.version.at("optional_inputs").strings(), std::vector<std::string>{"mask"});
}

TEST(PluginConfig, TopKGatherAttributeRangesAreTheCreatorsRanges)
{
    Config const c = load("topkGatherPlugin", "MoDTopKGather");
    YamlNode const& options = c.version.at("attribute_options");
    int32_t const numMin = std::stoi(options.at("capacity_num").at("min").scalar);
    int32_t const numMax = std::stoi(options.at("capacity_num").at("max").scalar);
    int32_t const denMin = std::stoi(options.at("capacity_den").at("min").scalar);
    int32_t const denMax = std::stoi(options.at("capacity_den").at("max").scalar);
    ASSERT_EQ(
        c.version.at("attribute_constraints").strings(), std::vector<std::string>{"capacity_num <= capacity_den"});
    auto ok = [](int32_t num, int32_t den) { return makeTopK(num, den) != nullptr; };
    testLogger();
    EXPECT_TRUE(ok(numMin, denMin));
    EXPECT_TRUE(ok(numMin, denMax));
    EXPECT_TRUE(ok(numMax, denMax));
    EXPECT_FALSE(ok(numMin - 1, denMax));
    EXPECT_FALSE(ok(numMin, denMin - 1));
    EXPECT_FALSE(ok(numMin, denMax + 1));
    EXPECT_FALSE(ok(numMax + 1, denMax));
    EXPECT_FALSE(ok(denMin + 1, denMin)) << "the constraint num <= den";
}

TEST(PluginConfig, ScatterYamlMatchesTheCreatorFormatsAndGateValues)
{
    Config const c = load("scatterPlugin", "MoDScatter");
    EXPECT_EQ(c.inputs, (std::vector<std::string>{"x", "idx", "x_sel", "y_sel", "s_sel"}));
    expectTablesMatch<MoDScatterPlugin>(c);
    expectFieldsMatch(scatterCreator(), c);
    expectFormatsMatch(scatterCreator(), c, false);
    std::vector<std::string> const gates = c.version.at("attribute_options").at("gate").strings();
    std::set<int32_t> allowed;
    for (std::string const& g : gates)
    {
        allowed.insert(std::stoi(g));
    }
    testLogger();
    for (int32_t gate = -3; gate <= 4; ++gate)
    {
        EXPECT_EQ(makeScatter(gate) != nullptr, allowed.count(gate) == 1) << "gate " << gate;
    }
}

TEST(PluginConfig, DecodePluginYamlsMatchTheirCreatorsTablesAndFormats)
{
    Config const take = load("takeCountPlugin", "MoDTakeCount");
    expectTablesMatch<MoDTakeCountPlugin>(take);
    expectFieldsMatch(*findCreator<MoDTakeCountCreator>("MoDTakeCount"), take);
    expectFormatsMatch(*findCreator<MoDTakeCountCreator>("MoDTakeCount"), take, false);
    Config const append = load("cacheAppendPlugin", "MoDCacheAppend");
    expectTablesMatch<MoDCacheAppendPlugin>(append);
    expectFieldsMatch(*findCreator<MoDCacheAppendCreator>("MoDCacheAppend"), append);
    expectFormatsMatch(*findCreator<MoDCacheAppendCreator>("MoDCacheAppend"), append, false);
}

TEST(PluginConfig, TheSubsetReaderRejectsWhatItCannotRead)
{
    EXPECT_THROW(YamlSubsetReader::parseFile(configPath("nowhere", "Nothing")), std::runtime_error);
}
