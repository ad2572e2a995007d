"""Artifact I/O below every other layer: atomic files, JSON, and checkpoint folders.

Data, model, training, evaluation and serving all write through here, so nothing in this
package imports from them (only ``watchnext.config``, which is the run's description).
"""
