// analysis layer: see its CMakeLists.txt
