#!/bin/sh
# Remove what an installed environment never uses at run time (the images call it after pip):
#   sh scripts/slim_site_packages.sh SITE_PACKAGES
# Packages' own test suites (every `tests` folder, torch's `test`; numpy.testing's one module stays), torch's C++ headers, its
# C++ test programs and protobuf compiler (torch/bin, all but torch_shm_manager, which
# torch.multiprocessing starts), static libraries, torch's symbol tables (with strip) and all
# byte-code (an image compiles what its services import); of OpenVINO, the GPU and NPU plugins
# and the model frontends other than ONNX and IR (the services compile ONNX artefacts on the CPU).
set -eu
SITE="${1:?site-packages folder}"
[ -d "$SITE/torch" ] || { echo "no torch in $SITE" >&2; exit 1; }
before=$(du -sm "$SITE" | cut -f1)
# numpy.testing imports numpy/_core/tests/_natype.py: of numpy's tests that module stays.
find "$SITE" -depth -type d -name tests ! -path "$SITE/numpy/_core/tests" -exec rm -rf {} +
[ ! -d "$SITE/numpy/_core/tests" ] || find "$SITE/numpy/_core/tests" -mindepth 1 -maxdepth 1 ! -name _natype.py -exec rm -rf {} +
rm -rf "$SITE/torch/test" "$SITE/torch/include"
find "$SITE/torch/bin" -mindepth 1 -maxdepth 1 ! -name torch_shm_manager -exec rm -rf {} +
find "$SITE" -name '*.a' -type f -delete
if [ -d "$SITE/openvino/libs" ]; then
    rm -f "$SITE"/openvino/libs/libopenvino_intel_gpu_plugin.so "$SITE"/openvino/libs/libopenvino_intel_npu_plugin.so \
          "$SITE"/openvino/libs/libopenvino_*tensorflow*_frontend.so* "$SITE"/openvino/libs/libopenvino_paddle_frontend.so* \
          "$SITE"/openvino/libs/libopenvino_jax_frontend.so* "$SITE"/openvino/libs/libopenvino_gguf_frontend.so* \
          "$SITE"/openvino/libs/libopenvino_pytorch_frontend.so*
    rm -rf "$SITE/openvino/include"
fi
# torch ships its libraries with symbol tables (libtorch_cpu.so: 434 MB, 345 MB stripped).
if command -v strip >/dev/null; then
    find "$SITE/torch/lib" -name '*.so*' -type f -exec strip --strip-unneeded {} +
fi
find "$SITE" -depth -type d -name __pycache__ -exec rm -rf {} +
echo "slimmed $SITE: ${before} MB -> $(du -sm "$SITE" | cut -f1) MB" >&2
