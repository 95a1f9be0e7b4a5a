// MoDScatter as an IPluginV3 (TensorRT 10.3 .. 11.x). Contract: docs/design.md (routing semantics, custom ONNX ops), and
// MoDScatter_PluginConfig.yaml next to this file (attributes, I/O names and types).
#pragma once

#include "../common/modPluginBase.h"
#include "../common/modRouting.h"

#include <string>
#include <vector>

namespace mod_export
{

//! Check a gate id (0 identity, 1 sigmoid); throws PluginError otherwise.
Gate validateGate(int64_t value);

//! Parse and validate the fields: the ONNX attribute `gate` at build time, or the serialized state at
//! run time. Throws PluginError on anything else.
Gate parseScatterFields(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase);

class MoDScatterPlugin final : public ModPluginBase<MoDScatterPlugin>
{
public:
    static constexpr char const* kName = "MoDScatter";
    static constexpr PluginKind kKind = PluginKind::kSCATTER;
    static constexpr uint32_t kNbStateValues = 1;
    static constexpr int32_t kNbInputs = 5;

    explicit MoDScatterPlugin(Gate gate);
    MoDScatterPlugin(MoDScatterPlugin const& other) = default;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    Gate gate() const noexcept
    {
        return mGate;
    }

    //! The serialized values, in order (ModPluginBase::getFieldsToSerialize).
    std::vector<int32_t> stateValues() const
    {
        return {static_cast<int32_t>(mGate)};
    }

private:
    Gate mGate;
};

class MoDScatterCreator final : public ModPluginCreatorBase<MoDScatterPlugin>
{
public:
    MoDScatterCreator();
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace mod_export
