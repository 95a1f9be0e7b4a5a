#include "modPluginUtils.h"

#include <atomic>
#include <cstdio>

namespace mod_export
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
} // namespace

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    gLoggerFinder.store(finder);
}

void logPluginMessage(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept
{
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    nvinfer1::ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(severity, message.c_str());
        return;
    }
    std::fprintf(stderr, "[mod_export plugin] %s\n", message.c_str());
}

bool readIntegerField(nvinfer1::PluginField const& field, int64_t& value, std::string& error) noexcept
{
    std::string const name = field.name != nullptr ? field.name : "<unnamed>";
    if (field.data == nullptr || field.length != 1)
    {
        error = "field '" + name + "' must hold exactly one integer (length " + std::to_string(field.length) + ")";
        return false;
    }
    switch (field.type)
    {
    case nvinfer1::PluginFieldType::kINT8: value = *static_cast<int8_t const*>(field.data); return true;
    case nvinfer1::PluginFieldType::kINT16: value = *static_cast<int16_t const*>(field.data); return true;
    case nvinfer1::PluginFieldType::kINT32: value = *static_cast<int32_t const*>(field.data); return true;
    case nvinfer1::PluginFieldType::kINT64: value = *static_cast<int64_t const*>(field.data); return true;
    default:
        error = "field '" + name + "' must be an integer field (got PluginFieldType "
            + std::to_string(static_cast<int32_t>(field.type)) + ")";
        return false;
    }
}

bool toElementType(nvinfer1::DataType type, ElementType& out) noexcept
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: out = ElementType::kFLOAT32; return true;
    case nvinfer1::DataType::kHALF: out = ElementType::kFLOAT16; return true;
    case nvinfer1::DataType::kBF16: out = ElementType::kBFLOAT16; return true;
    default: return false;
    }
}

} // namespace mod_export
