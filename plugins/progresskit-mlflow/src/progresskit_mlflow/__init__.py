"""progresskit plugin for MLflow tracking runs: the file store and the SQLite store."""

from progresskit_mlflow.filestore import FileStoreRunTracker
from progresskit_mlflow.record import RUNNER_TYPE, RunRecord
from progresskit_mlflow.sqlitestore import read_store
from progresskit_mlflow.vocabulary import MLFLOW_STATUSES, STATUS_CODES

__all__ = [
    "MLFLOW_STATUSES",
    "RUNNER_TYPE",
    "STATUS_CODES",
    "FileStoreRunTracker",
    "RunRecord",
    "read_store",
]
