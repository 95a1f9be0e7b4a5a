#include "modPluginUtils.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>

namespace mod_export
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

char const* baseName(char const* path) noexcept
{
    char const* slash = std::strrchr(path, '/');
    return slash != nullptr ? slash + 1 : path;
}

//! Copy `text` into `out` (size `capacity`), truncated and always NUL-terminated.
void copyTruncated(char* out, size_t capacity, char const* text) noexcept
{
    size_t const length = text != nullptr ? std::strlen(text) : 0;
    size_t const n = length < capacity - 1 ? length : capacity - 1;
    if (n > 0)
    {
        std::memcpy(out, text, n);
    }
    out[n] = '\0';
}

void report(nvinfer1::ErrorCode code, char const* plugin, char const* method, char const* what,
    nvinfer1::IErrorRecorder* recorder) noexcept
{
    // Fixed buffers: reporting must not allocate (the failure may have been an allocation).
    char line[1024];
    std::snprintf(line, sizeof(line), "%s::%s: %s", plugin != nullptr ? plugin : "mod_export",
        method != nullptr ? method : "?", what != nullptr ? what : "unknown error");
    logPluginMessage(nvinfer1::ILogger::Severity::kERROR, line);
    if (recorder != nullptr)
    {
        char desc[nvinfer1::IErrorRecorder::kMAX_DESC_LENGTH + 1];
        copyTruncated(desc, sizeof(desc), line);
        recorder->reportError(code, desc);
    }
}

//! The state field of `fc` when it carries one, else nullptr (and then not at run time).
nvinfer1::PluginField const* findStateField(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase)
{
    nvinfer1::PluginField const* state = nullptr;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, kStateFieldName) == 0)
        {
            MOD_VALIDATE(state == nullptr, std::string("field ") + kStateFieldName + " given twice");
            state = &fc->fields[i];
        }
    }
    MOD_VALIDATE(state == nullptr || fc->nbFields == 1, "a serialized state cannot be mixed with attribute fields");
    MOD_VALIDATE(state != nullptr || phase != nvinfer1::TensorRTPhase::kRUNTIME,
        std::string("deserializing, but no field ") + kStateFieldName
            + " (engine built with a different mod_export plugin library?)");
    return state;
}

//! The values of the state field of plugin `kind`.
std::vector<int32_t> readStateField(nvinfer1::PluginField const& field, PluginKind kind, uint32_t nbValues)
{
    MOD_VALIDATE(field.type == nvinfer1::PluginFieldType::kUNKNOWN || field.type == nvinfer1::PluginFieldType::kINT8,
        std::string("field ") + kStateFieldName + " must be raw bytes (kUNKNOWN)");
    DecodedState const state = decodeState(field.data, field.length, kind, nbValues);
    MOD_VALIDATE(state.status == StateStatus::kOK, describeState(state));
    return state.values;
}
} // namespace

PluginError::PluginError(char const* file, int32_t line, std::string const& message)
    : std::runtime_error(message + " [" + baseName(file) + ":" + std::to_string(line) + "]"), mFile(file), mLine(line)
{
}

void throwPluginError(char const* file, int32_t line, std::string const& message)
{
    throw PluginError(file, line, message);
}

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    gLoggerFinder.store(finder);
}

void logPluginMessage(nvinfer1::ILogger::Severity severity, char const* message) noexcept
{
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    nvinfer1::ILogger* logger = nullptr;
    try
    {
        logger = finder != nullptr ? finder->findLogger() : nullptr; // findLogger() is not noexcept
    }
    catch (...)
    {
        logger = nullptr;
    }
    if (logger != nullptr)
    {
        logger->log(severity, message);
        return;
    }
    std::fprintf(stderr, "[mod_export plugin] %s\n", message);
}

void caughtError(
    std::exception const& error, char const* plugin, char const* method, nvinfer1::IErrorRecorder* recorder) noexcept
{
    nvinfer1::ErrorCode code = nvinfer1::ErrorCode::kINTERNAL_ERROR;
    if (dynamic_cast<PluginError const*>(&error) != nullptr)
    {
        code = nvinfer1::ErrorCode::kINVALID_ARGUMENT;
    }
    else if (dynamic_cast<std::bad_alloc const*>(&error) != nullptr)
    {
        code = nvinfer1::ErrorCode::kFAILED_ALLOCATION;
    }
    report(code, plugin, method, error.what(), recorder);
}

