// blocks layer: see its CMakeLists.txt
