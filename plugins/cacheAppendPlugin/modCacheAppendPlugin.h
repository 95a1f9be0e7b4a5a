// MoDCacheAppend as an IPluginV3 (TensorRT 10.3 .. 11.x): one new token per listed row written into a per-layer KV
// cache at that row's length, in place when TensorRT aliases the output to the cache input (IPluginV3OneBuildV2::
// getAliasedInput; on 10.3 only with PreviewFeature::kALIASED_PLUGIN_IO_10_03). Contract: docs/generation.md,
// MoDCacheAppend_PluginConfig.yaml, README.md. The IPluginV3 glue is ModPluginBase's; this file holds what is
// MoDCacheAppend's own.
#pragma once

#include "../common/modPluginBase.h"

namespace mod_export
{

class MoDCacheAppendPlugin final : public ModPluginBase<MoDCacheAppendPlugin, nvinfer1::IPluginV3OneBuildV2>
{
public:
    static constexpr char const* kName = "MoDCacheAppend";
    static constexpr PluginKind kKind = PluginKind::kCACHE_APPEND;
    static constexpr TensorSpec kInputs[] = {{"cache", 4, TypeRule::kACTIVATION}, {"entry", 4, TypeRule::kLIKE_FIRST},
        {"length", 1, TypeRule::kINT32_OR_INT64}, {"rows", 1, TypeRule::kINT32}};
    static constexpr TensorSpec kOutputs[] = {{"out", 4, TypeRule::kLIKE_FIRST}};

    //! out aliases cache (input 0): the write happens in the cache buffer itself when TensorRT honours it.
    int32_t getAliasedInput(int32_t outputIndex) noexcept override;

    void checkShapes(TensorDesc const* in, int32_t nbInputs, TensorDesc const* out) const;
    cudaError_t launch(
        TensorDesc const* inputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream) const;
};

class MoDCacheAppendCreator final : public ModPluginCreatorBase<MoDCacheAppendPlugin>
{
public:
    MoDCacheAppendCreator();
};

} // namespace mod_export
