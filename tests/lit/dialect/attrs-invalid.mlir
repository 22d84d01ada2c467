// RUN: slak-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{#slak.branch_taps kernel is 4x5, expected odd positive sizes}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [4, 5], nnz = [0, 0], mean = 0.0, density = 0.0, window = [0, 0, 0, 0], form = dense>}

// -----

// expected-error @+1 {{#slak.branch_taps nnz is [3, 30], expected 0 <= min <= max <= 25 (KH*KW)}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 30], mean = 4.0, density = 0.5, window = [0, 5, 0, 5], form = table>}

// -----

// expected-error @+1 {{#slak.branch_taps mean is 2.0, expected a value in [3, 7]}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 7], mean = 2.0, density = 0.5, window = [0, 5, 0, 5], form = table>}

// -----

// expected-error @+1 {{#slak.branch_taps density is 1.5, expected a value in [0, 1]}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 7], mean = 5.0, density = 1.5, window = [0, 5, 0, 5], form = table>}

// -----

// expected-error @+1 {{#slak.branch_taps window is [0, 6, 0, 5], expected rows within [0, 5] and columns within [0, 5], begin <= end}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 7], mean = 5.0, density = 0.2, window = [0, 6, 0, 5], form = table>}

// -----

// expected-error @+1 {{form is 'sparse', expected dense or table}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 7], mean = 5.0, density = 0.2, window = [0, 5, 0, 5], form = sparse>}

// -----

// expected-error @+1 {{unknown key 'size' in #slak.branch_taps; expected one of: kernel, nnz, mean, density, window, form}}
func.func @f() attributes {a = #slak.branch_taps<size = [5, 5]>}

// -----

// expected-error @+1 {{#slak.branch_taps is missing the key 'window'}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 7], mean = 5.0, density = 0.2, form = table>}

// -----

// expected-error @+1 {{key 'nnz' appears twice in #slak.branch_taps}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5], nnz = [3, 7], nnz = [3, 7]>}

// -----

// expected-error @+1 {{'kernel' takes 2 integers, found 3}}
func.func @f() attributes {a = #slak.branch_taps<kernel = [5, 5, 5]>}

// -----

// expected-error @+1 {{#slak.taps branch 0 is 3 : i64, expected a #slak.branch_taps}}
func.func @f() attributes {a = #slak.taps<branches = [3]>}

// -----

// expected-error @+1 {{#slak.taps is missing the key 'branches'}}
func.func @f() attributes {a = #slak.taps<table = "t">}

// -----

// expected-error @+1 {{#slak.schedule tile is [0, 32], expected 1..2147483647 per side}}
func.func @f() attributes {a = #slak.schedule<tile = [0, 32], block = [4, 32]>}

// -----

// expected-error @+1 {{#slak.schedule tile [16, 30] is not a multiple of block [4, 32]; each thread computes tile/block outputs}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 30], block = [4, 32]>}

// -----

// expected-error @+1 {{#slak.schedule block [32, 64] has 2048 threads, at most 1024 are allowed}}
func.func @f() attributes {a = #slak.schedule<tile = [32, 64], block = [32, 64]>}

// -----

// expected-error @+1 {{#slak.schedule weight_split is 0, expected 1..2147483647}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], weight_split = 0>}

// -----

// expected-error @+1 {{#slak.schedule weight_threads is 100, expected a power of two in 1..1024}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], weight_threads = 100>}

// -----

// expected-error @+1 {{#slak.schedule origin is "guess", expected "default", "model" or "measured"}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], origin = "guess">}

// -----

// expected-error @+1 {{stage_input is 'yes', expected true or false}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], stage_input = yes>}

// -----

// expected-error @+1 {{#slak.taps channel_order is not a permutation of 0..2 (entry 0)}}
func.func @f() attributes {a = #slak.taps<branches = [], channel_order = [0, 2, 0]>}

// -----

// expected-error @+1 {{#slak.schedule weight_tile is [0, 32], expected 1..2147483647 per side}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], weight_tile = [0, 32]>}

// -----

// The attribute applies the same rules as the schedule text and the package
// (codegen's schedule field table): per-field ranges and the rules between
// fields.
// expected-error @+1 {{#slak.schedule weight_rows_per_thread is 17, expected 1..16}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], weight_rows_per_thread = 17>}

// -----

// expected-error @+1 {{#slak.schedule tile [256, 64] and block [2, 32] give each thread 128x2 outputs (tileH/blockH x tileW/blockW), at most 128 are allowed}}
func.func @f() attributes {a = #slak.schedule<tile = [256, 64], block = [2, 32]>}

// -----

// expected-error @+1 {{unknown key 'weight_rows' in #slak.schedule; expected one of: tile, block, stage_input, stage_taps, masked_walk, weight_split, weight_threads, weight_tile, weight_rows_per_thread, origin}}
func.func @f() attributes {a = #slak.schedule<tile = [16, 32], block = [4, 32], weight_rows = 4>}
