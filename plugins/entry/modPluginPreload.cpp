/*
 * Static registration for LD_PRELOAD / trtexec --staticPlugins users: a separate library
 * (libmod_export_plugins_preload.so, CMake option MOD_BUILD_PRELOAD_LIBRARY) because
 * REGISTER_TENSORRT_PLUGIN needs getPluginRegistry() from libnvinfer, and IPluginRegistry::loadLibrary
 * refuses a library whose plugins are already registered.
 */
#include "../cacheAppendPlugin/modCacheAppendPlugin.h"
#include "../scatterPlugin/modScatterPlugin.h"
#include "../takeCountPlugin/modTakeCountPlugin.h"
#include "../topkGatherPlugin/modTopKGatherPlugin.h"

using mod_export::MoDCacheAppendCreator;
using mod_export::MoDScatterCreator;
using mod_export::MoDTakeCountCreator;
using mod_export::MoDTopKGatherCreator;

// The same four creators as getCreators (modPluginEntry.cpp): the generation engines need the last two.
REGISTER_TENSORRT_PLUGIN(MoDTopKGatherCreator);
REGISTER_TENSORRT_PLUGIN(MoDScatterCreator);
REGISTER_TENSORRT_PLUGIN(MoDTakeCountCreator);
REGISTER_TENSORRT_PLUGIN(MoDCacheAppendCreator);
