// MoDScatter as an IPluginV3 (TensorRT 10.3 .. 11.x). Contract: DESIGN.md sections 2 and 3.
#pragma once

#include "../common/modPluginBase.h"
#include "../common/modRouting.h"

#include <string>
#include <vector>

namespace mod_export
{

//! Parse and validate the fields (gate: 0 identity, 1 sigmoid). false + error on a bad collection.
bool parseScatterFields(nvinfer1::PluginFieldCollection const* fc, Gate& gate, std::string& error) noexcept;

class MoDScatterPlugin final : public ModPluginBase<MoDScatterPlugin>
{
public:
    static constexpr char const* kName = "MoDScatter";
    static constexpr int32_t kNbInputs = 5;

    explicit MoDScatterPlugin(Gate gate);
    MoDScatterPlugin(MoDScatterPlugin const& other);

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    Gate gate() const noexcept
    {
        return static_cast<Gate>(mGate);
    }

private:
    void refreshSerialFields() noexcept;

    int32_t mGate;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class MoDScatterCreator final : public ModPluginCreatorBase<MoDScatterPlugin>
{
public:
    MoDScatterCreator();
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace mod_export
