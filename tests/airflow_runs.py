"""Runs the indexing DAG as `airflow dags test` does (`dag.test()`: its tasks in this process),
then the compaction DAG when the indexing run asked for one (a scheduler starts it on the asset's
event; `dag.test()` starts no other DAG), in one Python process: Airflow's and the DAG's start-up
are paid once. tests/test_dag.py's `run_dag` runs it with the environment `airflow` would get.

    python tests/airflow_runs.py [--no-compact]

The task logs go to stdout; the last line is JSON: {dag_id: {"state": ..., "tasks": {task_id: state}}}.
"""

import json
import os
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.utils import timezone

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository, not tests/ (its settings.py)
from indexer.dag_names import COMPACT_DAG_ID, INDEX_DAG_ID  # noqa: E402 (the repository on the path first)


def run(dag) -> dict:
    dag_run = dag.test(logical_date=timezone.utcnow())
    return {"state": str(dag_run.state), "tasks": {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}}


def main() -> None:
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    runs = {INDEX_DAG_ID: run(bag.dags[INDEX_DAG_ID])}
    indexed = runs[INDEX_DAG_ID]
    if "--no-compact" not in sys.argv and indexed["state"] == "success" and indexed["tasks"].get("request_compaction") == "success":
        runs[COMPACT_DAG_ID] = run(bag.dags[COMPACT_DAG_ID])
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
