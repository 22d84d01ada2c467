// slak-bench --train: whole-model training and inference images/s of
// registry models, large kernels through the runtime or LibTorch branches,
// NCHW or channels_last (bench/TrainBench.cpp).
#pragma once

namespace slak::bench {

/// Parses argv (the flags after --train) and prints the table. Returns the
/// process exit code: 0, 1 for an error while running, 2 for bad flags or a
/// model that does not fit the image size.
int runTrainBench(int argc, char **argv);

} // namespace slak::bench
