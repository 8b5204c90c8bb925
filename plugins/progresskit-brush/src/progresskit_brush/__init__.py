"""progresskit-brush: track Brush training runs from the status file ``--save-status`` writes."""

from progresskit_brush.tracker import RUNNER_TYPE, BrushProgressTracker

__all__ = ["RUNNER_TYPE", "BrushProgressTracker"]
