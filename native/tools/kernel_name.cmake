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
  while(rest MATCHES "^([0-9]+)(.*)$")
    set(len "${CMAKE_MATCH_1}")
    set(tail "${CMAKE_MATCH_2}")
    string(LENGTH "${tail}" have)
    if(have LESS len)
      break()
    endif()
    string(SUBSTRING "${tail}" 0 ${len} name)
    string(SUBSTRING "${tail}" ${len} -1 rest)
  endwhile()
  set(${out} "${name}" PARENT_SCOPE)
endfunction()
