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
    cargo xtask lint-width
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
    cargo run --release -p edgepool-bench -- detect {{ARGS}}

# Any benchmark by name (edgepool-bench: detect, pipeline, skew, overload, memory, chaos).
bench NAME *ARGS:
    cargo xtask tools
    cargo xtask model
    cargo build --release -p edgepool
    cargo run --release -p edgepool-bench -- {{NAME}} {{ARGS}}

# Pipeline overhead benchmark: edgepool vs raw JetStream publish+consume.
bench-pipeline *ARGS:
    cargo xtask tools
    cargo run --release -p edgepool-bench -- pipeline {{ARGS}}

# Reliability scenarios at full size on real processes (docs/reliability.md): `just chaos`,
# `just chaos worker-crash,cluster`, `just chaos soak --duration 10m`, `just chaos sync`.
chaos scenarios="all" *ARGS:
    cargo xtask tools
    cargo xtask model
    cargo build --release -p edgepool
    cargo run --release -p edgepool-bench -- chaos {{scenarios}} {{ARGS}}

# --- Kubernetes (docs/deploy-microk8s.md) ---------------------------------------------------

image_name := "edgepool"
image_tag := "0.1.0"

# Build the images (edgepool, and edgepool-camera with ffmpeg) for linux/amd64 + linux/arm64 with
# buildx (out/*.tar, or PUSH=1 IMAGE=reg/name:tag CAMERA_IMAGE=reg/name-camera:tag).
image:
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p out
    if [ "${PUSH:-0}" = 1 ]; then
        docker buildx build --platform linux/amd64,linux/arm64 -t "${IMAGE:-{{image_name}}:{{image_tag}}}" --push .
        docker buildx build --platform linux/amd64,linux/arm64 --target camera \
            -t "${CAMERA_IMAGE:-{{image_name}}-camera:{{image_tag}}}" --push .
    else
        for arch in amd64 arm64; do
            docker buildx build --platform "linux/$arch" -t "{{image_name}}:{{image_tag}}" \
                -o "type=docker,dest=out/edgepool-{{image_tag}}-$arch.tar" .
            echo "out/edgepool-{{image_tag}}-$arch.tar"
            # The camera image: the same binary plus a static ffmpeg (Dockerfile, target camera).
            docker buildx build --platform "linux/$arch" --target camera -t "{{image_name}}-camera:{{image_tag}}" \
                -o "type=docker,dest=out/edgepool-camera-{{image_tag}}-$arch.tar" .
            echo "out/edgepool-camera-{{image_tag}}-$arch.tar"
        done
    fi

# The deployment's credentials (CA, server certificate, a NATS user per role and camera, the sink's
# tokens) into k8s/components/credentials/generated, which every secure overlay reads:
# `just secrets --camera front-door,garage --san 192.168.1.250`. Refuses to overwrite (add --force).
secrets *args:
    cargo run -q -p edgepool -- auth init k8s/components/credentials/generated {{args}}

# Apply an overlay (microk8s, microk8s-keda, microk8s-cameras, single-node, dev-insecure).
# Secure overlays need `just secrets` first.
deploy overlay="microk8s":
    kubectl apply -k k8s/{{ if overlay == "base" { "base" } else { "overlays/" + overlay } }}

# Scale one architecture's workers: `just scale arm64 3`.
scale arch n:
    kubectl -n edgepool scale deployment/worker-{{arch}} --replicas={{n}}

# Fleet view from your machine, through a port-forward to the NATS Service.
status:
    #!/usr/bin/env bash
    set -euo pipefail
    creds=k8s/components/credentials/generated
    kubectl -n edgepool port-forward svc/nats 14222:4222 >/dev/null &
    pf=$!
    trap 'kill $pf' EXIT
    sleep 2
    if [ -f "$creds/admin.env" ]; then
        # As admin, over TLS (the server certificate names 127.0.0.1).
        set -a; . "$creds/admin.env"; set +a
        cargo run -q -p edgepool -- status --nats-url tls://127.0.0.1:14222 --nats-tls-ca "$creds/ca.crt"
    else
        cargo run -q -p edgepool -- status --nats-url nats://127.0.0.1:14222
    fi

# Follow the logs of one component: worker, sink, nats, setup, camera.
logs component:
    kubectl -n edgepool logs -f --all-containers --prefix --max-log-requests 12 -l app.kubernetes.io/component={{component}}

# Remove edgepool (the namespace, with its PVCs) and the microk8s overlay's extra objects.
undeploy overlay="microk8s":
    kubectl delete --ignore-not-found -k k8s/{{ if overlay == "base" { "base" } else { "overlays/" + overlay } }}

# Push a model file into the MODELS bucket through the model-push Job (copies FILE in with kubectl cp).
model-push file name="ssd_mobilenet_v2_coco":
    #!/usr/bin/env bash
    set -euo pipefail
    kubectl -n edgepool delete job/model-push --ignore-not-found
    kubectl kustomize k8s/jobs/model-push | sed 's/--name=ssd_mobilenet_v2_coco/--name={{name}}/' | kubectl apply -f -
    pod=$(kubectl -n edgepool get pod -l job-name=model-push -o name | head -1)
    kubectl -n edgepool wait "$pod" --for=jsonpath='{.status.initContainerStatuses[0].state.running}' --timeout=120s
    kubectl -n edgepool cp "{{file}}" "${pod#pod/}:/upload/model.onnx" -c upload
    kubectl -n edgepool exec "$pod" -c upload -- touch /upload/ready
    kubectl -n edgepool wait job/model-push --for=condition=complete --timeout=300s
    kubectl -n edgepool logs job/model-push

# Refresh the copies kustomize needs inside k8s/ (it refuses files outside its root).
k8s-sync:
    for f in nats-server.conf nats-server-secure.conf nats-server-cluster.conf tls.conf cluster-tls.conf; do cp nats/$f k8s/base/generated/$f; done
    cp grafana/dashboards/edgepool.json k8s/base/generated/edgepool-dashboard.json

# Render and check every overlay without a cluster (schemas, --check, selectors, policies).
k8s-check:
    bash .ci/k8s-checks.sh

# Fuzz the frame, result and image parsers for SECONDS each (fuzz/, docs/reliability.md).
fuzz seconds="60" *TARGETS:
    bash .ci/fuzz.sh {{seconds}} {{TARGETS}}
