// MoDTakeCount as an IPluginV3 (TensorRT 10.3 .. 11.x): the rows of a decode step that take a block, as a compact
// index list whose length is a size tensor. Contract: docs/generation.md, MoDTakeCount_PluginConfig.yaml, README.md.
#pragma once

#include "../common/modPluginBase.h"

#include <vector>

namespace mod_export
{

class MoDTakeCountPlugin final : public ModPluginBase<MoDTakeCountPlugin>
{
public:
    static constexpr char const* kName = "MoDTakeCount";
    static constexpr PluginKind kKind = PluginKind::kTAKE_COUNT;
    static constexpr uint32_t kNbStateValues = 0;
    static constexpr int32_t kNbInputs = 1;
    static constexpr int32_t kNbOutputs = 2;

    MoDTakeCountPlugin() = default;
    MoDTakeCountPlugin(MoDTakeCountPlugin const& other) = default;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    //! rows [n] with n = declareSizeTensor(1, opt = B, upper = B); count [] (0-D int32, the size tensor).
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

    std::vector<int32_t> stateValues() const
    {
        return {};
    }
};

class MoDTakeCountCreator final : public ModPluginCreatorBase<MoDTakeCountPlugin>
{
public:
    MoDTakeCountCreator();
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace mod_export
