# The front door for people. Logic lives in Rust (cargo xtask, the edgepool binary);
# these recipes only name the common tasks. Install just with `pip install rust-just`.

default:
    @just --list

# Run the whole pipeline locally (embedded nats-server) and print a summary.
demo *ARGS:
    cargo xtask demo {{ARGS}}

# Run every test against a real nats-server and the real model.
test *ARGS:
    cargo xtask test {{ARGS}}

# Format check and lints.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Install nats-server, nats-py and jsonschema into the user cache.
tools:
    cargo xtask tools

# Download, convert and verify the detector model (cached).
model:
    cargo xtask model

# Detector benchmark: per-stage split, fps per layout, ratio to onnxruntime.
bench-detect *ARGS:
    cargo xtask model
    cargo run --release -p edgepool -- bench detect {{ARGS}}

# Pipeline overhead benchmark: edgepool vs raw JetStream publish+consume.
bench-pipeline *ARGS:
    cargo xtask tools
    cargo run --release -p edgepool -- bench pipeline {{ARGS}}
