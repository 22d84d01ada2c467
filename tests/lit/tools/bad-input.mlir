// Files of the wrong kind, truncated IR and an empty module given to the IR
// tools (docs/bad-input.md): one message naming the file and what it is.
// RUN: rm -rf %t && mkdir -p %t
// RUN: printf '\x89PNG\r\n\x1a\n\000\000\000\rIHDR' > %t/figure.png
// RUN: printf 'PK\x03\x04\024\000\000\000' > %t/checkpoint.pt
// RUN: printf 'SQLite format 3\000\020\000' > %t/tuning.db
// RUN: printf '{"format": "slak-kernel-package"}\n' > %t/manifest.json
// RUN: printf 'func.func @f(%%x: tensor<1xf32>' > %t/truncated.mlir
// RUN: not slak-opt %t/figure.png 2>&1 | FileCheck %s --check-prefix=PNG
// RUN: not slak-opt %t/checkpoint.pt 2>&1 | FileCheck %s --check-prefix=ZIP
// RUN: not slak-opt %t/tuning.db 2>&1 | FileCheck %s --check-prefix=DB
// RUN: not slak-opt %t/manifest.json 2>&1 | FileCheck %s --check-prefix=JSON
// RUN: mkdir %t/folder && not slak-opt %t/folder 2>&1 | FileCheck %s --check-prefix=FOLDER
// RUN: not slak-opt %t/truncated.mlir 2>&1 | FileCheck %s --check-prefix=TRUNCATED
// RUN: not slak-translate --emit-kernel-package -o %t/pkg %t/truncated.mlir 2>&1 \
// RUN:   | FileCheck %s --check-prefix=TRUNCATED
// RUN: not slak-autotune --gpu a100 %t/checkpoint.pt -o %t/tuned.mlir --db %t/new.db 2>&1 \
// RUN:   | FileCheck %s --check-prefix=AUTOTUNE-ZIP
// RUN: not slak-autotune --gpu a100 %t/truncated.mlir -o %t/tuned.mlir --db %t/new.db 2>&1 \
// RUN:   | FileCheck %s --check-prefix=TRUNCATED
// A file of another kind as the tuning database: one error, no op dump.
// RUN: not slak-opt %slak_src/examples/slak_t_stage1.mlir \
// RUN:   --slak-pipeline="mode=infer device=a100 db=%t/figure.png" 2>&1 \
// RUN:   | FileCheck %s --check-prefix=DB-PNG
// An empty file is an empty module: slak-opt prints it, the model form has
// nothing to tune.
// RUN: printf '' > %t/empty.mlir
// RUN: slak-opt %t/empty.mlir | FileCheck %s --check-prefix=EMPTY
// RUN: not slak-autotune --gpu a100 %t/empty.mlir -o %t/tuned.mlir --db %t/new.db 2>&1 \
// RUN:   | FileCheck %s --check-prefix=AUTOTUNE-EMPTY

// PNG: slak-opt: {{.*}}figure.png is a PNG image, not an MLIR module (text, or bytecode from slak-export --bytecode)
// PNG-NOT: unexpected character
// ZIP: slak-opt: {{.*}}checkpoint.pt is a zip archive (e.g. a PyTorch checkpoint), not an MLIR module
// DB: slak-opt: {{.*}}tuning.db is an SQLite database (e.g. a tuning database), not an MLIR module
// JSON: slak-opt: {{.*}}manifest.json is JSON text, not an MLIR module
// FOLDER: slak-opt: {{.*}}folder is a folder, not an MLIR module
// TRUNCATED: truncated.mlir:1:{{[0-9]+}}: error:
// AUTOTUNE-ZIP: slak-autotune: {{.*}}checkpoint.pt is a zip archive (e.g. a PyTorch checkpoint), not an MLIR module
// DB-PNG: error: slak-apply-schedules: tuning database {{.*}}figure.png: is not an SQLite file
// DB-PNG-NOT: see current operation
// EMPTY: module {
// AUTOTUNE-EMPTY: has no slak.lk_conv to tune
