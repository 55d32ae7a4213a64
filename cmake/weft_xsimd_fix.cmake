# Debian 12's libxsimd-dev (xsimd 8.1.0) exports a target `xsimd` whose INTERFACE_LINK_LIBRARIES
# names `xtl`, but ships no xtl target, so linking it passes -lxtl and fails. xsimd needs xtl
# only for its optional xtl::xcomplex support, which weft does not use. If the target is
# missing after looking for the real package, stand in an empty interface target.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_weft_xsimd_libs xsimd INTERFACE_LINK_LIBRARIES)
  if(_weft_xsimd_libs AND "xtl" IN_LIST _weft_xsimd_libs)
    find_package(xtl QUIET)
    if(NOT TARGET xtl)
      add_library(xtl INTERFACE IMPORTED)
    endif()
  endif()
  unset(_weft_xsimd_libs)
endif()
