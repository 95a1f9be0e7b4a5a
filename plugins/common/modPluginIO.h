/*
 * A plugin's inputs and outputs as a table (TensorSpec: name, rank, type rule), from which ModPluginBase derives
 * the I/O-count check, the rank checks, getOutputDataTypes and supportsFormatCombination. The names are the ONNX
 * schema's and the *_PluginConfig.yaml's (plugins/tests/test_plugin_config.cpp checks them against the YAML).
 */
#pragma once

#include "modPluginUtils.h"

#include <cstddef>
#include <string>

namespace mod_export
{

//! The types a tensor may have. Every format is kLINEAR.
enum class TypeRule : int32_t
{
    kACTIVATION,     //!< float32, float16 or bfloat16 (the ONNX schemas' T); the first input's rule
    kLIKE_FIRST,     //!< the first input's type (T)
    kFLOAT32,        //!< float32
    kINT32,          //!< int32
    kINT32_OR_INT64, //!< int32 or int64 (an input only: an output's type must follow from its inputs)
    kBOOL,           //!< bool
};

struct TensorSpec
{
    char const* name;
    int32_t rank;
    TypeRule type;
    bool optional{false}; //!< an input that may be left out; only trailing inputs are optional
};

//! Whether `type` satisfies `rule`, where `first` is the first input's type.
inline bool acceptsType(TypeRule rule, nvinfer1::DataType type, nvinfer1::DataType first) noexcept
{
    switch (rule)
    {
    case TypeRule::kACTIVATION: return isActivationType(type);
    case TypeRule::kLIKE_FIRST: return type == first && isActivationType(type);
    case TypeRule::kFLOAT32: return type == nvinfer1::DataType::kFLOAT;
    case TypeRule::kINT32: return type == nvinfer1::DataType::kINT32;
    case TypeRule::kINT32_OR_INT64: return type == nvinfer1::DataType::kINT32 || type == nvinfer1::DataType::kINT64;
    case TypeRule::kBOOL: return type == nvinfer1::DataType::kBOOL;
    }
    return false;
}

//! "must be float32", "must have x's type", ...: what `rule` asks of a tensor, for the error message.
inline std::string typeRequirement(TypeRule rule, char const* firstName)
{
    switch (rule)
    {
    case TypeRule::kACTIVATION: return "must be float32, float16 or bfloat16";
    case TypeRule::kLIKE_FIRST: return std::string("must have ") + firstName + "'s type";
    case TypeRule::kFLOAT32: return "must be float32";
    case TypeRule::kINT32: return "must be int32";
    case TypeRule::kINT32_OR_INT64: return "must be int32 or int64";
    case TypeRule::kBOOL: return "must be bool";
    }
    return "has an unknown type rule";
}

//! The type of an output whose rule is `rule`, given the first input's type.
inline nvinfer1::DataType outputType(TypeRule rule, nvinfer1::DataType first)
{
    switch (rule)
    {
    case TypeRule::kLIKE_FIRST: return first;
    case TypeRule::kFLOAT32: return nvinfer1::DataType::kFLOAT;
    case TypeRule::kINT32: return nvinfer1::DataType::kINT32;
    case TypeRule::kBOOL: return nvinfer1::DataType::kBOOL;
    case TypeRule::kACTIVATION:
    case TypeRule::kINT32_OR_INT64: break;
    }
    throwPluginError(__FILE__, __LINE__, "an output's type rule must determine its type");
}

template <size_t N>
constexpr int32_t countOf(TensorSpec const (&)[N]) noexcept
{
    return static_cast<int32_t>(N);
}

//! How many leading inputs are required (the rest are optional).
template <size_t N>
constexpr int32_t requiredCount(TensorSpec const (&specs)[N]) noexcept
{
    int32_t n = 0;
    while (n < static_cast<int32_t>(N) && !specs[n].optional)
    {
        ++n;
    }
    return n;
}

//! "(x, scores[, mask])": the names, optional ones in brackets.
template <size_t N>
std::string ioNames(TensorSpec const (&specs)[N])
{
    std::string text = "(";
    for (size_t i = 0; i < N; ++i)
    {
        text += std::string(specs[i].optional ? "[" : "") + (i > 0 ? ", " : "") + specs[i].name;
    }
    for (size_t i = 0; i < N; ++i)
    {
        text += specs[i].optional ? "]" : "";
    }
    return text + ")";
}

//! Throws PluginError unless there are as many inputs and outputs as the tables allow.
template <size_t I, size_t O>
void validateIOCounts(
    TensorSpec const (&inputs)[I], TensorSpec const (&outputs)[O], int32_t nbInputs, int32_t nbOutputs)
{
    MOD_VALIDATE(nbInputs >= requiredCount(inputs) && nbInputs <= countOf(inputs) && nbOutputs == countOf(outputs),
        "expects inputs " + ioNames(inputs) + " and outputs " + ioNames(outputs) + ", got " + std::to_string(nbInputs)
            + " inputs and " + std::to_string(nbOutputs) + " outputs");
}

inline int32_t rankOf(nvinfer1::DimsExprs const& d) noexcept
{
    return d.nbDims;
}
inline int32_t rankOf(nvinfer1::PluginTensorDesc const& d) noexcept
{
    return d.dims.nbDims;
}
inline int32_t rankOf(nvinfer1::DynamicPluginTensorDesc const& d) noexcept
{
    return d.desc.dims.nbDims;
}

//! Throws PluginError naming the first of the `count` tensors whose rank is not its spec's.
template <size_t N, typename Tensor>
void validateRanks(TensorSpec const (&specs)[N], Tensor const* tensors, int32_t count)
{
    for (int32_t i = 0; i < count && i < static_cast<int32_t>(N); ++i)
    {
        MOD_VALIDATE(rankOf(tensors[i]) == specs[i].rank,
            std::string(specs[i].name) + " must have rank " + std::to_string(specs[i].rank) + ", got "
                + std::to_string(rankOf(tensors[i])));
    }
}

//! Throws PluginError naming the first of the `count` tensors with a null dimension expression.
template <size_t N>
void validateDimensions(TensorSpec const (&specs)[N], nvinfer1::DimsExprs const* tensors, int32_t count)
{
    for (int32_t i = 0; i < count && i < static_cast<int32_t>(N); ++i)
    {
        for (int32_t a = 0; a < tensors[i].nbDims; ++a)
        {
            MOD_VALIDATE(tensors[i].d[a] != nullptr, std::string(specs[i].name) + " has a null dimension");
        }
    }
}

} // namespace mod_export
