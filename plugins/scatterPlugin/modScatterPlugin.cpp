#include "modScatterPlugin.h"

#include "modScatterKernel.h"

#include <new>

using namespace nvinfer1;

namespace mod_export
{

bool parseScatterFields(PluginFieldCollection const* fc, Gate& gate, std::string& error) noexcept
{
    if (fc == nullptr)
    {
        error = "MoDScatter: no plugin fields given (need gate)";
        return false;
    }
    bool haveGate = false;
    int64_t value = 0;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        if (name == "gate")
        {
            haveGate = readIntegerField(f, value, error);
            if (!haveGate)
            {
                error = "MoDScatter: " + error;
                return false;
            }
        }
        else if (name != "plugin_version" && name != "plugin_namespace")
        {
            logPluginMessage(ILogger::Severity::kWARNING, "MoDScatter: ignoring unknown field '" + name + "'");
        }
    }
    if (!haveGate)
    {
        error = "MoDScatter: missing field gate";
        return false;
    }
    if (value != static_cast<int64_t>(Gate::kIDENTITY) && value != static_cast<int64_t>(Gate::kSIGMOID))
    {
        error = "MoDScatter: unknown gate " + std::to_string(value) + " (0 identity, 1 sigmoid)";
        return false;
    }
    gate = static_cast<Gate>(value);
    return true;
}

MoDScatterPlugin::MoDScatterPlugin(Gate gate)
    : mGate(static_cast<int32_t>(gate))
{
    refreshSerialFields();
}

MoDScatterPlugin::MoDScatterPlugin(MoDScatterPlugin const& other)
    : mGate(other.mGate)
{
    refreshSerialFields();
}

void MoDScatterPlugin::refreshSerialFields() noexcept
{
    mSerialFields.clear();
    mSerialFields.emplace_back("gate", &mGate, PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
}

int32_t MoDScatterPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t MoDScatterPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != kNbInputs || !isActivationType(inputTypes[0]))
    {
        logPluginError("MoDScatter: expects (x, idx int32, x_sel, y_sel, s_sel f32) and one output");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t MoDScatterPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder&) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != 1 || inputs[0].nbDims != 3 || inputs[1].nbDims != 2
        || inputs[2].nbDims != 3 || inputs[3].nbDims != 3 || inputs[4].nbDims != 2)
    {
        logPluginError("MoDScatter: expects x[B,T,D], idx[B,k], x_sel[B,k,D], y_sel[B,k,D], s_sel[B,k]");
        return -1;
    }
    outputs[0] = inputs[0];
    return 0;
}

bool MoDScatterPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != 1 || pos < 0 || pos > kNbInputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case 0: return isActivationType(desc.type);
    case 1: return desc.type == DataType::kINT32;
    case 4: return desc.type == DataType::kFLOAT;
    default: return desc.type == inOut[0].desc.type; // x_sel, y_sel, out
    }
}

int32_t MoDScatterPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept
{
    ElementType type{};
    if (!toElementType(inputDesc[0].type, type))
    {
        logPluginError("MoDScatter: unsupported x type");
        return -1;
    }
    int64_t const B = inputDesc[0].dims.d[0];
    int64_t const T = inputDesc[0].dims.d[1];
    int64_t const D = inputDesc[0].dims.d[2];
    int64_t const k = inputDesc[1].dims.d[1];
    cudaError_t const status = launchScatter(inputs[0], type, static_cast<int32_t const*>(inputs[1]), inputs[2],
        inputs[3], static_cast<float const*>(inputs[4]), B, T, D, k, gate(), outputs[0], stream);
    if (status != cudaSuccess)
    {
        logPluginError(std::string("MoDScatter: kernel launch failed: ") + cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

PluginFieldCollection const* MoDScatterPlugin::getFieldsToSerialize() noexcept
{
    return &mSerialCollection;
}

MoDScatterCreator::MoDScatterCreator()
{
    declareIntField("gate");
}

IPluginV3* MoDScatterCreator::createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    Gate gate{};
    std::string error;
    if (!parseScatterFields(fc, gate, error))
    {
        logPluginError(error);
        return nullptr;
    }
    return new (std::nothrow) MoDScatterPlugin(gate);
}

} // namespace mod_export
