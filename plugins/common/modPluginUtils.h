/*
 * Glue helpers shared by the two plugins (TensorRT 10.3 .. 11.x): logging through the logger TensorRT
 * hands over, integer field parsing, and DataType <-> ElementType. Only NvInferRuntime.h is included.
 */
#pragma once

#include "modKernelTypes.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>

namespace mod_export
{

constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "mod_export";

//! Remember the ILoggerFinder that TensorRT passes to setLoggerFinder().
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Log through TensorRT's logger when one is known, else to stderr.
void logPluginMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;

inline void logPluginError(std::string const& message) noexcept
{
    logPluginMessage(nvinfer1::ILogger::Severity::kERROR, message);
}

//! Read a scalar integer field of any integer PluginFieldType (the ONNX parser may pass INT32 or INT64).
//! Returns false and sets `error` when the field is not a single integer.
bool readIntegerField(nvinfer1::PluginField const& field, int64_t& value, std::string& error) noexcept;

//! x's element type for the kernels; false for types the plugins do not support.
bool toElementType(nvinfer1::DataType type, ElementType& out) noexcept;

//! Activation types the plugins accept for x / x_sel / y_sel / out.
inline bool isActivationType(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF
        || type == nvinfer1::DataType::kBF16;
}

} // namespace mod_export
