"""Sign Language MNIST -> Vitis AI DPU toolchain: config, artifacts, runners and the CLI."""
