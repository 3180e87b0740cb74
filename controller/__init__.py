"""Batchyard controller: the Azure Batch REST API, the scheduler and the reconciler."""

__version__ = "0.1.0"
