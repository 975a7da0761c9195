"""Routing: task-signal rules, difficulty scoring and model selection."""
