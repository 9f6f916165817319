# Walks a run of length-prefixed name components (3d4j4cuda...): the last
# component into `last_var` (unchanged when there is none), what follows the
# run into `rest_var`.
function(d4j_last_component text last_var rest_var)
  set(last "${${last_var}}")
  set(rest "${text}")
  while(rest MATCHES "^([0-9]+)(.*)$")
    set(len "${CMAKE_MATCH_1}")
    set(tail "${CMAKE_MATCH_2}")
    string(LENGTH "${tail}" have)
    if(have LESS len)
      break()
    endif()
    string(SUBSTRING "${tail}" 0 ${len} last)
    string(SUBSTRING "${tail}" ${len} -1 rest)
  endwhile()
  set(${last_var} "${last}" PARENT_SCOPE)
  set(${rest_var} "${rest}" PARENT_SCOPE)
endfunction()

# A kernel's name as its .cu source spells it (the name D4J_LAUNCH reports):
# the last component of the mangled nested name, so that neither the namespace
# nor the per-file hash of an anonymous namespace
# (_ZN41_GLOBAL__N__<hash>_17_kernels_concat_cu_<hash>12split_kernelE...) shows.
function(d4j_kernel_name mangled out)
  set(rest "")
  if(mangled MATCHES "^_ZN(.*)$")
    set(rest "${CMAKE_MATCH_1}")
  elseif(mangled MATCHES "^_Z(.*)$")
    set(rest "${CMAKE_MATCH_1}")
  endif()
  set(name "${mangled}")
  d4j_last_component("${rest}" name rest)
  # A kernel template instantiated on one type or integer keeps it, as
  # D4J_LAUNCH spells it (conv_tc_fwd_kernel<Tf32>, copy_kernel<4>): the
  # instantiations have different resources. The type's last name component
  # (INS0_2tc4Tf32EE -> Tf32), or the integer (ILi4EE -> 4).
  if(rest MATCHES "^IL[a-z]([0-9]+)E")
    set(name "${name}<${CMAKE_MATCH_1}>")
  elseif(rest MATCHES "^IN(S[0-9A-Z]*_)?([0-9].*)$")
    set(last "")
    d4j_last_component("${CMAKE_MATCH_2}" last targ)
    if(targ MATCHES "^E" AND NOT last STREQUAL "")
      set(name "${name}<${last}>")
    endif()
  elseif(rest MATCHES "^I([0-9]+)(.*)$")
    set(len "${CMAKE_MATCH_1}")
    string(SUBSTRING "${CMAKE_MATCH_2}" 0 ${len} last)
    set(name "${name}<${last}>")
  endif()
  set(${out} "${name}" PARENT_SCOPE)
endfunction()
