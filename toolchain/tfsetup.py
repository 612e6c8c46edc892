"""The one place TensorFlow is set up for a stage: quiet, seeded, deterministic, threads."""
from __future__ import annotations

import os
import warnings


def configure_tf(cfg):
    """Import TensorFlow quietly, seeded and deterministic, with the configured threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=SyntaxWarning)    # autograph-generated code
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    if cfg.train.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.train.threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(cfg.train.threads, 2))
        except RuntimeError:
            pass  # already initialised in this process (tests); keep what is there
    tf.keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    return tf
