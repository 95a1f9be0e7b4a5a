# cmake -DNM=nm -DLIBRARY=libmod_export_plugins.so -P checkExports.cmake: fails unless the library's defined dynamic
# symbols are exactly getCreators and setLoggerFinder.
execute_process(COMMAND ${NM} -D --defined-only ${LIBRARY} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
string(REGEX MATCHALL "[^\n]+" lines "${out}")
set(names "")
foreach(line IN LISTS lines)
  string(REGEX REPLACE "^.* " "" name "${line}")
  list(APPEND names "${name}")
endforeach()
list(SORT names)
if(NOT rc EQUAL 0 OR NOT names STREQUAL "getCreators;setLoggerFinder")
  message(FATAL_ERROR "${LIBRARY} exports [${names}], expected [getCreators;setLoggerFinder] (nm exit ${rc})")
endif()
