#include "modTopKGatherPlugin.h"

#include "../common/modRouting.h"
#include "modTopKGatherKernel.h"

#include <cstring>
#include <new>

using namespace nvinfer1;

namespace mod_export
{
namespace
{
constexpr int32_t kMaxCapacityDen = 1 << 16; // keeps T * num inside int64 for any T < 2^31
} // namespace

bool parseTopKGatherFields(PluginFieldCollection const* fc, TopKGatherParams& params, std::string& error) noexcept
{
    bool haveNum = false;
    bool haveDen = false;
    int64_t num = 0;
    int64_t den = 0;
    if (fc == nullptr)
    {
        error = "MoDTopKGather: no plugin fields given (need capacity_num and capacity_den)";
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        if (name == "capacity_num")
        {
            haveNum = readIntegerField(f, num, error);
            if (!haveNum)
            {
                error = "MoDTopKGather: " + error;
                return false;
            }
        }
        else if (name == "capacity_den")
        {
            haveDen = readIntegerField(f, den, error);
            if (!haveDen)
            {
                error = "MoDTopKGather: " + error;
                return false;
            }
        }
        else if (name != "plugin_version" && name != "plugin_namespace")
        {
            logPluginMessage(ILogger::Severity::kWARNING, "MoDTopKGather: ignoring unknown field '" + name + "'");
        }
    }
    if (!haveNum || !haveDen)
    {
        error = std::string("MoDTopKGather: missing field ") + (haveNum ? "capacity_den" : "capacity_num");
        return false;
    }
    if (den <= 0 || den > kMaxCapacityDen)
    {
        error = "MoDTopKGather: capacity_den must be in [1, 65536], got " + std::to_string(den);
        return false;
    }
    if (num <= 0 || num > den)
    {
        error = "MoDTopKGather: capacity_num must satisfy 0 < num <= den (den " + std::to_string(den) + "), got "
            + std::to_string(num);
        return false;
    }
    params.capacityNum = static_cast<int32_t>(num);
    params.capacityDen = static_cast<int32_t>(den);
    return true;
}

MoDTopKGatherPlugin::MoDTopKGatherPlugin(TopKGatherParams params)
    : mParams(params)
{
    refreshSerialFields();
}

MoDTopKGatherPlugin::MoDTopKGatherPlugin(MoDTopKGatherPlugin const& other)
    : mParams(other.mParams)
    , mHasMask(other.mHasMask)
{
    refreshSerialFields(); // the field list points into *this, never into `other`
}

void MoDTopKGatherPlugin::refreshSerialFields() noexcept
{
    mSerialFields.clear();
    mSerialFields.emplace_back("capacity_num", &mParams.capacityNum, PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back("capacity_den", &mParams.capacityDen, PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
}

int32_t MoDTopKGatherPlugin::configurePlugin(
    DynamicPluginTensorDesc const*, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    mHasMask = nbInputs == 3;
    return (nbInputs == 2 || nbInputs == 3) && nbOutputs == 3 ? 0 : -1;
}

int32_t MoDTopKGatherPlugin::onShapeChange(
    PluginTensorDesc const*, int32_t nbInputs, PluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    mHasMask = nbInputs == 3; // enqueue() is not told how many inputs there are
    return (nbInputs == 2 || nbInputs == 3) && nbOutputs == 3 ? 0 : -1;
}

int32_t MoDTopKGatherPlugin::getNbOutputs() const noexcept
{
    return 3;
}

int32_t MoDTopKGatherPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 3 || nbInputs < 2 || nbInputs > 3 || !isActivationType(inputTypes[0]))
    {
        logPluginError("MoDTopKGather: expects inputs (x f32/f16/bf16, scores f32[, mask int32]) and 3 outputs");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    outputTypes[1] = DataType::kINT32;
    outputTypes[2] = DataType::kFLOAT;
    return 0;
}

int32_t MoDTopKGatherPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs < 2 || nbInputs > 3 || nbOutputs != 3 || inputs[0].nbDims != 3 || inputs[1].nbDims != 2
        || (nbInputs == 3 && inputs[2].nbDims != 2))
    {
        logPluginError("MoDTopKGather: expects x[B,T,D], scores[B,T] and optional mask[B,T]");
        return -1;
    }
    IDimensionExpr const* batch = inputs[0].d[0];
    IDimensionExpr const* seq = inputs[0].d[1];
    // k = ceil(T * num / den): a shape expression of T, so dynamic T builds and k has no TopK limit.
    IDimensionExpr const* scaled = exprBuilder.operation(DimensionOperation::kPROD, *seq,
        *exprBuilder.constant(mParams.capacityNum));
    IDimensionExpr const* k = exprBuilder.operation(DimensionOperation::kCEIL_DIV, *scaled,
        *exprBuilder.constant(mParams.capacityDen));
    if (batch == nullptr || seq == nullptr || scaled == nullptr || k == nullptr)
    {
        return -1;
    }
    outputs[0].nbDims = 3;
    outputs[0].d[0] = batch;
    outputs[0].d[1] = k;
    outputs[0].d[2] = inputs[0].d[2];
    for (int32_t i = 1; i < 3; ++i)
    {
        outputs[i].nbDims = 2;
        outputs[i].d[0] = batch;
        outputs[i].d[1] = k;
    }
    return 0;
}

bool MoDTopKGatherPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs < 2 || nbInputs > 3 || nbOutputs != 3 || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return isActivationType(desc.type);
    }
    if (pos == 1)
    {
        return desc.type == DataType::kFLOAT;
    }
    if (pos < nbInputs) // mask
    {
        return desc.type == DataType::kINT32;
    }
    int32_t const out = pos - nbInputs;
    if (out == 0)
    {
        return desc.type == inOut[0].desc.type;
    }
    return desc.type == (out == 1 ? DataType::kINT32 : DataType::kFLOAT);
}

int32_t MoDTopKGatherPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    ElementType type{};
    if (!toElementType(inputDesc[0].type, type))
    {
        logPluginError("MoDTopKGather: unsupported x type");
        return -1;
    }
    int64_t const B = inputDesc[0].dims.d[0];
    int64_t const T = inputDesc[0].dims.d[1];
    int64_t const D = inputDesc[0].dims.d[2];
    int64_t const k = capacityK(T, mParams.capacityNum, mParams.capacityDen);
    if (outputDesc[1].dims.d[1] != k)
    {
        logPluginError("MoDTopKGather: output k does not match ceil(T*num/den)");
        return -1;
    }
    int32_t const* mask = mHasMask ? static_cast<int32_t const*>(inputs[2]) : nullptr;
    cudaError_t const status = launchTopKGather(inputs[0], type, static_cast<float const*>(inputs[1]), mask, B, T, D,
        k, outputs[0], static_cast<int32_t*>(outputs[1]), static_cast<float*>(outputs[2]), stream);
    if (status != cudaSuccess)
    {
        logPluginError(std::string("MoDTopKGather: kernel launch failed: ") + cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

PluginFieldCollection const* MoDTopKGatherPlugin::getFieldsToSerialize() noexcept
{
    return &mSerialCollection;
}

MoDTopKGatherCreator::MoDTopKGatherCreator()
{
    declareIntField("capacity_num");
    declareIntField("capacity_den");
}

IPluginV3* MoDTopKGatherCreator::createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    TopKGatherParams params;
    std::string error;
    if (!parseTopKGatherFields(fc, params, error))
    {
        logPluginError(error);
        return nullptr;
    }
    return new (std::nothrow) MoDTopKGatherPlugin(params);
}

} // namespace mod_export
