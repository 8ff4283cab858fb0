"""Triggers the indexing DAG through Airflow's REST API (v2, Airflow 3), for "reindex now"."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from django.conf import settings

TIMEOUT = 10  # seconds; a curator is waiting on the page


class AirflowUnavailable(RuntimeError):
    """Airflow did not accept the request. The message says why."""


def trigger_dag_run() -> str:
    """Queue a run of the indexing DAG; returns its run id."""
    base = settings.AIRFLOW_API_URL.rstrip("/")
    token = _post(f"{base}/auth/token", {"username": settings.AIRFLOW_API_USERNAME, "password": settings.AIRFLOW_API_PASSWORD})[
        "access_token"
    ]
    run = _post(f"{base}/api/v2/dags/{settings.AIRFLOW_DAG_ID}/dagRuns", {"logical_date": None}, token=token)
    return run["dag_run_id"]


def _post(url: str, body: dict, *, token: str = "") -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise AirflowUnavailable(f"Airflow refused {url} ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AirflowUnavailable(f"Airflow is unreachable at {url}: {exc}") from None
