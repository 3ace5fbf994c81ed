"""Training: the CPU trainer, the Keras-on-JAX GPU route, photo packs, int8 weights, publishing."""
