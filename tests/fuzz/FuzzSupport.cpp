// Sanitizer defaults of the fuzz binaries, so that a reproducer runs the same
// way with or without scripts/fuzz.sh's environment.
//
// allow_user_poisoning=0: LLVM's BumpPtrAllocator poisons a new slab and
// unpoisons each allocation only where its inline code is compiled with
// ASan. Our (instrumented) code and Debian's (uninstrumented) MLIR share
// allocators, so a slab poisoned by our copy and handed out by theirs reads
// as use-after-poison (seen in slak-opt's context setup). With user
// poisoning off ASan still checks every heap block, redzone and free.
extern "C" const char *__asan_default_options() { return "allow_user_poisoning=0"; }
