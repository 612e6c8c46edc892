"""Freeze and quantize stages: inference-only model, frozen graph, vai_q pof2s int8, accuracy ladder."""
