"""Where the batches run: in this process (``local``) or on Ray actors (``ray``).

Both take the same batches and give the same :class:`BatchOutput` objects in the same order,
from the same function (:func:`study.batch.process_batch`); only where it runs differs. On
Ray each actor loads the models once and keeps their compiled passes; Ray's own
:class:`ray.util.ActorPool` hands batches to whichever actor is free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from study.batch import BatchOutput, StudyOptions, load_study_models, process_batch
from study.photos import PhotoItem

ROOT = Path(__file__).resolve().parents[1]


def limit_threads(threads: int | None) -> None:
    """Give TensorFlow ``threads`` intra-op threads (and one inter-op), before it starts."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started in this process: keep its pool


def runtime_env() -> dict:
    """Return the environment Ray actors start in: this checkout importable, TensorFlow quiet.

    The engine is TensorFlow code, so Keras is told its backend outright: an actor otherwise
    inherits whatever ``KERAS_BACKEND`` the driver's environment holds (importing the JAX
    trainer in the same process sets it to ``jax``).
    """
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"env_vars": {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}}


def start_local_ray(cpus: int) -> None:
    """Start Ray on this machine only: loopback, no dashboard, ``cpus`` CPUs."""
    import ray

    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env=runtime_env(),
        log_to_driver=False,
        configure_logging=False,
    )


class LocalEngine:
    """Runs every batch in this process, the models loaded once."""

    name = "local"

    def __init__(self, model_paths: dict[str, str], options: StudyOptions, threads: int | None = None):
        limit_threads(threads)
        self.models = load_study_models(model_paths)
        self.options = options

    def map(self, batches: Iterable[list[PhotoItem]]) -> Iterator[BatchOutput]:
        for items in batches:
            yield process_batch(self.models, items, self.options)

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor's state: the models and their compiled passes, kept between batches."""

    def __init__(self, model_paths: dict[str, str], options: StudyOptions, threads: int | None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        limit_threads(threads)
        self.models = load_study_models(model_paths)
        self.options = options

    def process(self, items: list[PhotoItem]) -> BatchOutput:
        return process_batch(self.models, items, self.options)

    def ready(self) -> bool:
        return True


class RayEngine:
    """Runs the batches on Ray actors: a local Ray started here, or a cluster at ``address``.

    A local Ray listens on loopback only and starts no dashboard. On a cluster every node
    needs this checkout (and the model files) at the same path: the actors import ``study``
    from it.
    """

    name = "ray"

    def __init__(
        self,
        model_paths: dict[str, str],
        options: StudyOptions,
        workers: int | None = None,
        address: str | None = None,
        threads: int | None = None,
    ):
        import ray
        from ray.util import ActorPool

        self._ray = ray
        self._started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False)
            else:
                start_local_ray(workers or os.cpu_count() or 1)
            self._started_here = True
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_Worker)
        self.actors = [actor.remote(model_paths, options, threads) for _ in range(workers)]
        ray.get([a.ready.remote() for a in self.actors])  # models loaded before the clock starts
        self.pool = ActorPool(self.actors)
        self.workers = workers

    def map(self, batches: Iterable[list[PhotoItem]]) -> Iterator[BatchOutput]:
        """Yield each batch's output in the order given, keeping two batches per actor queued."""
        pending = 0
        queue_depth = 2 * self.workers
        iterator = iter(batches)
        for items in iterator:
            self.pool.submit(lambda a, v: a.process.remote(v), items)
            pending += 1
            if pending >= queue_depth:
                yield self.pool.get_next()
                pending -= 1
        while pending:
            yield self.pool.get_next()
            pending -= 1

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._started_here:
            self._ray.shutdown()


def make_engine(
    kind: str,
    model_paths: dict[str, str],
    options: StudyOptions,
    workers: int | None = None,
    address: str | None = None,
    threads: int | None = None,
):
    """Return the engine called ``kind`` ("local" or "ray")."""
    if kind == "local":
        return LocalEngine(model_paths, options, threads)
    if kind == "ray":
        return RayEngine(model_paths, options, workers, address, threads)
    raise ValueError(f"unknown engine {kind!r}; choose local or ray")
