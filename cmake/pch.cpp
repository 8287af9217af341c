// Compiles the LibTorch precompiled header once; the layers reuse it.
