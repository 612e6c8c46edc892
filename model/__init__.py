"""Training stage: Sign Language MNIST data, the DPU-friendly CNN, training and reports."""
