// What both C++ examples need on the TensorRT/CUDA side (header-only; TensorRT 10.3 and 11.x): a logger, CUDA calls
// that throw, device buffers, loading the plugin library and an engine, and host<->device copies. Errors are
// std::runtime_error with one line, which runMain() prints as "error: ..." with exit code 1.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mod_example
{

class StderrLogger final : public nvinfer1::ILogger
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            std::fprintf(stderr, "[TensorRT] %s\n", msg);
        }
    }
};

inline void check(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
    }
}

//! A device allocation freed with the object.
struct DeviceBuffer
{
    void* ptr{nullptr};
    size_t bytes{0};
    explicit DeviceBuffer(size_t n = 0)
        : bytes(n)
    {
        if (n > 0)
        {
            check(cudaMalloc(&ptr, n), "cudaMalloc");
        }
    }
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;
    ~DeviceBuffer()
    {
        if (ptr != nullptr)
        {
            cudaFree(ptr);
        }
    }
};

inline std::string readFile(std::string const& path)
{
    std::ifstream file(path, std::ios::binary);
    if (!file)
    {
        throw std::runtime_error("cannot read " + path);
    }
    return std::string((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

//! The plugin creators come from the library's getCreators() entry point (IPluginRegistry::loadLibrary).
inline void loadPluginLibrary(std::string const& path)
{
    if (getPluginRegistry()->loadLibrary(path.c_str()) == nullptr)
    {
        throw std::runtime_error("cannot load plugin library " + path);
    }
}

struct Engine
{
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
};

inline Engine loadEngine(nvinfer1::IRuntime& runtime, std::string const& path)
{
    std::string const blob = readFile(path);
    Engine e;
    e.engine.reset(runtime.deserializeCudaEngine(blob.data(), blob.size()));
    if (e.engine == nullptr)
    {
        throw std::runtime_error("cannot deserialize " + path + " (TensorRT version or GPU differs?)");
    }
    e.context.reset(e.engine->createExecutionContext());
    return e;
}

template <typename T>
void upload(void* dst, std::vector<T> const& src, cudaStream_t stream)
{
    check(cudaMemcpyAsync(dst, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice, stream), "upload");
}

//! `count` values from the device, after the stream has finished.
template <typename T>
std::vector<T> download(void const* src, size_t count, cudaStream_t stream)
{
    std::vector<T> out(count);
    check(cudaMemcpyAsync(out.data(), src, count * sizeof(T), cudaMemcpyDeviceToHost, stream), "download");
    check(cudaStreamSynchronize(stream), "synchronize");
    return out;
}

//! An example's main(): `run(argc, argv)`, with an exception printed as one "error: ..." line and exit code 1.
inline int runMain(int (*run)(int, char**), int argc, char** argv)
{
    try
    {
        return run(argc, argv);
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

} // namespace mod_example
