// A deliberate heap overflow and signed overflow: the sanitizer build must
// report them (tests/sanitize/CMakeLists.txt expects the reports), which
// proves scripts/sanitize.sh runs instrumented code.
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char **argv) {
  std::vector<int> v(static_cast<size_t>(argc) + 3);
  if (argc > 1 && argv[1][0] == 'u') {
    int big = INT_MAX - 1 + argc; // argc >= 2: signed overflow
    std::printf("%d\n", big + 1);
    return 0;
  }
  volatile int *p = v.data();
  std::printf("%d\n", p[v.size()]); // one past the end
  return 0;
}
