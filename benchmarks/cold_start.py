"""Cold start of the serverless web tier: a fresh process that has only the bucket and the
database, answering its first search through the Lambda handler (Django start, model load,
index download and memory-mapping), then a warm one.

    eval "$(scripts/s3-server start | tail -n1)"
    .venv/bin/python -m benchmarks.cold_start [--items 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = r"""
import json, time
started = time.perf_counter()
from webapp.lambda_handler import handler
imported = time.perf_counter()
event = {"httpMethod": "GET", "path": "/api/v1/search/", "resource": "/{proxy+}",
         "queryStringParameters": {"q": "a red bicycle"}, "multiValueQueryStringParameters": {"q": ["a red bicycle"]},
         "headers": {"Host": "localhost"}, "multiValueHeaders": {"Host": ["localhost"]}, "body": None,
         "isBase64Encoded": False, "requestContext": {"stage": "prod"}}
first = handler(event, None)
searched = time.perf_counter()
event["queryStringParameters"] = {"q": "a green salad"}
event["multiValueQueryStringParameters"] = {"q": ["a green salad"]}
second = handler(event, None)
done = time.perf_counter()
assert first["statusCode"] == second["statusCode"] == 200, first["body"][:300]
print(json.dumps({"import": imported - started, "first": searched - imported, "second": done - searched}))
"""


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--config-dir", default="")
    args = parser.parse_args(argv)
    if not os.environ.get("S3_ENDPOINT_URL"):
        sys.exit("start an S3 server first: eval \"$(scripts/s3-server start | tail -n1)\"")
    from benchmarks.report import machine, table

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DJANGO_SECRET_KEY": "benchmark",
            "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3", "S3_BUCKET": "cold-start", "S3_PREFIX": Path(tmp).name,
            "CLIP_MODEL": args.model, "CLIP_PRETRAINED": "random", "CLIP_MODEL_CONFIG_DIR": args.config_dir,
            "GALLERY_LOG_LEVEL": "WARNING", "DJANGO_ALLOWED_HOSTS": "localhost",
        }
        os.environ.update(env)
        import boto3

        boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], region_name=env.get("S3_REGION", "us-east-1"),
                     aws_access_key_id=env["S3_ACCESS_KEY_ID"], aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"]).create_bucket(Bucket="cold-start")
        from benchmarks.http_search import setup_database

        setup_database(Path(tmp), args.items)  # publishes the index into the bucket
        rows = []
        for run in range(3):
            cache = Path(tmp) / f"fresh-{run}"  # a new function instance: nothing local
            probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                                   env={**env, "GALLERY_VAR_DIR": str(cache), "INDEX_CACHE_DIR": str(cache / "index-cache")})
            if probe.returncode:
                sys.exit(probe.stderr[-2000:])
            times = json.loads(probe.stdout.strip().splitlines()[-1])
            rows.append([run + 1, times["import"] * 1000, times["first"] * 1000, (times["import"] + times["first"]) * 1000, times["second"] * 1000])
    out = "\n".join([
        f"Cold start of webapp.lambda_handler, {args.model} (torch, CPU), index of {args.items:,} images in radosgw on loopback: {machine()}",
        "",
        table(["run", "import + Django ms", "first search ms", "cold total ms", "warm search ms"], rows),
    ])
    print(out)
    return out


if __name__ == "__main__":
    main()
