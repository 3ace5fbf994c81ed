"""Data parallelism for the JAX trainer: Keras' ``DataParallel`` over every device, across hosts too.

The batch axis of each step is split over a one-axis device mesh ("batch"); weights, optimiser
state and the uint8 photo store are replicated on every device. Under ``jax.jit`` XLA then
inserts the all-reduces itself (gradients, and batch-norm statistics, which stay those of the
whole global batch), so a run on N devices computes what one device computes, up to the
order of float additions. The same command runs on one device or many; the global batch and
the learning rate mean what they meant on one device.

Across hosts, every process runs the same command with ``--coordinator HOST:PORT
--num-processes N --process-id I`` (or Keras' ``KERAS_DISTRIBUTION_JOB_ADDRESSES``,
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``):
``keras.distribution.initialize`` calls ``jax.distributed.initialize`` before any device is
touched, and the mesh then spans every process' devices. Each process reads the whole pack
and builds the same global arrays (same seeds), so nothing is sent between hosts but the
all-reduces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import keras
import numpy as np


def initialize_hosts(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Join a multi-host run where the flags or Keras' environment variables ask; return whether one is.

    Must run before anything touches a JAX device.
    """
    coordinator = coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    if num_processes is None and os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
        num_processes = int(os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
    if process_id is None and os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID"):
        process_id = int(os.environ["KERAS_DISTRIBUTION_PROCESS_ID"])
    if not coordinator or not num_processes or num_processes < 2:
        return False
    keras.distribution.initialize(coordinator, num_processes, process_id)
    return True


@dataclass
class Placement:
    """Where the trainer's arrays live: batch axis split over the mesh, everything else replicated."""

    distribution: keras.distribution.DataParallel

    @classmethod
    def over(cls, n_devices: int | None = None) -> Placement:
        """Return the placement over the first ``n_devices`` devices (all of them by default).

        It becomes Keras' global distribution, so a model built after this has its variables
        replicated over the same devices.
        """
        devices = keras.distribution.list_devices()
        if n_devices is not None:
            if not 1 <= n_devices <= len(devices):
                raise ValueError(f"asked for {n_devices} devices; there are {len(devices)}")
            devices = devices[:n_devices]
        distribution = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(distribution)
        return cls(distribution)

    @property
    def n_devices(self) -> int:
        return int(np.prod(self.distribution.device_mesh.shape))

    @property
    def mesh(self) -> jax.sharding.Mesh:
        return self.distribution.device_mesh.backend_mesh

    def batch_sharding(self, ndim: int) -> jax.sharding.NamedSharding:
        """Return the sharding of an ``ndim``-dimensional array split along its first axis."""
        return self.distribution.get_data_layout((1,) * ndim).backend_layout

    @property
    def replicated_sharding(self) -> jax.sharding.NamedSharding:
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def check_batch(self, batch: int, what: str = "the batch") -> None:
        """Raise ValueError when ``batch`` does not split evenly over the devices."""
        if batch % self.n_devices:
            raise ValueError(f"{what} ({batch}) must be a multiple of the {self.n_devices} devices")

    def _global(self, array: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
        # Every process holds the whole host array; each device takes its own slice of it,
        # which works within one process and across many alike.
        array = np.asarray(array)
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    def split(self, array: np.ndarray) -> jax.Array:
        """Return ``array`` as a global array split along its first axis over the devices."""
        return self._global(array, self.batch_sharding(np.ndim(array)))

    def replicate(self, array) -> jax.Array:
        """Return ``array`` as a global array with a whole copy on every device."""
        if isinstance(array, jax.Array) and array.sharding.is_equivalent_to(
            self.replicated_sharding, array.ndim
        ):
            return array
        if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
            return jax.device_put(array, self.replicated_sharding)
        return self._global(np.asarray(array), self.replicated_sharding)

    def constrain(self, x: jax.Array) -> jax.Array:
        """Return ``x`` (inside a jitted function) laid out split along its first axis."""
        return jax.lax.with_sharding_constraint(x, self.batch_sharding(x.ndim))


def to_host(x: jax.Array) -> np.ndarray:
    """Return a replicated global array as a NumPy array (its local copy, on any process)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)
