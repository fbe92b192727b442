"""pytest fixtures: being written."""
