"""The progresskit hooks of the TensorBoard plugin (entry point ``tensorboard``)."""

from __future__ import annotations

from progresskit import ConfigSchema, Target, TrackerSpec, ensure, hookimpl
from progresskit_tensorboard.eventfile import BEAT_SECONDS
from progresskit_tensorboard.tracker import (
    EVENT_FILE_PREFIX,
    FLUSH_KEY,
    TOTAL_KEYS,
    TensorBoardTracker,
)

#: A Lightning ``TensorBoardLogger`` version directory holds its event file next to this
#: file; progresskit-lightning claims that directory, so this plugin leaves it alone.
LIGHTNING_MARKER = "hparams.yaml"


def _claims(target: Target) -> bool:
    if target.has_file(LIGHTNING_MARKER):
        return False
    return any(
        not is_dir and name.startswith(EVENT_FILE_PREFIX) for name, is_dir in target.entries.items()
    )


tracker = TrackerSpec(
    TensorBoardTracker,
    claim=_claims,
    expects=(
        f"{EVENT_FILE_PREFIX}* files (TensorBoard event files; a Lightning version_N "
        f"directory with {LIGHTNING_MARKER} is left to the Lightning plugin)"
    ),
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks


def _check_total(value: int | None) -> None:
    ensure(
        value is None or (not isinstance(value, bool) and value > 0),
        "expects an integer > 0 (or null: unknown)",
    )


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    for key in TOTAL_KEYS:
        schema.add(
            key,
            (int, type(None)),
            default=None,
            help="A TensorBoard run's total steps (event files hold none); null: unknown. "
            + ("Read when total_steps is not set." if key != TOTAL_KEYS[0] else ""),
            check=_check_total,
        )
    schema.add(
        FLUSH_KEY,
        (int, float),
        default=BEAT_SECONDS,
        help="Seconds between a TensorBoard writer's flushes (SummaryWriter's flush_secs, "
        "120 by default): a healthy run's newest event on disk may be that old, so its "
        "silence is judged against at least that.",
        check=lambda v: ensure(not isinstance(v, bool) and v > 0, "expects seconds > 0"),
    )
