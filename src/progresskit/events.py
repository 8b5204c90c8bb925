"""Moved to :mod:`progresskit.producer.emitter`, the wire format to
:mod:`progresskit.formats.events` and the seed's module functions to
:mod:`progresskit.compat.foxml`; this path works for one release."""

from progresskit._moved import moved

moved(
    __name__,
    "progresskit.producer.emitter",
    also={
        **dict.fromkeys(("ENV_EVENT_FILE", "ENV_EVENT_SOCKET"), "progresskit.formats.events"),
        **dict.fromkeys(
            ("TrainingEventEmitter", "emit_error", "emit_progress", "emit_run_complete",
             "emit_stage_change", "emit_target_complete", "get_emitter", "get_training_emitter",
             "init_events", "init_training_events"),
            "progresskit.compat.foxml",
        ),
    },
)