void caughtUnknownError(char const* plugin, char const* method, nvinfer1::IErrorRecorder* recorder) noexcept
{
    report(nvinfer1::ErrorCode::kUNSPECIFIED_ERROR, plugin, method, "unknown exception", recorder);
}

void validateFieldCollection(nvinfer1::PluginFieldCollection const* fc)
{
    MOD_VALIDATE(fc != nullptr, "no plugin fields given");
    MOD_VALIDATE(fc->nbFields >= 0 && fc->nbFields <= kMaxPluginFields,
        std::string("implausible field count ") + std::to_string(fc->nbFields));
    MOD_VALIDATE(fc->nbFields == 0 || fc->fields != nullptr,
        std::to_string(fc->nbFields) + " fields announced but no field array");
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        MOD_VALIDATE(fc->fields[i].name != nullptr, std::string("field ") + std::to_string(i) + " has no name");
    }
}

int64_t readIntegerField(nvinfer1::PluginField const& field)
{
    std::string const name = field.name != nullptr ? field.name : "<unnamed>";
    MOD_VALIDATE(field.data != nullptr && field.length == 1,
        std::string("field '") + name + "' must hold exactly one integer (length " + std::to_string(field.length)
            + (field.data == nullptr ? ", no data)" : ")"));
    switch (field.type)
    {
    case nvinfer1::PluginFieldType::kINT8: return *static_cast<int8_t const*>(field.data);
    case nvinfer1::PluginFieldType::kINT16: return *static_cast<int16_t const*>(field.data);
    case nvinfer1::PluginFieldType::kINT32: return *static_cast<int32_t const*>(field.data);
    case nvinfer1::PluginFieldType::kINT64: return *static_cast<int64_t const*>(field.data);
    default: break;
    }
    throwPluginError(__FILE__, __LINE__,
        std::string("field '") + name + "' must be an integer field (got PluginFieldType "
            + std::to_string(static_cast<int32_t>(field.type)) + ")");
}

ElementType toElementType(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return ElementType::kFLOAT32;
    case nvinfer1::DataType::kHALF: return ElementType::kFLOAT16;
    case nvinfer1::DataType::kBF16: return ElementType::kBFLOAT16;
    default: break;
    }
    throwPluginError(__FILE__, __LINE__,
        std::string("unsupported activation type (DataType ") + std::to_string(static_cast<int32_t>(type))
            + "; float32, float16 or bfloat16 expected)");
}

FieldValues readPluginFields(nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase, PluginKind kind,
    nvinfer1::PluginFieldCollection const& declared, char const* plugin)
{
    validateFieldCollection(fc);
    nvinfer1::PluginField const* state = findStateField(fc, phase);
    if (state != nullptr)
    {
        std::vector<int32_t> const values = readStateField(*state, kind, static_cast<uint32_t>(declared.nbFields));
        return FieldValues(values.begin(), values.end());
    }
    FieldValues values(static_cast<size_t>(declared.nbFields));
    std::vector<bool> seen(values.size(), false);
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc->fields[i];
        int32_t d = 0;
        while (d < declared.nbFields && std::strcmp(f.name, declared.fields[d].name) != 0)
        {
            ++d;
        }
        if (d < declared.nbFields)
        {
            MOD_VALIDATE(!seen[d], std::string("field ") + f.name + " given twice");
            values[d] = readIntegerField(f);
            seen[d] = true;
        }
        else if (std::strcmp(f.name, "plugin_version") != 0 && std::strcmp(f.name, "plugin_namespace") != 0)
        {
            logPluginMessage(nvinfer1::ILogger::Severity::kWARNING,
                (std::string(plugin) + ": ignoring unknown field '" + f.name + "'").c_str());
        }
    }
    for (int32_t d = 0; d < declared.nbFields; ++d)
    {
        MOD_VALIDATE(seen[d], std::string("missing field ") + declared.fields[d].name);
    }
    return values;
}

} // namespace mod_export
