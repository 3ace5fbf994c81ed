"""Dataset-scale studies: where every block of each model looks, over whole labelled folders.

``python -m study --models resnet50 resnet101 --data DIR --out DIR`` runs the engine's one
compiled pass over every photo, scores every block's map against the animal's mask
(:mod:`explain.localisation`), and writes a long Parquet table, a JSON summary with bootstrap
intervals, the penultimate features' embedding and a channel atlas. The same code runs on
this machine (``--engine local``) or on Ray (``--engine ray``, ``--address`` for a cluster).

Layout: ``study`` sits above ``explain`` and ``models`` and calls them; they never call it.
"""
