// slak-bench --train: training throughput of a registry model with the
// runtime's large kernels vs LibTorch conv2d branches (see TrainBench.cpp).
#pragma once

namespace slak::bench {

/// Parses the --train options in argv (argv[0] is the program) and prints the
/// table; returns the exit code.
int runTrainBench(int argc, char **argv);

} // namespace slak::bench
