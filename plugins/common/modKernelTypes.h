// Types at the boundary between the TensorRT glue and the CUDA launchers (no TensorRT include here).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mod_export
{

enum class ElementType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
    kBFLOAT16 = 2,
};

inline size_t elementSize(ElementType t)
{
    return t == ElementType::kFLOAT32 ? 4 : 2;
}

} // namespace mod_export
