// Embedding example: load the mod-export plugin library and a TensorRT engine, run one batch of token ids,
// print the most likely next token. Works with TensorRT 10.3 (JetPack 6) and 11.x.
//
//   mod_export_infer DIR/model.engine DIR/libmod_export_plugins.so "def main("
//
// The example model is byte-level: token ids are the bytes of the prompt.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace
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

bool check(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
    {
        std::fprintf(stderr, "error: %s: %s\n", what, cudaGetErrorString(status));
        return false;
    }
    return true;
}

struct DeviceBuffer
{
    void* ptr{nullptr};
    ~DeviceBuffer()
    {
        if (ptr != nullptr)
        {
            cudaFree(ptr);
        }
    }
};

} // namespace

int main(int argc, char** argv)
{
    if (argc != 4)
    {
        std::fprintf(stderr, "usage: %s MODEL.engine libmod_export_plugins.so PROMPT\n", argv[0]);
        return 2;
    }
    StderrLogger logger;
    // The plugin creators come from the library's getCreators() entry point.
    if (getPluginRegistry()->loadLibrary(argv[2]) == nullptr)
    {
        std::fprintf(stderr, "error: cannot load plugin library %s\n", argv[2]);
        return 1;
    }
    std::ifstream file(argv[1], std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (blob.empty())
    {
        std::fprintf(stderr, "error: cannot read engine %s\n", argv[1]);
        return 1;
    }
    std::unique_ptr<nvinfer1::IRuntime> runtime{nvinfer1::createInferRuntime(logger)};
    std::unique_ptr<nvinfer1::ICudaEngine> engine{runtime->deserializeCudaEngine(blob.data(), blob.size())};
    if (engine == nullptr)
    {
        std::fprintf(stderr, "error: cannot deserialize %s (TensorRT version or GPU differs?)\n", argv[1]);
        return 1;
    }
    std::unique_ptr<nvinfer1::IExecutionContext> context{engine->createExecutionContext()};

    std::string const prompt = argv[3];
    int64_t const T = static_cast<int64_t>(prompt.size());
    std::vector<int64_t> ids(prompt.begin(), prompt.end()); // [1, T] byte tokens
    for (auto& id : ids)
    {
        id &= 0xFF;
    }
    std::vector<int64_t> mask(ids.size(), 1); // [1, T] no padding
    nvinfer1::Dims shape{};
    shape.nbDims = 2;
    shape.d[0] = 1;
    shape.d[1] = T;
    if (!context->setInputShape("input_ids", shape) || !context->setInputShape("attention_mask", shape))
    {
        std::fprintf(stderr, "error: sequence length %lld is outside the engine's profile\n", static_cast<long long>(T));
        return 1;
    }
    nvinfer1::Dims const out = context->getTensorShape("logits"); // [1, T, V]
    int64_t const V = out.d[2];

    DeviceBuffer dIds, dMask, dLogits;
    size_t const idBytes = ids.size() * sizeof(int64_t);
    size_t const logitBytes = static_cast<size_t>(T * V) * sizeof(float);
    cudaStream_t stream{};
    if (!check(cudaMalloc(&dIds.ptr, idBytes), "cudaMalloc") || !check(cudaMalloc(&dMask.ptr, idBytes), "cudaMalloc")
        || !check(cudaMalloc(&dLogits.ptr, logitBytes), "cudaMalloc") || !check(cudaStreamCreate(&stream), "stream"))
    {
        return 1;
    }
    check(cudaMemcpyAsync(dIds.ptr, ids.data(), idBytes, cudaMemcpyHostToDevice, stream), "copy ids");
    check(cudaMemcpyAsync(dMask.ptr, mask.data(), idBytes, cudaMemcpyHostToDevice, stream), "copy mask");
    context->setTensorAddress("input_ids", dIds.ptr);
    context->setTensorAddress("attention_mask", dMask.ptr);
    context->setTensorAddress("logits", dLogits.ptr);
    if (!context->enqueueV3(stream))
    {
        std::fprintf(stderr, "error: enqueueV3 failed\n");
        return 1;
    }
    std::vector<float> last(static_cast<size_t>(V));
    check(cudaMemcpyAsync(last.data(), static_cast<float*>(dLogits.ptr) + (T - 1) * V, V * sizeof(float),
              cudaMemcpyDeviceToHost, stream),
        "copy logits");
    if (!check(cudaStreamSynchronize(stream), "synchronize"))
    {
        return 1;
    }
    cudaStreamDestroy(stream);
    int64_t const next = std::max_element(last.begin(), last.end()) - last.begin();
    std::printf("next token: %lld (%s)\n", static_cast<long long>(next),
        (next >= 32 && next < 127) ? std::string(1, static_cast<char>(next)).c_str() : "non-printable");
    return 0;
}
