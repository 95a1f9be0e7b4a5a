/*
 * Static registration for LD_PRELOAD / trtexec --staticPlugins users: a separate library
 * (libmod_export_plugins_preload.so, CMake option MOD_BUILD_PRELOAD_LIBRARY) because
 * REGISTER_TENSORRT_PLUGIN needs getPluginRegistry() from libnvinfer, and IPluginRegistry::loadLibrary
 * refuses a library whose plugins are already registered.
 */
#include "../scatterPlugin/modScatterPlugin.h"
#include "../topkGatherPlugin/modTopKGatherPlugin.h"

using mod_export::MoDScatterCreator;
using mod_export::MoDTopKGatherCreator;

REGISTER_TENSORRT_PLUGIN(MoDTopKGatherCreator);
REGISTER_TENSORRT_PLUGIN(MoDScatterCreator);
