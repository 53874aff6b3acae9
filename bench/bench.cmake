# bench/: the load generator and the backend it talks to (bench/run drives them).
add_executable(mtls-load ${CMAKE_CURRENT_LIST_DIR}/mtls-load.c)
target_link_libraries(mtls-load PRIVATE PkgConfig::OPENSSL Threads::Threads)
add_executable(bench-backend ${CMAKE_CURRENT_LIST_DIR}/bench-backend.c)
