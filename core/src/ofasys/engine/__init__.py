"""The engine: tasks, data pipelines, the multi-task Trainer, checkpoints and inference (imports torch)."""
