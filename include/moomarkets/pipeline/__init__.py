"""The pipeline: a job group resolved into ready parts, and the plain functions its tasks run."""

from moomarkets.pipeline.group import GroupPipeline

__all__ = ["GroupPipeline"]
