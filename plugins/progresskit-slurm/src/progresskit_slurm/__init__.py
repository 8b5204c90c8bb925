"""progresskit-slurm: Slurm jobs as progresskit runs (docs/slurm.md).

Slurm is the source of truth for a job's state: ``squeue --json`` for the jobs the
controller still holds, text ``sacct -P`` for the rest. Progress comes from the job's own
output file, read by progresskit's log tracker.
"""

#: The runner type of a run that is a Slurm job (the ``slurm:`` target's rows).
RUNNER_TYPE = "slurm"
