// MoDCacheAppend as an IPluginV3 (TensorRT 10.3 .. 11.x): one new token per listed row written into a per-layer KV
// cache at that row's length, in place when TensorRT aliases the output to the cache input (IPluginV3OneBuildV2::
// getAliasedInput; on 10.3 only with PreviewFeature::kALIASED_PLUGIN_IO_10_03). Contract: docs/generation.md,
// MoDCacheAppend_PluginConfig.yaml, README.md.
#pragma once

#include "../common/modPluginBase.h"

#include <vector>

namespace mod_export
{

class MoDCacheAppendPlugin final : public ModPluginBase<MoDCacheAppendPlugin, nvinfer1::IPluginV3OneBuildV2>
{
public:
    static constexpr char const* kName = "MoDCacheAppend";
    static constexpr PluginKind kKind = PluginKind::kCACHE_APPEND;
    static constexpr uint32_t kNbStateValues = 0;
    static constexpr int32_t kNbInputs = 4;

    MoDCacheAppendPlugin() = default;
    MoDCacheAppendPlugin(MoDCacheAppendPlugin const& other) = default;

    // IPluginV3OneBuild(V2)
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
    //! out aliases cache (input 0): the write happens in the cache buffer itself when TensorRT honours it.
    int32_t getAliasedInput(int32_t outputIndex) noexcept override;

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

class MoDCacheAppendCreator final : public ModPluginCreatorBase<MoDCacheAppendPlugin>
{
public:
    MoDCacheAppendCreator();
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace mod_export
