// datasets layer: see its CMakeLists.txt
