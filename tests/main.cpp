// Catch2 main for blocklab_tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
